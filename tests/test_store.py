"""The feature store on its own: writer units, the lazy reader, damage detection (numpy only)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fxtract.store import (
    CorruptStoreError,
    StoreError,
    StoreMismatchError,
    _files,
    merge,
    open_features,
)
from fxtract.store._writer import StoreWriter, WriteBatch

N, SHARD, BATCH = 23, 5, 2  # 5 units: 5, 5, 5, 5, 3 rows


def _config(fmt="safetensors", **extra):
    config = {
        "model": {"spec": "toy", "class": "Toy", "state_dict_sha256": "0" * 64},
        "nodes": {"a": "a"},
        "strategy": "fx",
        "pool": {"a": "none"},
        "dtype": "float32",
        "amp": False,
        "preprocessing": None,
        "data": {"kind": "tensors", "count": N},
        "format": fmt,
        "shard_size": SHARD,
        "num_samples": N,
    }
    config.update(extra)
    return config


def _values(i, width=3):
    return np.arange(i * 100, i * 100 + width * 2, dtype=np.float32).reshape(width, 2)


def _write(root, fmt="safetensors", *, writer=0, writers=1, failed=(), rows=_values, dtype="float32", **kw):
    """Write the units of one writer with the plain numpy writer, as the pipeline does."""
    w = StoreWriter(
        root,
        _config(fmt, **kw),
        samples=((i, f"s{i}", i % 2) for i in range(N)),
        classes=["even", "odd"],
        writer=writer,
        writers=writers,
    )
    w.set_outputs(
        {"order": ["a"], "structure": {"a": {"type": "tensor", "key": "a"}}, "keys": {"a": {"node": "a"}}}
    )
    units = w.pending_units()
    w.start(units)
    for u in units:
        for s in range(u * SHARD, min((u + 1) * SHARD, N), BATCH):
            idx = [i for i in range(s, min(s + BATCH, (u + 1) * SHARD, N)) if i not in failed]
            bad = [
                {"index": i, "source": f"s{i}", "reason": "broken"}
                for i in range(s, min(s + BATCH, (u + 1) * SHARD, N))
                if i in failed
            ]
            arrays = {"a": np.stack([rows(i) for i in idx])} if idx else {}
            if dtype == "bfloat16" and idx:
                arrays["a"] = (arrays["a"].view(np.uint32) >> 16).astype(np.uint16)
            w.put(WriteBatch(np.asarray(idx, np.int64), arrays, {"a": dtype} if idx else {}, bad))
    return w.close()


@pytest.fixture(params=["safetensors", "npy"])
def fmt(request):
    return request.param


@pytest.fixture
def store(tmp_path, fmt):
    _write(tmp_path / "s", fmt)
    return open_features(tmp_path / "s")


def _expected(idx):
    rows = [_values(int(i)) for i in np.arange(N)[idx]]
    return np.stack(rows) if rows else np.zeros((0, 3, 2), np.float32)


def test_layout_and_manifest(store, fmt):
    m = store.manifest
    assert store.complete and len(store) == N and store.format == fmt
    assert [s["rows"] for s in m["shards"]] == [5, 5, 5, 5, 3]
    assert [(s["start"], s["stop"]) for s in m["shards"]][-1] == (20, 23)
    assert m["keys"]["a"]["shape"] == [N, 3, 2] and m["keys"]["a"]["dtype"] == "float32"
    assert store.keys() == ["a"] and store["a"].shape == (N, 3, 2)
    assert np.array_equal(store.indices, np.arange(N))
    assert store.labels.tolist() == [i % 2 for i in range(N)]
    assert store.sources[:2] == ["s0", "s1"] and store.classes == ["even", "odd"]
    names = sorted(p.name for p in store.path.iterdir())
    assert "manifest.json" in names and "samples.jsonl" in names and not any(".tmp-" in n for n in names)


@pytest.mark.parametrize(
    "idx",
    [
        slice(None),
        slice(3, 7),
        slice(4, 16),
        slice(0, 23, 4),
        slice(20, 40),
        slice(None, None, -1),
        slice(9, 9),
    ],
    ids=str,
)
def test_slices_across_shards(store, idx):
    assert np.array_equal(store["a"][idx], _expected(idx))


@pytest.mark.parametrize("idx", [[22, 0, 5, 5, 4, 13], np.array([7, 6, 21]), [-1, -23], []], ids=str)
def test_fancy_indexing(store, idx):
    got = store["a"][idx]
    want = np.stack([_values(int(i) % N) for i in idx]) if len(idx) else np.zeros((0, 3, 2), np.float32)
    assert got.shape == want.shape and np.array_equal(got, want)


def test_int_mask_batches_torch(store):
    a = store["a"]
    assert np.array_equal(a[4], _values(4)) and np.array_equal(a[-1], _values(22))
    mask = np.arange(N) % 3 == 0
    assert np.array_equal(a[mask], _expected(mask))
    assert np.array_equal(np.concatenate(list(a.iter_batches(4))), a.numpy())
    assert [len(b) for b in a.iter_batches(10)] == [10, 10, 3]
    assert np.array_equal(a.torch().numpy(), a.numpy())
    assert np.array_equal(a[[1, 2], 0], _expected([1, 2])[:, 0])


@pytest.mark.parametrize("bad", [23, -24])
def test_out_of_range(store, bad):
    with pytest.raises(IndexError, match="out of range"):
        store["a"][bad]
    with pytest.raises(IndexError, match="out of range"):
        store["a"][[0, bad]]


def test_bad_index_and_key(store):
    with pytest.raises(TypeError, match="index 'a' with an int, a slice"):
        store["a"][np.zeros((2, 2), int)]
    with pytest.raises(KeyError, match="no key 'b'"):
        store["b"]


def test_bfloat16_native(tmp_path):
    _write(tmp_path / "s", dtype="bfloat16")
    a = open_features(tmp_path / "s")["a"]
    want = ((_expected(slice(None)).view(np.uint32) >> 16) << 16).view(np.float32)
    assert a.stored_dtype == "bfloat16" and a.dtype == np.float32
    assert np.array_equal(a.numpy(), want)
    t = a.torch()
    assert str(t.dtype) == "torch.bfloat16" and np.array_equal(t.float().numpy(), want)


def test_ragged_rows(tmp_path, fmt):
    def width(i):
        return 1 + (i % SHARD) // BATCH  # the same within a batch, changing between batches

    _write(tmp_path / "s", fmt, rows=lambda i: _values(i, width=width(i)))
    a = open_features(tmp_path / "s")["a"]
    assert a.ragged and a.shape == (N,)
    assert [r.shape for r in a[[0, 4, 22]]] == [(1, 2), (3, 2), (2, 2)]
    assert np.array_equal(a[13], _values(13, width=2))
    assert all(np.array_equal(r, _values(i, width(i))) for i, r in enumerate(a.numpy()))
    assert [r.shape[0] for r in a[7:12]] == [2, 2, 3, 1, 1]


def test_skipped_samples(tmp_path, fmt):
    _write(tmp_path / "s", fmt, failed={3, 10, 11, 12, 13, 14})  # unit 2 loses every row
    s = open_features(tmp_path / "s")
    assert len(s) == N - 6 and s.complete
    assert [x["index"] for x in s.skipped] == [3, 10, 11, 12, 13, 14]
    assert s.skipped[0] == {"index": 3, "source": "s3", "reason": "broken"}
    keep = [i for i in range(N) if i not in {3, 10, 11, 12, 13, 14}]
    assert s.indices.tolist() == keep
    assert np.array_equal(s["a"][:], np.stack([_values(i) for i in keep]))
    assert np.array_equal(s["a"][[8, 3]], np.stack([_values(keep[8]), _values(keep[3])]))


def test_torn_and_missing_shards_are_named(tmp_path, fmt):
    _write(tmp_path / "s", fmt)
    shard = tmp_path / "s" / ("shard-000002.safetensors" if fmt == "safetensors" else "shard-000002/a.npy")
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 7])
    with pytest.raises(CorruptStoreError, match=r"shard-000002.* torn"):
        open_features(tmp_path / "s")
    shard.write_bytes(data)
    open_features(tmp_path / "s")
    victim = tmp_path / "s" / ("shard-000003.safetensors" if fmt == "safetensors" else "shard-000003")
    if victim.is_dir():
        import shutil

        shutil.rmtree(victim)
    else:
        victim.unlink()
    with pytest.raises(CorruptStoreError, match=r"shard .shard-000003.*. is missing"):
        open_features(tmp_path / "s")


def test_temporary_files_are_never_data(tmp_path):
    _write(tmp_path / "s")
    (tmp_path / "s" / f"shard-000009.safetensors.tmp-{os.getpid()}").write_bytes(b"garbage")
    assert len(open_features(tmp_path / "s")) == N


def test_a_writer_removes_only_its_own_temporary_files(tmp_path):
    root = tmp_path / "s"
    _write(root, writer=0, writers=2)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    pid = int(dead.stdout)  # a process that has exited

    def tmp(unit, pid):
        return root / f"shard-{unit:06d}.safetensors{_files._TMP_MARK}{_files._host()}-{pid}-ab"

    mine, theirs = tmp(1, pid), tmp(2, pid)
    mine.write_bytes(b"x")
    theirs.write_bytes(b"x")
    StoreWriter(root, _config(), writer=1, writers=2)
    assert not mine.exists() and theirs.exists()  # writer 0 may be writing unit 2 right now
    StoreWriter(root, _config())  # one writer owns every unit
    assert not theirs.exists()


def test_a_writer_keeps_the_files_of_a_writer_still_running(tmp_path):
    # Two full writers on one store: the second must not delete the first's half-written files.
    root = tmp_path / "s"
    _write(root)
    live_here = root / f"shard-000001.safetensors{_files._TMP_MARK}{_files._host()}-{os.getpid()}-ab"
    fresh_elsewhere = root / f"shard-000002.safetensors{_files._TMP_MARK}other.host-1-cd"
    stale_elsewhere = root / f"shard-000003.safetensors{_files._TMP_MARK}other.host-1-ef"
    for p in (live_here, fresh_elsewhere, stale_elsewhere):
        p.write_bytes(b"x")
    old = time.time() - 2 * _files._FOREIGN_TMP_AGE_S
    os.utime(stale_elsewhere, (old, old))
    StoreWriter(root, _config())
    assert live_here.exists() and fresh_elsewhere.exists() and not stale_elsewhere.exists()


def test_incomplete_store_without_manifest(tmp_path):
    _write(tmp_path / "s", writer=0, writers=2)  # units 0, 2, 4 only
    with pytest.warns(UserWarning, match="incomplete: 2 of 5 shards"):
        s = open_features(tmp_path / "s")
    assert not s.complete and s.indices.tolist() == [*range(5), *range(10, 15), *range(20, 23)]


def test_two_writers_make_the_one_writer_store(tmp_path):
    _write(tmp_path / "one")
    _write(tmp_path / "two", writer=1, writers=2)
    _write(tmp_path / "two", writer=0, writers=2)
    manifest = merge(tmp_path / "two")
    assert manifest["complete"] and manifest["writers"] == 2
    for p in sorted((tmp_path / "one").glob("shard-*")):
        assert p.read_bytes() == (tmp_path / "two" / p.name).read_bytes()
    assert np.array_equal(open_features(tmp_path / "two")["a"][:], _expected(slice(None)))


def test_mismatched_config_refused_then_overwritten(tmp_path):
    _write(tmp_path / "s")
    with pytest.raises(StoreMismatchError, match=r"made differently: pool .*--overwrite"):
        StoreWriter(tmp_path / "s", _config(pool={"a": "avg"}))
    w = StoreWriter(tmp_path / "s", _config(pool={"a": "avg"}), overwrite=True)
    assert w.pending_units() == [0, 1, 2, 3, 4] and not list((tmp_path / "s").glob("shard-*"))


def test_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="not an fxtract feature store"):
        open_features(tmp_path)
    with pytest.raises(StoreError, match="not a directory"):
        open_features(tmp_path / "nothing")


def test_reading_does_not_import_torch(tmp_path):
    _write(tmp_path / "s")
    code = (
        "import sys; from fxtract.store import open_features; s = open_features(sys.argv[1]); "
        "s['a'][[3, 17]]; s['a'][2:9]; s.labels; assert 'torch' not in sys.modules, 'torch imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "s")], check=True, env=env)
