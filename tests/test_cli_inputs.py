"""The CLI's inputs: --input, --inputs, --model-arg, hf-config: models, and nodes --compute."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from fxtract._cli._inputs import (
    InputSpec,
    InputSpecError,
    meta_inputs,
    parse_dtype,
    parse_input_spec,
    parse_model_arg,
    real_zeros,
)

from .test_cli import assert_one_line_error, run

ROOT = Path(__file__).resolve().parent.parent
TINY_BERT = ROOT / "examples" / "tiny_bert" / "config.json"

MODELS = """
import torch
from torch import nn


class TwoInputs(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.embed = nn.Embedding(10, width)
        self.proj = nn.Linear(width, 2)

    def forward(self, ids, scale=1.0):
        return self.proj(self.embed(ids) * scale)


class Sizes(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        n = x.size(0)
        torch._assert(x.dim() == 2, "2-D input")
        y = self.lin(x)
        return y.reshape(n, -1) + 1


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x):
        y = self.lin(x)
        return y + 1 if y.sum() > 0 else y - 1
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "inputs_models.py"
    path.write_text(textwrap.dedent(MODELS))
    return path


# ---------------------------------------------------------------------------------------------
# Parsing


def test_parse_input_spec():
    assert parse_input_spec("input_ids=1,16:int64") == InputSpec("input_ids", (1, 16), "int64")
    assert parse_input_spec(" 2x3x8x8 ") == InputSpec(None, (2, 3, 8, 8), "float32")
    assert parse_input_spec("mask=1,16:bool").dtype == "bool"
    assert parse_input_spec("x=1,3:long").dtype == "int64"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("input-ids=1,16", "'input-ids' is not an argument name"),
        ("ids=:int64", "has no shape"),
        ("ids=1,,16", "empty field"),
        ("ids=1,16:int46", "unknown dtype 'int46'. Did you mean 'int64'"),
    ],
)
def test_parse_input_spec_errors(text, message):
    with pytest.raises(InputSpecError, match=message):
        parse_input_spec(text)


def test_parse_model_arg():
    values = [parse_model_arg(t)[1] for t in ("a=64", "a=0.5", "a=True", "a=none", "a=gelu", "a='3'")]
    assert values == [64, 0.5, True, None, "gelu", "3"]
    with pytest.raises(InputSpecError, match="must be KEY=VALUE"):
        parse_model_arg("image_size")
    assert parse_dtype("torch.float16") == "float16"


def test_meta_inputs_and_real_zeros():
    example = meta_inputs([InputSpec(None, (1, 3)), InputSpec("mask", (1, 3), "bool")])
    (x,), kwargs = example
    assert x.is_meta and kwargs["mask"].is_meta and kwargs["mask"].dtype == torch.bool
    assert meta_inputs([InputSpec("a", (2,))])["a"].shape == (2,)
    (zeros,), _ = real_zeros(example, max_bytes=1024)
    assert not zeros.is_meta and zeros.sum() == 0
    assert real_zeros(meta_inputs([InputSpec(None, (1024, 1024))]), max_bytes=1024) is None
    with pytest.raises(InputSpecError, match="positional --input values go before the named ones"):
        meta_inputs([InputSpec("a", (1,)), InputSpec(None, (1,))])


# ---------------------------------------------------------------------------------------------
# --input, --inputs, --model-arg


def test_keyword_and_int_inputs(models):
    result = run(
        "describe", f"{models}:TwoInputs", "--input", "ids=2,5:int64", "--input", "scale=1", "--nodes", "proj"
    )
    assert result.exit_code == 0, result.stderr
    assert "ids [2, 5] int64, scale [1] float32 (meta tensors" in result.stderr
    assert "[2, 5, 2]" in result.stdout


def test_positional_input(models):
    result = run("nodes", f"{models}:TwoInputs", "--input", "2,5:int64", "--shapes", "--filter", "embed")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "embed  [2, 5, 4]"


def test_input_options_are_exclusive(models, tmp_path):
    result = run("nodes", f"{models}:TwoInputs", "--input", "2,5:int64", "--input-size", "5")
    assert_one_line_error(result, "--input-size and --input both give the inputs")
    result = run("nodes", f"{models}:TwoInputs", "--input", "ids=2:int64", "--input", "ids=3:int64")
    assert_one_line_error(result, "--input ids=... is given twice")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_inputs_file(models, tmp_path, suffix):
    path = tmp_path / f"inputs{suffix}"
    ids = torch.randint(0, 10, (3, 7))
    if suffix == ".pt":
        torch.save((ids,), path)
    else:
        save_file({"ids": ids}, str(path))
    result = run("describe", f"{models}:TwoInputs", "--inputs", str(path), "--nodes", "proj", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)[0]["shapes"] == [[3, 7, 2]]
    assert f"(from {path})" in result.stderr


