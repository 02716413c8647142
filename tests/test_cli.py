"""The fxtract command line: every command through CliRunner, once as a real process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision
from click.testing import CliRunner

import fxtract
from fxtract._cli import main
from fxtract._cli._models import (
    MissingPackageError,
    ModelSpecError,
    _import,
    _torchvision_input_size,
    load_model,
    parse_input_size,
)

SRC = str(Path(fxtract.__file__).resolve().parent.parent)

MODEL_FILE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.drop = nn.Dropout()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.conv(x).relu()
        if self.training:
            x = self.drop(x)
        return self.head(x.mean((2, 3)))


def make_net():
    return Net()


def make_huge():
    with torch.device("meta"):
        return nn.Sequential(*[nn.Linear(8192, 8192) for _ in range(24)])  # 1.6B parameters


def broken():
    raise RuntimeError("no GPU here")


def not_a_model():
    return 3


NUMBER = 4
"""


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "mymodels.py"
    path.write_text(MODEL_FILE)
    return path


UNTRACEABLE_FILE = """
from torch import nn


class Branchy(nn.Module):
    # Reads a tensor value: only hooks (with one real forward) can follow it.
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 4)

    def forward(self, x):
        h = self.a(x)
        if h.abs().sum() > 0:
            h = h * 2
        return self.b(h)


class ShapeBranch(nn.Module):
    # Branches on a size: FX cannot trace it, torch.export can.
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)

    def forward(self, x):
        if x.shape[-1] > 4:
            x = x * 2
        return self.a(x)
"""


@pytest.fixture(scope="module")
def untraceable_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "untraceable.py"
    path.write_text(UNTRACEABLE_FILE)
    return path


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    # Nothing but fxtract's progress lines besides the error.
    assert all(line.startswith("fxtract: ") for line in lines if line != errors[0]), result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert result.stdout == ""


# ---------------------------------------------------------------------------------------------
# nodes


def test_nodes_lists_names_in_execution_order():
    result = run("nodes", "torchvision:resnet18")
    assert result.exit_code == 0, result.stderr
    expected = fxtract.get_graph_node_names(torchvision.models.resnet18())[1]
    assert result.stdout.splitlines() == expected
    assert "fxtract: ResNet, 11.69M parameters" in result.stderr


def test_nodes_shapes_filter_and_modules():
    result = run(
        "nodes", "torchvision:resnet18", "--shapes", "--filter", "layer4.1.*", "--input-size", "3,64,64"
    )
    assert result.exit_code == 0, result.stderr
    rows = [line.split(None, 1) for line in result.stdout.splitlines()]
    assert rows[0] == ["layer4.1.conv1", "[1, 512, 2, 2]"]
    assert all(shape == "[1, 512, 2, 2]" for _, shape in rows)
    assert "inputs [1, 3, 64, 64] float32 (meta tensors" in result.stderr
    names = run("nodes", "torchvision:resnet18", "--modules").stdout.splitlines()
    i = names.index("layer1.1.relu_1")
    assert names[i : i + 3] == ["layer1.1.relu_1", "layer1.1", "layer1"]


def test_nodes_json():
    result = run("nodes", "torchvision:resnet18", "--json", "--filter", "fc")
    assert json.loads(result.stdout) == [
        {"name": "fc", "kind": "module", "target": "Linear", "params": 513000, "modes": "both", "parent": ""}
    ]
    data = json.loads(
        run("nodes", "torchvision:resnet18", "--json", "--shapes", "--input-size", "3,32,32").stdout
    )
    assert data[-1]["name"] == "fc" and data[-1]["shapes"] == [[1, 1000]]


def test_nodes_mode_both_marks_train_only_nodes(model_file):
    result = run("nodes", f"{model_file}:make_net", "--mode", "both")
    assert result.exit_code == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert ["drop", "train", "only"] in lines
    assert ["head"] in lines
    train = run("nodes", f"{model_file}:make_net", "--mode", "train").stdout.split()
    assert "drop" in train and "drop" not in run("nodes", f"{model_file}:Net").stdout.split()


