"""fxtract.extract and the CLI end to end: values equal a direct forward; resume, faults, refusal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import fxtract
from fxtract._cli import main
from fxtract._extract import SampleReadError
from fxtract.store import StoreMismatchError, StoreWriteError, open_features

from .models_store import PairNet, SlowNet, TinyNet, Tokens

REPO = Path(__file__).parents[1]


def _x(n=12, size=32):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def _direct(model, nodes, x, **kw):
    ex = fxtract.create_feature_extractor(model, nodes, **kw).eval()
    with torch.no_grad():
        return ex(x)


POOLS = {
    "none": lambda t: t,
    "avg": lambda t: t.mean((2, 3)),
    "max": lambda t: t.amax((2, 3)),
    "flatten": lambda t: t.flatten(1),
}


@pytest.mark.parametrize("fmt", ["safetensors", "npy"])
@pytest.mark.parametrize("pool", list(POOLS))
def test_values_equal_a_direct_forward(tmp_path, fmt, pool):
    model, x = TinyNet().eval(), _x(11)
    store = fxtract.extract(
        model, x, tmp_path / "s", nodes=["relu1", "fc"], pool=pool, format=fmt, batch_size=4, shard_size=4,
        progress=False,
    )  # fmt: skip
    ref = _direct(model, ["relu1", "fc"], x)
    assert store.keys() == ["relu1", "fc"] and len(store) == 11 and store.complete
    assert store.manifest["keys"]["fc"]["pool"] == "none"  # a blanket mode leaves (batch, classes) alone
    torch.testing.assert_close(torch.from_numpy(store["relu1"].numpy()), POOLS[pool](ref["relu1"]))
    torch.testing.assert_close(store["fc"].torch(), ref["fc"])
    assert len(store.manifest["shards"]) == 3


def test_manifest_records_what_was_extracted(tmp_path):
    model = TinyNet()
    store = fxtract.extract(
        model, _x(5), tmp_path / "s", nodes={"conv2": "mid"}, pool="mid=avg", progress=False
    )
    m = store.manifest
    assert m["format_version"] == 1 and m["config"]["nodes"] == {"conv2": "mid"}
    assert m["config"]["strategy"] == "fx" and m["config"]["pool"] == {"mid": "avg"}
    assert m["config"]["model"]["spec"] == "tests.models_store.TinyNet"
    assert len(m["config"]["model"]["state_dict_sha256"]) == 64
    assert m["keys"]["mid"] == {
        "dtype": "float32",
        "shape": [5, 6],
        "ragged": False,
        "node": "conv2",
        "pool": "avg",
    }
    assert set(m["versions"]) >= {"fxtract", "torch"} and m["shards"][0]["start"] == 0
    lines = (tmp_path / "s" / "samples.jsonl").read_text().splitlines()
    assert json.loads(lines[3]) == {"index": 3, "source": "tensor[3]", "label": None}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_storage_dtypes(tmp_path, dtype):
    model, x = TinyNet(), _x(6)
    store = fxtract.extract(model, x, tmp_path / "s", nodes=["conv2"], dtype=dtype, progress=False)
    want = _direct(model, ["conv2"], x)["conv2"].to(getattr(torch, dtype))
    got = store["conv2"].torch()
    assert got.dtype == want.dtype and torch.equal(got, want)
    assert store["conv2"].numpy().dtype == (np.float16 if dtype == "float16" else np.float32)


def test_bfloat16_in_npy_widens_to_float32(tmp_path):
    model, x = TinyNet(), _x(4)
    with pytest.warns(UserWarning, match="numpy has no bfloat16"):
        store = fxtract.extract(
            model, x, tmp_path / "s", nodes=["fc"], dtype="bfloat16", format="npy", progress=False
        )
    want = _direct(model, ["fc"], x)["fc"].to(torch.bfloat16).float()
    assert store["fc"].stored_dtype == "float32" and torch.equal(store["fc"].torch(), want)


def test_tuple_and_dict_outputs_become_sub_keys(tmp_path):
    model, x = PairNet(), torch.randn(7, 4)
    store = fxtract.extract(model, x, tmp_path / "s", nodes=["pair"], batch_size=3, progress=False)
    assert store.keys() == ["pair.0", "pair.1.b", "pair.1.sum"]
    assert store.manifest["outputs"]["pair"]["type"] == "tuple"
    a, rest = model.pair(x)
    torch.testing.assert_close(store["pair.0"].torch(), a)
    torch.testing.assert_close(store["pair.1.b"].torch(), rest["b"])
    with pytest.raises(KeyError, match=r"'pair' returned a tuple; .* 'pair.0', 'pair.1.b'"):
        store["pair"]


def test_variable_length_outputs_are_kept_per_sample(tmp_path):
    model = Tokens()
    lengths = [3, 3, 5, 5, 2, 2, 4]
    data = [
        {"input_ids": torch.arange(n) % 20, "attention_mask": torch.ones(n, dtype=torch.long)}
        for n in lengths
    ]
    store = fxtract.extract(
        model, data, tmp_path / "s", nodes=["mix"], batch_size=2, shard_size=4, progress=False
    )
    a = store["mix"]
    assert a.ragged and [r.shape for r in a[:]] == [(n, 5) for n in lengths]
    with torch.no_grad():
        want = model.mix(model.embed(data[2]["input_ids"]))
    torch.testing.assert_close(torch.from_numpy(a[2]), want)


def test_token_pooling_with_a_mask(tmp_path):
    model = Tokens()
    ids = torch.randint(0, 20, (6, 5), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(6, 5, dtype=torch.long)
    mask[:, 3:] = 0
    data = {"input_ids": ids, "attention_mask": mask}
    store = fxtract.extract(model, data, tmp_path / "s", nodes=["mix"], pool="mean-tokens", progress=False)
    with torch.no_grad():
        full = model.mix(model.embed(ids))
    torch.testing.assert_close(store["mix"].torch(), full[:, :3].mean(1))
    cls = fxtract.extract(model, data, tmp_path / "c", nodes=["mix"], pool="cls", progress=False)
    torch.testing.assert_close(cls["mix"].torch(), full[:, 0])


def test_pool_errors(tmp_path):
    with pytest.raises(
        ValueError, match=r"pool 'avg' does not apply to output 'fc' of per-sample shape \(3,\)"
    ):
        fxtract.extract(TinyNet(), _x(4), tmp_path / "a", nodes=["fc"], pool="fc=avg", progress=False)
    with pytest.raises(ValueError, match=r"pool names 'relu9'.*Did you mean 'relu1'"):
        fxtract.extract(TinyNet(), _x(4), tmp_path / "b", nodes=["relu1"], pool="relu9=avg", progress=False)
    with pytest.raises(ValueError, match="pool must be one of none, avg"):
        fxtract.extract(TinyNet(), _x(4), tmp_path / "c", nodes=["relu1"], pool="mean", progress=False)


def test_ready_extractor_any_strategy_and_model_untouched(tmp_path):
    model, x = TinyNet().train(), _x(5)
    ex = fxtract.create_feature_extractor(model, ["relu2"], strategy="hooks")
    store = fxtract.extract(ex, x, tmp_path / "s", progress=False)
    assert store.manifest["config"]["strategy"] == "hooks" and model.training and ex.training
    torch.testing.assert_close(store["relu2"].torch(), _direct(model, ["relu2"], x)["relu2"])
    with pytest.raises(ValueError, match="already chose its nodes"):
        fxtract.extract(ex, x, tmp_path / "t", nodes=["fc"], progress=False)
    with pytest.raises(ValueError, match=r"nodes=\.\.\. is required"):
        fxtract.extract(model, x, tmp_path / "u", progress=False)


def test_independent_jobs_make_the_one_job_store(tmp_path):
    model, x = TinyNet(), _x(10)
    opts = {"nodes": ["relu2"], "batch_size": 2, "shard_size": 2, "progress": False}
    one = fxtract.extract(model, x, tmp_path / "one", **opts)
    part = fxtract.extract(model, x, tmp_path / "two", num_shards=2, shard_index=1, **opts)
    assert not part.complete and part.indices.tolist() == [2, 3, 6, 7]
    two = fxtract.extract(model, x, tmp_path / "two", num_shards=2, shard_index=0, **opts)
    assert two.complete and np.array_equal(two["relu2"][:], one["relu2"][:])
    for p in (tmp_path / "one").glob("shard-*"):
        assert p.read_bytes() == (tmp_path / "two" / p.name).read_bytes()


def test_mismatched_rerun_refused_unless_overwrite(tmp_path):
    model, x = TinyNet(), _x(4)
    fxtract.extract(model, x, tmp_path / "s", nodes=["relu1"], progress=False)
    again = fxtract.extract(
        model, x, tmp_path / "s", nodes=["relu1"], progress=False
    )  # same: resumes (no-op)
    assert again.complete
    with pytest.raises(StoreMismatchError, match=r"made differently: nodes \(.*--overwrite"):
        fxtract.extract(model, x, tmp_path / "s", nodes=["relu2"], progress=False)
    with pytest.raises(StoreMismatchError, match=r"model\.state_dict_sha256 \("):
        fxtract.extract(TinyNet(), x, tmp_path / "s", nodes=["relu1"], progress=False)  # other weights
    s = fxtract.extract(model, x, tmp_path / "s", nodes=["relu2"], pool="avg", overwrite=True, progress=False)
    assert s.keys() == ["relu2"] and s["relu2"].shape == (4, 6)


def test_progress_bar_on_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    fxtract.extract(TinyNet(), _x(8), tmp_path / "a", nodes=["fc"], batch_size=4, progress=True)
    captured = capsys.readouterr()
    assert "8/8" in captured.err and "sample/s" in captured.err and captured.out == ""
    fxtract.extract(TinyNet(), _x(8), tmp_path / "b", nodes=["fc"])  # stderr is no terminal here: off
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("TQDM_DISABLE", "1")
    fxtract.extract(TinyNet(), _x(8), tmp_path / "c", nodes=["fc"], progress=True)
    assert capsys.readouterr().err == ""


def test_unwritable_directory(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreWriteError, match=r"cannot write the store in .*file/store.*--out DIR"):
        fxtract.extract(TinyNet(), _x(2), tmp_path / "file" / "store", nodes=["fc"], progress=False)


# ---------------------------------------------------------------------------------------------
# Images: corrupt files, the CLI


@pytest.fixture
def images(tmp_path):
    from PIL import Image

    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 255, (40, 36, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def _transform():
    from fxtract._data import image_transform

    return image_transform(image_size=32, resize=32)


def test_image_folder_round_trip_with_workers(tmp_path, images):
    from fxtract._data import collate, open_source

    model = TinyNet()
    store = fxtract.extract(
        model, images, tmp_path / "s", nodes=["relu2"], pool="avg", transform=_transform(), batch_size=3,
        shard_size=3, num_workers=2, progress=False,
    )  # fmt: skip
    src = open_source(images, transform=_transform())
    ref = _direct(model, ["relu2"], collate([src[i] for i in range(len(src))]).inputs)["relu2"].mean((2, 3))
    torch.testing.assert_close(store["relu2"].torch(), ref)
    assert store.labels.tolist() == [0] * 4 + [1] * 4 and store.classes == ["cats", "dogs"]
    assert store.sources[0].endswith("0.jpg") and store.manifest["config"]["preprocessing"] is not None


def test_corrupt_images(tmp_path, images):
    (images / "cats" / "9.jpg").write_bytes(b"not an image")
    opts = {"nodes": ["fc"], "transform": _transform(), "batch_size": 2, "progress": False}
    with pytest.raises(SampleReadError, match=r"cats/9.jpg.*cannot decode.*--on-error skip"):
        fxtract.extract(TinyNet(), images, tmp_path / "fail", **opts)
    store = fxtract.extract(TinyNet(), images, tmp_path / "skip", on_error="skip", **opts)
    assert len(store) == 8 and store.manifest["num_samples"] == 9
    assert [s["source"] for s in store.skipped] == ["cats/9.jpg"]
    assert "cannot decode image" in store.skipped[0]["reason"]
    assert store.skipped[0]["index"] not in store.indices.tolist()


def test_cli_extract_and_info(tmp_path, images):
    out = tmp_path / "feats"
    spec = f"{REPO / 'tests' / 'models_store.py'}:TinyNet"
    args = ["extract", spec, str(images), "--nodes", "relu1", "--nodes", "fc", "--pool", "relu1=max", "--out", str(out),
            "--image-size", "32", "--batch-size", "4", "--num-workers", "0", "--dtype", "float16"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "8 samples" in result.output and "fxtract.open_features(" in result.output
    store = open_features(out)
    assert store["relu1"].shape == (8, 4) and store["fc"].dtype == np.float16
    assert store.manifest["config"]["model"]["spec"] == spec
    info = CliRunner().invoke(main, ["info", str(out)])
    assert info.exit_code == 0, info.output
    assert (
        "complete" in info.output
        and "relu1" in info.output
        and "[8, 4]" in info.output
        and "max" in info.output
    )
    as_json = json.loads(CliRunner().invoke(main, ["info", str(out), "--json"]).output)
    assert as_json["rows"] == 8 and as_json["keys"]["fc"]["dtype"] == "float16"
    again = CliRunner().invoke(main, [*args[:-2], "--dtype", "float32"])
    assert again.exit_code == 1 and "Error: " in again.output and "--overwrite" in again.output
    bad = CliRunner().invoke(main, ["info", str(images)])
    assert bad.exit_code == 1 and "not an fxtract feature store" in bad.output


# ---------------------------------------------------------------------------------------------
# Killed, interrupted, out of space: in a subprocess


SCRIPT = textwrap.dedent(
    """
    import resource, signal, sys
    import torch
    sys.path.insert(0, {repo!r})
    torch.set_num_threads(1)
    from tests.test_extract import slow_run
    out, delay, limit, writers, writer = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file over the limit raises EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    import fxtract
    try:
        slow_run(out, delay=delay, num_shards=writers, shard_index=writer)
    except fxtract.FxtractError as e:
        print("FxtractError:", e, file=sys.stderr)
        sys.exit(3)
    """
).format(repo=str(REPO))


def slow_run(out, *, delay=0.0, interrupt_at=None, **kw):
    """40 samples, 5 shards of 8, batches of 4: the same store in this process or a subprocess."""
    torch.manual_seed(0)
    model = SlowNet(delay, interrupt_at)
    x = torch.randn(40, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    opts = {"nodes": ["net.relu2"], "strategy": "hooks", "batch_size": 4, "shard_size": 8, "progress": False}
    return fxtract.extract(model, x, out, **opts, **kw)


def _spawn(out, delay=0.0, limit=0, writers=1, writer=0):
    args = [sys.executable, "-c", SCRIPT, str(out), str(delay), str(limit), str(writers), str(writer)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "store"
    slow_run(out)
    return _files(out)


def test_resume_after_sigkill_is_byte_identical(tmp_path, reference):
    out = tmp_path / "store"
    proc = _spawn(out, delay=0.2)
    deadline = time.monotonic() + 120
    while len(list(out.glob("shard-*.safetensors"))) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no shard appeared"
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert 2 <= len(list(out.glob("shard-*.safetensors"))) < 5 and not (out / "manifest.json").exists()
    slow_run(out)  # the rerun skips the committed shards
    assert _files(out) == reference


def test_ctrl_c_stops_cleanly_with_whole_shards(tmp_path, reference):
    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        slow_run(out, interrupt_at=6)  # the probe, then 4 batches: 2 shards, then Ctrl-C
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    with pytest.warns(UserWarning, match="incomplete: 3 of 5"):
        partial = open_features(out)
    assert [s["unit"] for s in partial.manifest["shards"]] == [0, 1]
    assert partial.indices.tolist() == list(range(16))
    slow_run(out)
    assert _files(out) == reference


def test_full_disk_keeps_committed_shards(tmp_path):
    out = tmp_path / "store"
    slow_run(out, num_shards=2, shard_index=0)  # units 0, 2, 4
    before = _files(out)
    proc = _spawn(out, limit=20_000, writers=2, writer=1)  # a shard is ~49 kB: over the file size limit
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert "cannot write shard 'shard-000001.safetensors'" in err and "File too large" in err
    assert "intact" in err and "resume" in err
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    after = _files(out)
    assert all(after[name] == data for name, data in before.items() if name.startswith("shard-"))
    with pytest.warns(UserWarning, match="incomplete"):
        assert open_features(out).indices.tolist() == [*range(8), *range(16, 24), *range(32, 40)]


@pytest.mark.parametrize("kind", [".pt", ".npy", ".safetensors", "dict.pt"])
def test_tensor_files_round_trip(tmp_path, kind):
    if kind == "dict.pt":
        model = Tokens()
        data = {
            "input_ids": torch.randint(0, 20, (5, 4), generator=torch.Generator().manual_seed(0)),
            "attention_mask": torch.ones(5, 4, dtype=torch.long),
        }
        torch.save(data, tmp_path / "inputs.pt")
        path, node = tmp_path / "inputs.pt", "mix"
        with torch.no_grad():
            want = model(**data)
    else:
        model, x = TinyNet(), _x(5)
        path, node = tmp_path / f"inputs{kind}", "relu2"
        if kind == ".pt":
            torch.save(x, path)
        elif kind == ".npy":
            np.save(path, x.numpy())
        else:
            from safetensors.torch import save_file

            save_file({"x": x}, str(path))
        want = _direct(model, [node], x)[node]
    store = fxtract.extract(model, path, tmp_path / "s", nodes=[node], batch_size=2, progress=False)
    torch.testing.assert_close(store[node].torch(), want)
    assert store.manifest["config"]["data"]["count"] == 5


def test_file_list_round_trip(tmp_path, images):
    from fxtract._data import collate, open_source

    listing = tmp_path / "list.csv"
    files = sorted(images.rglob("*.png"))
    listing.write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in files))
    model = TinyNet()
    store = fxtract.extract(
        model, listing, tmp_path / "s", nodes=["fc"], transform=_transform(), progress=False
    )
    src = open_source(listing, transform=_transform())
    want = _direct(model, ["fc"], collate([src[i] for i in range(len(src))]).inputs)["fc"]
    torch.testing.assert_close(store["fc"].torch(), want)
    assert len(store) == len(files) and store.labels is not None