def test_inputs_file_errors(models, tmp_path):
    assert_one_line_error(
        run("nodes", f"{models}:TwoInputs", "--inputs", str(tmp_path / "no.pt")), "no such file"
    )
    empty = tmp_path / "empty.pt"
    torch.save({"a": 1}, empty)
    assert_one_line_error(run("nodes", f"{models}:TwoInputs", "--inputs", str(empty)), "without tensors")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a tensor file")
    assert_one_line_error(run("nodes", f"{models}:TwoInputs", "--inputs", str(junk)), "could not read")


def test_model_args_reach_the_builder(models):
    result = run("nodes", f"{models}:TwoInputs", "--model-arg", "width=6", "--input", "1,3:int64", "--shapes")
    assert result.exit_code == 0, result.stderr
    assert "embed  [1, 3, 6]" in result.stdout
    result = run("nodes", f"{models}:TwoInputs", "--model-arg", "widht=6")
    assert_one_line_error(
        result, "TwoInputs(widht=6) failed", "unexpected keyword argument 'widht'", "--model-arg"
    )
    result = run(
        "nodes", "torchvision:resnet18", "--model-arg", "num_classes=3", "--shapes", "--filter", "fc"
    )
    assert result.stdout.strip() == "fc  [1, 3]"
    assert_one_line_error(
        run("nodes", "torchvision:resnet18", "--model-arg", "a=1", "--model-arg", "a=2"), "twice"
    )


def test_model_arg_image_size_sets_the_input():
    result = run(
        "nodes", "torchvision:vit_b_16", "--model-arg", "image_size=32", "--shapes", "--filter", "encoder"
    )
    assert result.exit_code == 0, result.stderr
    assert "inputs [1, 3, 32, 32]" in result.stderr and result.stdout.split(None, 1) == [
        "encoder",
        "[1, 5, 768]\n",
    ]


def test_values_needed_runs_on_small_zeros_only(models):
    result = run("nodes", f"{models}:Branchy", "--strategy", "hooks", "--shapes", "--input-size", "8")
    assert result.exit_code == 0, result.stderr
    assert "runs on zeros of these shapes" in result.stderr
    result = run("nodes", f"{models}:Branchy", "--strategy", "hooks", "--input", "4096,4096,8")
    assert_one_line_error(result, "over 64 MiB", "--inputs FILE")


# ---------------------------------------------------------------------------------------------
# hf-config:


def test_hf_config_model():
    result = run("describe", f"hf-config:{TINY_BERT}", "--nodes", r"re:encoder\.layer\.\d+", "--json")
    assert result.exit_code == 0, result.stderr
    assert "input_ids [1, 16] int64" in result.stderr
    infos = json.loads(result.stdout)
    assert [i["name"] for i in infos] == ["encoder.layer.0", "encoder.layer.1"]
    assert infos[0]["shapes"] == [[1, 16, 64]]


def test_hf_config_folder_and_overrides():
    result = run(
        "nodes",
        f"hf-config:{TINY_BERT.parent}",
        "--model-arg",
        "num_hidden_layers=1",
        "--filter",
        r"re:encoder\.layer\.\d+",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == ["encoder.layer.0"]


def test_hf_config_errors(tmp_path):
    assert_one_line_error(run("nodes", f"hf-config:{tmp_path}/none.json"), "no such file or folder")
    assert_one_line_error(run("nodes", f"hf-config:{tmp_path}"), "has no config.json")
    bad = tmp_path / "config.json"
    bad.write_text('{"model_type": "not_a_model_type"}')
    assert_one_line_error(run("nodes", f"hf-config:{bad}"), "could not read the Hugging Face config")


# ---------------------------------------------------------------------------------------------
# nodes --compute


def test_compute_hides_bookkeeping(models):
    every = run("nodes", f"{models}:Sizes", "--input-size", "4")
    compute = run("nodes", f"{models}:Sizes", "--input-size", "4", "--compute")
    assert every.exit_code == compute.exit_code == 0, compute.stderr
    assert every.stdout.split() == ["x", "size", "dim", "eq", "_assert", "lin", "reshape", "add"]
    assert compute.stdout.split() == ["x", "lin", "reshape", "add"]
    assert "--compute hides 4 bookkeeping nodes" in compute.stderr
    assert_one_line_error(run("nodes", f"{models}:Sizes", "--compute", "--tree"), "--compute lists nodes")


def test_compute_on_vit():
    every = run("nodes", "torchvision:vit_b_16").stdout.split()
    compute = run("nodes", "torchvision:vit_b_16", "--compute").stdout.split()
    assert len(compute) < len(every) // 2 + 10
    assert not any(
        n.rpartition(".")[2].startswith(("getattr", "getitem", "_assert", "eq", "dim")) for n in compute
    )
    assert {"conv_proj", "encoder.layers.encoder_layer_0.self_attention", "heads.head"} <= set(compute)