def test_nodes_tree_and_depth():
    result = run("nodes", "torchvision:resnet18", "--tree", "--input-size", "3,64,64")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ResNet", "11,689,512"]
    assert any(line.startswith("├─ layer1 ") and "[1, 64, 16, 16]" in line for line in lines)
    assert any(line.startswith("│  ├─ layer1.0 ") and "BasicBlock" in line for line in lines)
    assert any("layer1.0.conv1" in line and "Conv2d" in line for line in lines)
    shallow = run("nodes", "torchvision:resnet18", "--tree", "--depth", "1").stdout
    assert "layer1.0" not in shallow and "(+" in shallow and "└─ fc" in shallow
    filtered = run("nodes", "torchvision:resnet18", "--tree", "--filter", "layer2.1.conv2").stdout
    assert re.findall(r"─ (\S+)", filtered) == [
        "layer2",
        "layer2.1",
        "layer2.1.conv2",
    ]


def test_nodes_tree_json_timm_model():
    # timm's own leaves (BatchNormAct2d) come with timm: models; input size from its config.
    result = run("nodes", "timm:test_efficientnet", "--tree", "--json", "--depth", "2")
    assert result.exit_code == 0, result.stderr
    assert "inputs [1, 3, 160, 160] float32" in result.stderr
    tree = json.loads(result.stdout)
    assert tree["target"] == "EfficientNet"
    blocks = next(c for c in tree["children"] if c["name"] == "blocks")
    assert blocks["children"] and all(c["children"] == [] for c in blocks["children"])
    assert "hidden" in blocks["children"][0]


# ---------------------------------------------------------------------------------------------
# describe


def test_describe_table():
    result = run(
        "describe",
        "torchvision:resnet18",
        "--nodes",
        "layer1.0*",
        "--exclude",
        r"re:.*bn\d",
        "--input-size",
        "3,64,64",
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "kind", "target", "shape", "dtype", "params"]
    assert lines[1].split() == [
        "layer1.0.conv1",
        "module",
        "Conv2d",
        "[1,",
        "64,",
        "16,",
        "16]",
        "float32",
        "36,864",
    ]
    assert lines[-1].split()[:3] == ["layer1.0", "module", "BasicBlock"]
    # aligned: every column starts at the same offset on each line
    starts = {line.index("module") for line in lines[1:] if " module " in line}
    assert len(starts) == 1
    assert any("operator.add" in line and line.rstrip().endswith("-") for line in lines)
    # params right-aligned
    assert len({len(line) for line in lines if line.rstrip()[-1].isdigit()}) == 1


def test_describe_json_and_mode_both(model_file):
    result = run("describe", f"{model_file}:make_net", "--json", "--mode", "both", "--input-size", "3,8,8")
    data = {d["name"]: d for d in json.loads(result.stdout)}
    assert data["drop"]["modes"] == "train" and data["drop"]["shapes"] == [[1, 4, 8, 8]]
    assert data["head"] == {
        "name": "head",
        "kind": "module",
        "target": "Linear",
        "shapes": [[1, 2]],
        "dtypes": ["float32"],
        "params": 10,
        "modes": "both",
        "parent": "",
    }
    table = run("describe", f"{model_file}:make_net", "--mode", "both").stdout
    assert table.splitlines()[0].split()[-1] == "modes"


def test_describe_meta_model_from_file(model_file):
    result = run("describe", f"{model_file}:make_huge", "--nodes", "23", "--input-size", "8192")
    assert result.exit_code == 0, result.stderr
    assert "1.61B parameters" in result.stderr
    assert result.stdout.splitlines()[1].split() == [
        "23",
        "module",
        "Linear",
        "[1,",
        "8192]",
        "float32",
        "67,117,056",
    ]


def test_weights_from_a_state_dict(model_file, tmp_path):
    net = load_model(f"{model_file}:make_net").model
    torch.save(net.state_dict(), tmp_path / "net.pt")
    loaded = load_model(f"{model_file}:make_net", weights=str(tmp_path / "net.pt")).model
    assert torch.equal(loaded.head.weight, net.head.weight)
    torch.save({"state_dict": {"head.weight": torch.zeros(2, 4)}}, tmp_path / "partial.pt")
    result = run("nodes", f"{model_file}:make_net", "--weights", str(tmp_path / "partial.pt"))
    assert_one_line_error(result, "do not fit the model", "missing keys")
    assert_one_line_error(run("nodes", f"{model_file}:make_net", "--weights", "DEFAULT"), "state dict path")


# ---------------------------------------------------------------------------------------------
# --strategy


def test_strategy_hooks_and_its_warning(untraceable_file):
    result = run("nodes", f"{untraceable_file}:Branchy", "--strategy", "hooks", "--input-size", "8")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["a", "b"]
    assert "fxtract: warning: describe() ran a real forward because Branchy" in result.stderr
    names = run("nodes", "torchvision:resnet18", "--strategy", "hooks", "--input-size", "3,32,32").stdout
    assert names.splitlines()[:3] == ["conv1", "bn1", "relu"] and "layer1.0.relu_1" in names.split()


