"""fxtract.viz: feature-map grids, statistics, embeddings and the graph (the browser test is apart)."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from fxtract._cli import main
from fxtract._errors import FxtractTypeError, FxtractValueError, NodeNotFoundError
from fxtract.viz import (
    MissingDependencyError,
    activation_stats,
    embedding_scatter,
    feature_grid,
    feature_maps,
    model_graph,
)
from fxtract.viz.embed import pca_2d

from .models_viz import ConvNet, FakeStore, Poisoned, TinyAttention


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def is_background(pixels: np.ndarray) -> np.ndarray:
    return (pixels >= 250).all(axis=-1)


def runs(mask: np.ndarray) -> int:
    """Number of runs of True in a 1-D mask."""
    padded = np.concatenate([[False], mask, [False]])
    return int((padded[1:] & ~padded[:-1]).sum())


# ---------------------------------------------------------------------------------------------
# Feature grids


@pytest.mark.parametrize(
    ("channels", "max_channels", "columns", "rows"), [(10, 4, 2, 2), (10, 10, 4, 3), (5, 64, 3, 2)]
)
def test_grid_draws_one_tile_per_channel_up_to_the_cap(channels, max_channels, columns, rows):
    x = torch.rand(2, channels, 6, 6) + 0.1  # no constant tile: every tile shows colour
    pic = feature_grid(x, name="conv", max_channels=max_channels, tile_px=24)
    image = decode(pic.png)
    assert (image.shape[1], image.shape[0]) == pic.size
    assert pic.kind == "channels" and pic.tiles == min(channels, max_channels)
    assert (pic.columns, pic.rows) == (columns, rows)
    # Count the tiles in the decoded pixels: runs of non-background along the centre of each row.
    first = pic.boxes[0]
    for r in range(rows):
        y = first[1] + r * (first[3] - first[1] + 4) + (first[3] - first[1]) // 2
        in_row = [b for b in pic.boxes if b[1] <= y < b[3]]
        line = ~is_background(image[y, first[0] - 2 :])
        assert runs(line) == len(in_row)
    for left, top, right, bottom in pic.boxes:
        assert not is_background(image[top:bottom, left:right]).any()


def test_grid_orders_by_activity_or_index():
    x = torch.zeros(1, 6, 4, 4)
    for c, level in enumerate([1.0, 5.0, 3.0, 0.5, 4.0, 2.0]):
        x[0, c] = level * torch.linspace(0, 1, 16).reshape(4, 4)
    assert feature_grid(x, max_channels=3).shown == (1, 4, 2)
    assert feature_grid(x, max_channels=3, order="index").shown == (0, 1, 2)


def test_grids_differ_when_activations_differ_and_repeat_when_equal():
    a = torch.rand(1, 4, 8, 8)
    b = a.clone()
    b[0, 2] = b[0, 2].flip(0)
    same = feature_grid(a, order="index").png
    assert feature_grid(a.clone(), order="index").png == same
    other = feature_grid(b, order="index")
    assert other.png != same
    changed = np.abs(decode(same) - decode(other.png)).sum(axis=-1) > 0
    left, top, right, bottom = other.boxes[2]
    assert changed[top:bottom, left:right].any()
    for k in (0, 1, 3):  # the other tiles are untouched
        left, top, right, bottom = other.boxes[k]
        assert not changed[top + 8 : bottom, left:right].any()


def test_grid_draws_the_input_image_beside_the_tiles():
    red = Image.new("RGB", (20, 20), (255, 0, 0))
    pic = feature_grid(torch.rand(1, 4, 5, 5), image=red, tile_px=30)
    image = decode(pic.png)
    first = pic.boxes[0]
    assert (image[first[1] + 30, 20] == (255, 0, 0)).all()  # left of the tiles, the image
    plain = feature_grid(torch.rand(1, 4, 5, 5), tile_px=30)
    assert pic.boxes[0][0] > plain.boxes[0][0]  # the tiles moved right to make room


def test_tokens_heads_and_vectors():
    tokens = feature_grid(torch.randn(1, 7, 12), name="blocks.0")
    assert tokens.kind == "tokens" and tokens.tiles == 1 and "7 tokens x 12 channels" in tokens.note
    probs = torch.randn(2, 3, 5, 5).softmax(-1)
    heads = feature_grid(probs, name="attn")
    assert (
        heads.kind == "heads"
        and heads.tiles == 3
        and heads.shown == (0, 1, 2)  # heads in order: they have no ranking
    )
    logits = torch.randn(1, 3, 5, 5)
    assert feature_grid(logits).kind == "channels"
    assert feature_grid(logits, kind="heads").kind == "heads"
    vector = feature_grid(torch.randn(1, 9))
    assert vector.kind == "vector"
    video = feature_grid(torch.randn(1, 4, 6, 5, 5))
    assert video.kind == "channels" and "frame 3 of 6" in video.note
    for pic in (tokens, heads, vector, video):
        assert decode(pic.png).shape[1::-1] == pic.size


@pytest.mark.parametrize(
    ("value", "options", "error", "match"),
    [
        (torch.randn(4), {}, FxtractValueError, "batch dimension first"),
        (torch.randn(1, 3, 4, 4), {"kind": "tokens"}, FxtractValueError, "kind='tokens' draws a sample of 2"),
        (torch.randn(1, 3, 4, 4), {"kind": "bars"}, FxtractValueError, "kind must be one of"),
        (torch.randn(2, 3, 4, 4), {"index": 2}, FxtractValueError, "index 2 is out of range"),
        ((torch.randn(1, 2), torch.randn(1, 2)), {}, FxtractTypeError, "not one tensor"),
    ],
)
def test_grid_errors_say_what_to_do(value, options, error, match):
    with pytest.raises(error, match=match):
        feature_grid(value, **options)


def test_pictures_leave_matplotlib_state_alone():
    import matplotlib

    backend = matplotlib.get_backend()
    feature_grid(torch.rand(1, 2, 3, 3))
    assert matplotlib.get_backend() == backend
    if "matplotlib.pyplot" in sys.modules:
        assert not sys.modules["matplotlib.pyplot"].get_fignums()


def test_missing_matplotlib_gives_the_install_line(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'fxtract\[viz\]'"):
        feature_grid(torch.rand(1, 2, 3, 3))
    assert isinstance(MissingDependencyError("x"), ImportError)


def test_feature_maps_writes_one_png_per_node_and_leaves_the_model_alone(tmp_path):
    model = ConvNet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pictures = feature_maps(model, torch.randn(1, 3, 12, 12), nodes=["stem", "block.1", "head"], out=tmp_path)
    assert list(pictures) == ["stem", "block.1", "head"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["block.1.png", "head.png", "stem.png"]
    assert pictures["head"].kind == "vector" and pictures["stem"].tiles == 8
    assert Image.open(tmp_path / "stem.png").size == pictures["stem"].size
    assert stat.S_IMODE(os.stat(tmp_path / "stem.png").st_mode) & 0o044  # readable like any file
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats untouched


# ---------------------------------------------------------------------------------------------
# Statistics


def numpy_stats(x: np.ndarray, axis: int) -> dict:
    x = x.astype(np.float64)
    finite = x[np.isfinite(x)]
    channels = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    return {
        "mean": finite.mean(),
        "std": finite.std(),
        "min": finite.min(),
        "max": finite.max(),
        "zeros": float((x == 0).mean()),
        "nans": int(np.isnan(x).sum()),
        "infs": int(np.isinf(x).sum()),
        "dead": tuple(np.flatnonzero(~(channels != 0).any(axis=1))),
    }


def awkward(shape: tuple[int, ...], channel_axis: int, seed: int = 0, dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=shape) * 3 + 1).astype(dtype)
    x[x < 0] = 0  # ReLU-like zeros
    index = [slice(None)] * len(shape)
    index[channel_axis] = 1
    x[tuple(index)] = 0  # a dead channel
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, 3, replace=False)] = np.nan
    flat[rng.choice(flat.size, 2, replace=False)] = np.inf
    flat[rng.choice(flat.size, 1, replace=False)] = -np.inf
    return x


@pytest.mark.parametrize(
    ("shape", "channel_axis"), [((13, 4, 5, 3), 1), ((13, 6, 5), 2), ((13, 7), 1), ((13, 3, 2, 4, 4), 1)]
)
@pytest.mark.parametrize("batch_size", [1, 4, 1000])
def test_store_statistics_equal_numpys(shape, channel_axis, batch_size):
    data = awkward(shape, channel_axis)
    store = FakeStore({"feat": data, "clean": np.abs(data[:, :2]).clip(0, 10)})
    report = activation_stats(store, bins=16, batch_size=batch_size)
    assert [s.name for s in report] == ["feat", "clean"]
    got, want = report[0], numpy_stats(data, channel_axis)
    for key in ("mean", "std", "min", "max", "zeros"):
        assert getattr(got, key) == pytest.approx(want[key], rel=1e-10, abs=1e-12), key
    assert (got.nans, got.infs, got.dead) == (want["nans"], want["infs"], want["dead"])
    assert (got.samples, got.count, got.shape, got.channels) == (
        13,
        data.size,
        shape[1:],
        shape[channel_axis],
    )
    counts, edges = got.histogram
    finite = data[np.isfinite(data)].astype(np.float64)
    assert np.array_equal(edges, np.linspace(finite.min(), finite.max(), 17))
    assert np.array_equal(counts, np.histogram(finite, bins=edges)[0])
    assert all(b <= batch_size for b in store["feat"].requested)  # streamed, never .numpy()
    assert report.first_nan == "feat" and report.first_inf == "feat"


def test_wide_rows_are_read_in_bounded_chunks(monkeypatch):
    import fxtract.viz.stats as stats

    monkeypatch.setattr(stats, "_CHUNK_ELEMENTS", 100)  # 40 values a row: 2 rows a read
    data = awkward((9, 10, 2, 2), 1, dtype=np.float16)
    store = FakeStore({"wide": data})
    got = activation_stats(store)[0]
    assert store["wide"].requested == [2]
    want = numpy_stats(data, 1)
    assert got.mean == pytest.approx(want["mean"], rel=1e-10) and got.std == pytest.approx(
        want["std"], rel=1e-10
    )
    assert got.dead == want["dead"]


def test_live_statistics_equal_numpys_on_the_extractors_outputs():
    from fxtract import create_feature_extractor

    model = ConvNet().eval()
    batches = [torch.randn(3, 3, 8, 8), torch.randn(2, 3, 8, 8)]
    report = activation_stats(model, batches, nodes=["stem.2", "block", "head"])
    extractor = create_feature_extractor(model, ["stem.2", "block", "head"])
    with torch.no_grad():
        outs = [extractor(b) for b in batches]
    assert [s.name for s in report] == ["stem.2", "block", "head"]
    assert activation_stats(extractor, batches) == report  # an extractor as it is
    for s in report:
        x = torch.cat([o[s.name] for o in outs]).numpy()
        want = numpy_stats(x, 1)
        assert (s.mean, s.std, s.min, s.max) == pytest.approx(
            (want["mean"], want["std"], want["min"], want["max"])
        )
        assert s.dead == want["dead"] and s.samples == 5


def test_first_nan_is_the_first_node_in_execution_order():
    model = Poisoned()
    # Ask in reverse order: the report follows execution order, where the NaN travels.
    report = activation_stats(model, torch.randn(4, 6), nodes=["fc3", "log", "sub", "fc2", "fc1"])
    assert [s.name for s in report] == ["fc1", "fc2", "sub", "log", "fc3"]
    assert report.first_nan == "log"
    problems = report.problems()
    assert problems[0].startswith("NaN first appears at 'log'") and "fc3" in problems[1]


def test_live_statistics_leave_the_model_as_it_was():
    model = ConvNet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    activation_stats(model, torch.randn(2, 3, 8, 8), nodes="stem.*", bins=8)
    assert all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_report_as_table_json_and_csv():
    data = {"a": np.array([[0.0, 1.0], [0.0, 3.0]]), "b": np.array([[np.nan, 1.0], [2.0, 2.0]])}
    report = activation_stats(data)
    table = report.table().splitlines()
    assert table[0].split()[:4] == ["node", "shape", "mean", "std"] and table[1].split()[0] == "a"
    parsed = json.loads(report.to_json())
    assert (
        parsed["first_nan"] == "b" and parsed["nodes"][0]["dead"] == [0] and parsed["nodes"][1]["nans"] == 1
    )
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert rows[0]["name"] == "a" and float(rows[0]["zeros"]) == 0.5 and rows[0]["dead"] == "1"
    empty = activation_stats({"n": np.full((2, 2), np.nan)})[0]
    assert empty.to_dict()["mean"] is None and empty.nans == 4


def test_histograms_png_has_one_panel_per_node():
    report = activation_stats(
        {f"n{i}": np.random.default_rng(i).normal(size=(20, 3)) for i in range(5)}, bins=10
    )
    pic = report.histograms(columns=2)
    assert (pic.tiles, pic.rows, pic.columns) == (5, 3, 2)
    assert decode(pic.png).shape[1::-1] == pic.size
    with pytest.raises(FxtractValueError, match="bins=64"):
        activation_stats({"a": np.ones((2, 2))}).histograms()


def test_statistics_errors():
    with pytest.raises(NodeNotFoundError, match="Did you mean 'layer1'"):
        activation_stats(FakeStore({"layer1": np.ones((2, 3))}), nodes=["layer11"])
    with pytest.raises(FxtractValueError, match="need inputs"):
        activation_stats(ConvNet())
    with pytest.raises(FxtractTypeError, match="a feature store or a dict"):
        activation_stats(42)
    with pytest.raises(FxtractValueError, match="no feature store at"):
        activation_stats("/nonexistent/store")


# ---------------------------------------------------------------------------------------------
# Embeddings


def numpy_pca(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:2]
    comps *= np.sign(comps[np.arange(2), np.abs(comps).argmax(axis=1)])[:, None]
    return centred @ comps.T, (s[:2] ** 2) / (s**2).sum()


def test_pca_equals_numpys_svd_streamed():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 5)) @ rng.normal(size=(5, 5))
    points, ratio, _ = pca_2d(lambda: iter([x[:7], x[7:40], x[40:]]))
    want_points, want_ratio = numpy_pca(x)
    np.testing.assert_allclose(points, want_points, atol=1e-8)
    np.testing.assert_allclose(ratio, want_ratio, rtol=1e-8)


def test_embedding_pools_maps_and_colours_by_label():
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 3
    maps = rng.normal(size=(40, 6, 3, 3)) + labels[:, None, None, None]
    pic = embedding_scatter(maps, labels, classes=["a", "b", "c"])
    np.testing.assert_allclose(pic.extra["points"], numpy_pca(maps.mean(axis=(2, 3)))[0], atol=1e-8)
    assert pic.kind == "scatter" and decode(pic.png).shape[1::-1] == pic.size
    plain = embedding_scatter(maps)
    colours = lambda p: len({tuple(c) for c in decode(p.png).reshape(-1, 3)[::3]})  # noqa: E731
    assert plain.png != pic.png and colours(pic) > colours(plain)
    with pytest.raises(FxtractValueError, match="39 labels for 40 samples"):
        embedding_scatter(maps, labels[:39])


def test_embedding_of_a_store_uses_its_labels_and_streams():
    rng = np.random.default_rng(0)
    store = FakeStore(
        {"tokens": rng.normal(size=(30, 4, 6))}, labels=np.arange(30) % 2, classes=["cat", "dog"]
    )
    pic = embedding_scatter(store, node="tokens", batch_size=7, out=None)
    np.testing.assert_allclose(
        pic.extra["points"], numpy_pca(store["tokens"]._data.mean(axis=1))[0], atol=1e-8
    )
    assert store["tokens"].requested == [7, 7]  # two passes, 7 rows at a time
    with pytest.raises(NodeNotFoundError, match="Did you mean 'tokens'"):
        embedding_scatter(store, node="token")


# ---------------------------------------------------------------------------------------------
# The graph


def test_graph_has_hierarchy_data_flow_shapes_and_selection():
    graph = model_graph(ConvNet(), torch.randn(1, 3, 8, 8), nodes=["block.*"])
    by_name = {i.name: i for i in graph.items}
    assert graph.flow and graph.strategy == "fx"
    assert by_name["add"].inputs == ("stem.2", "block.1")  # the residual: two inputs
    assert by_name["stem.0"].inputs == ("x",) and by_name["stem.0"].parent == "stem"
    assert by_name["block.0"].shapes == ((1, 8, 8, 8),)
    assert graph.selected == ("block.0", "block.1")
    assert graph.children["stem"] == ["stem.0", "stem.1", "stem.2"]
    assert graph.items.index(by_name["stem"]) < graph.items.index(by_name["stem.0"])  # parents first


def test_dot_collapses_to_depth_and_maps_edges():
    graph = model_graph(ConvNet(), torch.randn(1, 3, 8, 8), nodes=["block.1"])
    full = graph.to_dot()
    assert 'subgraph "cluster_stem"' in full and '"stem.2" -> "add"' in full and '"block.1" -> "add"' in full
    shallow = graph.to_dot(depth=1)
    assert "cluster_" not in shallow
    assert '"stem" -> "block"' in shallow and '"stem" -> "add"' in shallow and '"block" -> "add"' in shallow
    assert '"block" [label="block\\nSequential' in shallow and 'fillcolor="#ffd966"' in shallow
    assert shallow.count("{") == shallow.count("}")
    declared = {line.split('"')[1] for line in shallow.splitlines() if "[label=" in line}
    for line in shallow.splitlines():
        if " -> " in line:
            tail, head = line.strip().rstrip(";").split(" -> ")
            assert tail.strip('"') in declared and head.split(" [")[0].strip('"') in declared


def test_exported_graph_has_data_flow_too():
    graph = model_graph(ConvNet(), torch.randn(1, 3, 8, 8), strategy="export")
    by_name = {i.name: i for i in graph.items}
    assert graph.strategy == "export" and graph.flow
    assert by_name["add"].inputs == ("stem.2", "block.1") and by_name["head"].inputs == ("mean",)
    assert "[style=dashed]" not in graph.to_dot()


def test_graph_without_data_flow_draws_execution_order(tmp_path):
    graph = model_graph(ConvNet(), torch.randn(1, 3, 8, 8), strategy="hooks")
    assert graph.strategy == "hooks" and not graph.flow
    assert "[style=dashed]" in graph.to_dot() and "execution order" in graph.to_dot()


def test_html_page_is_self_contained():
    graph = model_graph(TinyAttention(), torch.randn(1, 4, 8), nodes=["softmax"])
    page = graph.to_html(depth=1)
    assert "http://" not in page and "https://" not in page and "<link" not in page and " src=" not in page
    blob = page.split('<script type="application/json" id="graph-data">')[1].split("</script>")[0]
    data = json.loads(blob)
    assert [d["n"] for d in data["items"]] == [i.name for i in graph.items]
    assert [d["n"] for d in data["items"] if d["x"]] == ["softmax"]


def test_write_gives_svg_with_dot_and_html_without(tmp_path, monkeypatch):
    graph = model_graph(ConvNet(), torch.randn(1, 3, 8, 8))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert [p.name for p in graph.write(tmp_path / "g.html")] == ["g.dot", "g.html"]
    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\ncat > /dev/null\necho '<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    written = graph.write(tmp_path / "h", depth=1)
    assert [p.name for p in written] == ["h.dot", "h.svg"] and "<svg" in written[1].read_text()
    assert [p.name for p in graph.write(tmp_path / "k", html=True)] == ["k.dot", "k.html"]
    assert (tmp_path / "h.dot").read_text() == graph.to_dot(depth=1)


def test_graph_errors():
    with pytest.raises(NodeNotFoundError, match="stem"):
        model_graph(ConvNet(), torch.randn(1, 3, 8, 8), nodes=["stm"])
    with pytest.raises(FxtractValueError, match="mode must be"):
        model_graph(ConvNet(), mode="both")


# ---------------------------------------------------------------------------------------------
# CLI


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def one_error(result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label, tint in (("cat", (200, 60, 60)), ("dog", (60, 60, 200))):
        (root / label).mkdir()
        for i in range(4):
            pixels = np.clip(rng.normal(size=(20, 24, 3)) * 30 + tint, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def store(tmp_path_factory, image_folder) -> Path:
    import fxtract
    from fxtract._data import image_transform

    out = tmp_path_factory.mktemp("store") / "features"
    fxtract.extract(
        ConvNet(),
        str(image_folder),
        out,
        nodes=["stem", "head"],
        transform=image_transform(image_size=16, resize=18),
        batch_size=3,
        progress=False,
    )
    return out


def test_cli_maps_writes_pictures(tmp_path, image_folder):
    out = tmp_path / "maps"
    result = run(
        "viz",
        "maps",
        "torchvision:resnet18",
        str(image_folder / "cat" / "0.png"),
        "--nodes",
        "layer1",
        "--nodes",
        "fc",
        "--out",
        str(out),
        "--image-size",
        "32",
        "--max-channels",
        "9",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(out / "layer1.png"), str(out / "fc.png")]
    assert Image.open(out / "layer1.png").size[0] > 100
    one_error(
        run(
            "viz",
            "maps",
            "torchvision:resnet18",
            str(tmp_path / "no.png"),
            "--nodes",
            "fc",
            "--out",
            str(out),
        ),
        "no such image file",
    )


def test_cli_stats_of_a_model_and_of_a_store(tmp_path, store):
    result = run(
        "viz",
        "stats",
        "torchvision:resnet18",
        "--nodes",
        "layer4",
        "--nodes",
        "fc",
        "--samples",
        "2",
        "--input-size",
        "3,32,32",
        "--histograms",
        str(tmp_path / "h.png"),
    )
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["node", "layer4", "fc"]
    assert Image.open(tmp_path / "h.png").size[0] > 300
    parsed = json.loads(run("viz", "stats", str(store), "--json").stdout)
    from fxtract.store import open_features

    features = open_features(store)
    assert [n["name"] for n in parsed["nodes"]] == features.keys()
    x = features["stem"].numpy().astype(np.float64)
    assert parsed["nodes"][0]["mean"] == pytest.approx(x.mean()) and parsed["nodes"][0][
        "std"
    ] == pytest.approx(x.std())
    rows = list(
        csv.DictReader(io.StringIO(run("viz", "stats", str(store), "--csv", "--nodes", "head").stdout))
    )
    assert [r["name"] for r in rows] == ["head"] and int(rows[0]["samples"]) == 8
    one_error(run("viz", "stats", str(store), "--json", "--csv"), "--json and --csv")
    one_error(run("viz", "stats", str(tmp_path)), "not a feature store")


def test_cli_embed_a_store(tmp_path, store):
    result = run("viz", "embed", str(store), "--node", "head", "--out", str(tmp_path / "e.png"))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "e.png") and "PC1" in result.stderr
    assert Image.open(tmp_path / "e.png").size == (720, 560)
    one_error(
        run("viz", "embed", str(tmp_path), "--node", "head", "--out", str(tmp_path / "x.png")),
        "not a feature store",
    )
    one_error(run("viz", "embed", str(store), "--node", "hed", "--out", str(tmp_path / "x.png")), "'head'")


def test_cli_graph_writes_dot_and_html(tmp_path):
    result = run(
        "viz",
        "graph",
        "torchvision:resnet18",
        "--nodes",
        "layer2.*.conv1",
        "--out",
        str(tmp_path / "r18"),
        "--input-size",
        "3,32,32",
        "--html",
        "--depth",
        "1",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(tmp_path / "r18.dot"), str(tmp_path / "r18.html")]
    assert '"layer2" [label="layer2\\nSequential' in (tmp_path / "r18.dot").read_text()
    assert "2 highlighted" in result.stderr


def test_viz_imports_neither_torch_nor_matplotlib():
    code = (
        "import sys, fxtract.viz, fxtract._cli._viz; "
        "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, sorted(sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_statistics_and_embedding_of_a_real_store(store):
    from fxtract import open_features

    features = open_features(store)
    report = activation_stats(features, batch_size=3)
    assert [s.name for s in report] == features.keys()
    for s in report:
        x = features[s.name].numpy()
        want = numpy_stats(x, 1)
        for key in ("mean", "std", "min", "max", "zeros"):
            assert getattr(s, key) == pytest.approx(want[key], rel=1e-10, abs=1e-12), (s.name, key)
        assert s.dead == want["dead"] and s.samples == len(features)
    pic = embedding_scatter(features, node="stem", batch_size=5)
    pooled = features["stem"].numpy().astype(np.float64).mean(axis=(2, 3))
    np.testing.assert_allclose(pic.extra["points"], numpy_pca(pooled)[0], atol=1e-8)
    assert list(features.classes) == ["cat", "dog"] and set(features.labels.tolist()) == {0, 1}
    assert decode(pic.png).shape[1::-1] == pic.size
