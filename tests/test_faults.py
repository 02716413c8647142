"""Faults injected into ``fxtract.extract``: SIGKILL at chosen points, a full disk, a read-only
directory, corrupt and truncated images, two writers on one store, a reader during a write.

After each fault: whatever a reader opens is either refused (``StoreError``) or holds exactly
the rows of an uninterrupted run (no partial file is ever read as data), and a rerun completes
to a store byte-for-byte identical to the uninterrupted one. Each run is a child process
(tests/fault_worker.py), so a SIGKILL is a real one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from fxtract.store import StoreError, open_features

ROOT = Path(__file__).resolve().parent.parent
SRC = Path(__import__("fxtract").__file__).resolve().parent.parent


def _child(out: Path, *fault: str, wait: bool = True):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(ROOT)]), "TQDM_DISABLE": "1"}
    argv = [sys.executable, "-m", "tests.fault_worker", str(out), *(fault or ("none",))]
    proc = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if not wait:
        return proc
    _, stderr = proc.communicate(timeout=300)
    return proc.returncode, stderr


def tree(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: its file tree and its rows."""
    out = tmp_path_factory.mktemp("faults") / "reference"
    code, err = _child(out)
    assert code == 0, err
    store = open_features(out)
    return tree(out), {k: np.asarray(store[k][:]) for k in store}


def check_reader(out: Path, rows) -> str:
    """A reader either refuses the store or gets exactly the reference rows for what it holds."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an incomplete store says so in a warning
            store = open_features(out)
            indices = np.asarray(store.indices)
            for key, expected in rows.items():
                if key not in store:  # nothing committed yet: no key, no row
                    assert len(indices) == 0, f"rows {indices.tolist()} without key {key}"
                    continue
                got = np.asarray(store[key][:])
                assert np.array_equal(got, expected[indices]), (
                    f"{key}: rows differ from the uninterrupted run"
                )
    except StoreError:
        return "refused"
    return "complete" if store.complete else "partial"


def rerun_is_identical(out: Path, reference) -> None:
    code, err = _child(out)
    assert code == 0, err
    assert tree(out) == reference[0], "the rerun's store differs from the uninterrupted run's"
    assert check_reader(out, reference[1]) == "complete"


# Where to kill: the k-th shard (first, middle, last), the part file, the samples list, the
# manifest; before the write, half-way through it, and after the rename.
KILLS = [
    (target, phase, k)
    for target, ks in (("shard", (1, 3, 5)), ("part", (1, 2)), ("samples", (1,)), ("manifest", (1,)))
    for k in ks
    for phase in ("before", "during", "after")
]


# CI runs a middle shard at every phase and the manifest half-written; `make test-slow` every point.
_CI_KILLS = {("shard", 3, "before"), ("shard", 3, "during"), ("shard", 3, "after"), ("manifest", 1, "during")}
KILL_CASES = [
    pytest.param(t, p, k, id=f"{t}{k}-{p}", marks=[] if (t, k, p) in _CI_KILLS else [pytest.mark.slow])
    for t, p, k in KILLS
]


@pytest.mark.parametrize(("target", "phase", "k"), KILL_CASES)
def test_sigkill_then_rerun(tmp_path, reference, target, phase, k):
    out = tmp_path / "store"
    code, err = _child(out, "kill", target, phase, str(k))
    if code == 0:  # that write did not happen k times in this run
        pytest.skip(f"no {k}-th {target} write")
    assert code == -9, err
    check_reader(out, reference[1])
    rerun_is_identical(out, reference)


@pytest.mark.parametrize(
    "limit", [pytest.param(256, marks=pytest.mark.slow), 1024, pytest.param(4096, marks=pytest.mark.slow)]
)
def test_full_disk_then_rerun(tmp_path, reference, limit):
    out = tmp_path / "store"
    code, err = _child(out, "fsize", str(limit))
    if code == 0:
        pytest.skip(f"every file fits in {limit} bytes")
    assert code == 1, err
    assert "StoreWriteError" in err and ("disk" in err or "write" in err), err
    assert "Traceback" not in err
    check_reader(out, reference[1])
    rerun_is_identical(out, reference)


def _read_only(path: Path, on: bool) -> bool:
    """Make ``path`` unwritable; root writes through permissions, so it gets ``chattr +i``."""
    if os.geteuid() != 0:
        os.chmod(path, 0o555 if on else 0o755)
        return True
    return subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True).returncode == 0


def test_read_only_directory_then_rerun(tmp_path, reference):
    out = tmp_path / "store"
    out.mkdir()
    if not _read_only(out, True):
        pytest.skip("cannot make a directory read-only for root here (no chattr)")
    try:
        code, err = _child(out)
    finally:
        _read_only(out, False)
    assert code == 1, err
    assert "StoreWriteError" in err and "Traceback" not in err, err
    assert list(out.iterdir()) == []
    rerun_is_identical(out, reference)


def test_two_writers_on_one_store(tmp_path, reference):
    # Two full writers at once, and the two halves of a split job at once.
    for fault in (("none",), ("split", "0")):
        out = tmp_path / fault[0]
        other = ("split", "1") if fault[0] == "split" else ("none",)
        procs = [_child(out, *fault, wait=False), _child(out, *other, wait=False)]
        errs = [p.communicate(timeout=300)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), errs
        got = tree(out)
        if fault[0] == "split":  # two jobs' store: the same shards, its own parts and manifest
            got = {k: v for k, v in got.items() if k.startswith(("shard-", "samples"))}
            assert got == {k: v for k, v in reference[0].items() if k.startswith(("shard-", "samples"))}
        else:
            assert got == reference[0]
        assert check_reader(out, reference[1]) == "complete"


def test_reader_while_a_writer_runs(tmp_path, reference):
    out = tmp_path / "store"
    proc = _child(out, "slow", "0.3", wait=False)
    seen = set()
    while proc.poll() is None:
        if out.exists():
            seen.add(check_reader(out, reference[1]))
        time.sleep(0.05)
    assert proc.returncode == 0, proc.stderr.read()
    seen.add(check_reader(out, reference[1]))
    assert "complete" in seen
    assert tree(out) == reference[0]


# -- images ------------------------------------------------------------------------------------


def _images(folder: Path, n: int = 6) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / "cls" / f"img{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_image(tmp_path, damage):
    import torch

    import fxtract
    from fxtract._extract import SampleReadError

    folder = tmp_path / "images"
    paths = _images(folder)
    bad = paths[2]
    data = bad.read_bytes()
    bad.write_bytes(
        {"truncated": data[: len(data) // 2], "garbage": b"not an image" * 10, "empty": b""}[damage]
    )
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    kw = {"nodes": ["1"], "pool": "avg", "shard_size": 2, "progress": False, "batch_size": 2}
    with pytest.raises(SampleReadError, match="img2"):
        fxtract.extract(model, str(folder), tmp_path / "fail", **kw)
    assert check_reader(tmp_path / "fail", {}) in ("refused", "partial")
    store = fxtract.extract(model, str(folder), tmp_path / "skip", on_error="skip", **kw)
    assert len(store) == len(paths) - 1 and 2 not in set(np.asarray(store.indices).tolist())
    again = fxtract.extract(model, str(folder), tmp_path / "skip", on_error="skip", **kw)
    assert len(again) == len(store)
    first = tree(tmp_path / "skip")
    # The same run into a fresh directory gives the same bytes.
    fxtract.extract(model, str(folder), tmp_path / "skip2", on_error="skip", **kw)
    assert tree(tmp_path / "skip2") == first