def test_strategy_auto_falls_back_and_says_so(untraceable_file):
    result = run("nodes", f"{untraceable_file}:ShapeBranch", "--input-size", "8")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "x" and "a" in result.stdout.split()
    assert "fxtract: warning: fxtract used strategy='export'; earlier strategies failed: fx:" in result.stderr
    assert "inputs [1, 8] float32" in result.stderr
    # names from FX need no input at all
    fx = run("nodes", "torchvision:resnet18", "--strategy", "fx", "--filter", "fc")
    assert fx.stdout.split() == ["fc"] and "inputs" not in fx.stderr


def test_describe_strategy_export_json(untraceable_file):
    result = run(
        "describe", f"{untraceable_file}:ShapeBranch", "--strategy", "export", "--json", "--input-size", "8"
    )
    assert result.exit_code == 0, result.stderr
    data = {d["name"]: d for d in json.loads(result.stdout)}
    assert data["a"]["kind"] == "module" and data["a"]["shapes"] == [[1, 8]] and data["a"]["params"] == 72
    assert data["mul"]["kind"] == "function" and data["mul"]["target"] == "aten.mul.Tensor"
    assert "warning" not in result.stderr


def test_strategy_errors(untraceable_file):
    result = run("nodes", f"{untraceable_file}:ShapeBranch", "--strategy", "fx")
    assert_one_line_error(result, "torch.fx could not trace the top-level forward of ShapeBranch")
    bad = run("describe", "torchvision:resnet18", "--strategy", "jit")
    assert bad.exit_code == 2 and "Invalid value for '--strategy'" in bad.stderr
    assert "'auto', 'fx', 'export', 'hooks'" in bad.stderr


def test_strategy_choices_match_the_api():
    from fxtract._cli import STRATEGIES
    from fxtract._options import STRATEGIES as API_STRATEGIES

    assert STRATEGIES == API_STRATEGIES


# ---------------------------------------------------------------------------------------------
# Mistakes: one line, no traceback


def test_error_unknown_models():
    assert_one_line_error(run("nodes", "torchvision:resnet81"), "no model 'resnet81'", "'resnet18'")
    assert_one_line_error(run("nodes", "timm:resnet1800"), "timm has no model", "'resnet18'")
    assert_one_line_error(run("nodes", "resnet18"), "'torchvision:resnet18'")


def test_error_bad_input_size():
    for bad in ("3,a,224", "0,3", ""):
        result = run("nodes", "torchvision:resnet18", "--shapes", "--input-size", bad)
        assert_one_line_error(result, "--input-size", "like 3,224,224")
    result = run("describe", "torchvision:resnet18", "--input-size", "3,224")
    assert_one_line_error(result, "cannot infer the shapes of node 'conv1' (module Conv2d)")


def test_error_file_without_factory(model_file, tmp_path):
    result = run("nodes", f"{model_file}:make_nett")
    assert_one_line_error(
        result, "no 'make_nett'", "Did you mean 'make_net'", "Net, make_net, make_huge, broken"
    )
    assert "NUMBER" not in result.stderr and "nn" not in result.stderr.split("defines")[1]
    assert_one_line_error(run("nodes", str(model_file)), "name the factory")
    assert_one_line_error(run("nodes", f"{model_file}:broken"), "broken() failed: RuntimeError: no GPU here")
    assert_one_line_error(run("nodes", f"{model_file}:not_a_model"), "returned a int")
    assert_one_line_error(run("nodes", f"{tmp_path}/nope.py:f"), "no such file")
    bad = tmp_path / "bad.py"
    bad.write_text("import not_a_module_xyz\n")
    assert_one_line_error(run("nodes", f"{bad}:f"), "importing", "ModuleNotFoundError")


def test_error_model_with_two_inputs(tmp_path):
    path = tmp_path / "two.py"
    path.write_text(
        textwrap.dedent(
            """
            import torch

            class Two(torch.nn.Module):
                def forward(self, a, b):
                    return a + b

            def build():
                return Two()
            """
        )
    )
    result = run("nodes", f"{path}:build", "--shapes", "--input-size", "4")
    assert_one_line_error(result, "argument 'b'", "--input NAME=SHAPE:DTYPE", "--inputs FILE")


def test_error_patterns_matching_nothing():
    assert_one_line_error(run("nodes", "torchvision:resnet18", "--filter", "layer9*"), "matches no node name")
    result = run("describe", "torchvision:resnet18", "--nodes", "layer1.0.conv9")
    assert_one_line_error(result, "'layer1.0.conv9' is not in the model's graph", "Did you mean")
    assert_one_line_error(run("describe", "torchvision:resnet18", "--exclude", "re:zzz"), "exclude pattern")
    assert_one_line_error(
        run("nodes", "torchvision:resnet18", "--depth", "2"), "--depth only applies with --tree"
    )


def test_error_missing_optional_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    assert_one_line_error(run("nodes", "timm:resnet18"), "pip install 'fxtract[timm]'")
    with pytest.raises(MissingPackageError, match=r"fxtract\[vision\]"):
        _import("not_a_package_xyz", "vision")


# ---------------------------------------------------------------------------------------------
# _models


def test_parse_input_size():
    assert parse_input_size("3,224,224") == (3, 224, 224)
    assert parse_input_size(" 3x32x32 ") == (3, 32, 32)
    assert parse_input_size("16") == (16,)
    for bad in ("", "3,-1", "3.5,2", "a"):
        with pytest.raises(ModelSpecError):
            parse_input_size(bad)


def test_default_input_sizes():
    assert _torchvision_input_size("resnet18") == (3, 224, 224)
    assert _torchvision_input_size("inception_v3") == (3, 299, 299)
    assert _torchvision_input_size("efficientnet_b3") == (3, 300, 300)
    assert _torchvision_input_size("r3d_18") == (3, 16, 112, 112)
    assert load_model("timm:resnet10t").input_size == (3, 176, 176)
    assert load_model("timm:test_vit").tracer_kwargs["leaf_modules"]


@pytest.mark.parametrize("name", ["fasterrcnn_mobilenet_v3_large_320_fpn", "lraspp_mobilenet_v3_large"])
def test_detection_and_segmentation_build_offline(name, monkeypatch):
    # Their builders load ImageNet backbone weights unless told weights_backbone=None.
    def no_download(*args, **kwargs):
        raise AssertionError(f"tried to download {args[:1]}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    loaded = load_model(f"torchvision:{name}")
    assert sum(p.numel() for p in loaded.model.parameters()) > 0


# ---------------------------------------------------------------------------------------------
# Help, and a real process


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    return env


def test_help_shows_defaults_and_examples():
    top = run("--help").stdout
    assert "fxtract nodes torchvision:resnet18" in top and "describe" in top
    for command in ("nodes", "describe"):
        text = run(command, "--help").stdout
        assert "Example:" in text and f"fxtract {command} torchvision:resnet18" in text
        assert "[default: eval]" in text and "3,224,224" in text and "--weights" in text
        assert "--strategy [auto|fx|export|hooks]" in text and "[default: auto]" in text
    assert run("--version").stdout.strip() == f"fxtract, version {fxtract.__version__}"


def test_help_does_not_import_torch():
    code = textwrap.dedent(
        """
        import sys
        from fxtract._cli import main
        for args in (["--help"], ["nodes", "--help"], ["describe", "--help"]):
            try:
                main(args, prog_name="fxtract")
            except SystemExit as e:
                assert e.code == 0, e.code
        print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    timed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fxtract", "nodes", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert timed.returncode == 0 and "Usage: fxtract nodes" in timed.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in timed.stderr.splitlines()]
    assert "click" in imported and not any(m.split(".")[0] == "torch" for m in imported)


def test_real_process_json():
    out = subprocess.run(
        [sys.executable, "-m", "fxtract", "nodes", "torchvision:resnet18", "--json"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    names = [d["name"] for d in json.loads(out.stdout)]
    assert names[0] == "x" and names[-1] == "fc" and len(names) == len(set(names))
    assert "fxtract: loading torchvision:resnet18" in out.stderr


def test_real_process_error_is_one_line():
    out = subprocess.run(
        [sys.executable, "-m", "fxtract", "describe", "torchvision:resnet18", "--nodes", "nope*"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert out.returncode == 1 and out.stdout == ""
    assert [line for line in out.stderr.splitlines() if not line.startswith("fxtract: ")] == [
        "Error: pattern 'nope*' matches no node name. List the names with fxtract.get_graph_node_names(model) "
        "or `fxtract nodes MODEL`."
    ]
