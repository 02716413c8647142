"""select_nodes: exact names, globs, re: regexes, types, exclude, errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fxtract._errors import FxtractTypeError, FxtractValueError, NodeNotFoundError
from fxtract._select import is_pattern, select_nodes

NAMES = [
    "x",
    "conv1",
    "layer1.0.conv1",
    "layer1.0.relu",
    "layer1.0.relu_1",
    "layer1.0",
    "layer1.1.conv1",
    "layer1.1.relu",
    "layer1.1",
    "layer1",
    "fc",
]


class Conv:
    pass


class SpecialConv(Conv):
    pass


class Block:
    pass


TYPES = {
    "conv1": Conv,
    "layer1.0.conv1": SpecialConv,
    "layer1.0.relu": object,
    "layer1.0": Block,
    "layer1.1.conv1": Conv,
    "layer1.1": Block,
    "layer1": list,
}


def test_exact_names_pass_through_in_execution_order():
    assert select_nodes(["fc", "conv1"], NAMES) == ["conv1", "fc"]
    # Not in names: kept (the extractor resolves module prefixes), after the known ones.
    assert select_nodes(["layer9", "fc"], NAMES) == ["fc", "layer9"]


def test_single_string_and_none():
    assert select_nodes("fc", NAMES) == ["fc"]
    assert select_nodes(None, NAMES) == []


def test_glob_matches_whole_names():
    assert select_nodes("layer1.*.relu*", NAMES) == ["layer1.0.relu", "layer1.0.relu_1", "layer1.1.relu"]
    assert select_nodes("layer1.?", NAMES) == ["layer1.0", "layer1.1"]
    assert select_nodes("conv[1]", NAMES) == ["conv1"]
    # * crosses dots (fnmatch over the full name), but the match is anchored.
    assert select_nodes("*conv1", NAMES) == ["conv1", "layer1.0.conv1", "layer1.1.conv1"]
    assert select_nodes("conv", [*NAMES, "conv"]) == ["conv"]


def test_regex_fullmatch():
    assert select_nodes(r"re:layer1\.\d\.relu", NAMES) == ["layer1.0.relu", "layer1.1.relu"]
    # fullmatch, not search: "relu" alone matches nothing
    with pytest.raises(NodeNotFoundError):
        select_nodes("re:relu", NAMES)


def test_deduplicated_in_execution_order():
    got = select_nodes(["fc", "*conv1", "layer1.0.conv1", r"re:.*conv1"], NAMES)
    assert got == ["conv1", "layer1.0.conv1", "layer1.1.conv1", "fc"]


def test_exclude_all_kinds():
    got = select_nodes("layer1*", NAMES, exclude=["layer1", "*relu*", r"re:layer1\.1.*"])
    assert got == ["layer1.0.conv1", "layer1.0"]
    assert select_nodes(["layer9", "fc"], NAMES, exclude="layer9") == ["fc"]


def test_types_select_module_calls_by_subclass():
    got = select_nodes(None, NAMES, types=Conv, name_types=TYPES)
    assert got == ["conv1", "layer1.0.conv1", "layer1.1.conv1"]
    assert select_nodes(None, NAMES, types=[SpecialConv], name_types=TYPES) == ["layer1.0.conv1"]
    # types add to what patterns select; exclude applies to both
    got = select_nodes("fc", NAMES, types=(Block,), name_types=TYPES, exclude="layer1.1")
    assert got == ["layer1.0", "fc"]


def test_types_errors():
    with pytest.raises(FxtractValueError, match="name_types"):
        select_nodes(None, NAMES, types=Conv)
    with pytest.raises(NodeNotFoundError, match="no module call is of type int"):
        select_nodes(None, NAMES, types=int, name_types=TYPES)
    with pytest.raises(FxtractTypeError):
        select_nodes(None, NAMES, types=["Conv"], name_types=TYPES)


def test_no_match_raises_with_suggestions():
    with pytest.raises(NodeNotFoundError) as info:
        select_nodes("layer1.*.reluu", NAMES)
    msg = str(info.value)
    assert "'layer1.*.reluu' matches no node name" in msg
    assert "Did you mean" in msg and "layer1.0.relu" in msg
    assert "fxtract nodes MODEL" in msg and "get_graph_node_names" in msg
    assert isinstance(info.value, ValueError)
    with pytest.raises(NodeNotFoundError, match="exclude pattern"):
        select_nodes("fc", NAMES, exclude="nothing*")
    with pytest.raises(NodeNotFoundError):
        select_nodes("re:nothing.*", NAMES)


def test_strict_rejects_unknown_exact_names():
    with pytest.raises(
        NodeNotFoundError, match=r"'layer1\.0\.conv2' is not in the model's graph.*layer1\.0\.conv1"
    ):
        select_nodes(["fc", "layer1.0.conv2"], NAMES, strict=True)


def test_plain_names_are_never_regexes():
    # Regex metacharacters in a plain name are literal; glob characters only count when the
    # exact name is unknown.
    names = ["a+b", "a.b", "a(1)", "odd[0]", "x"]
    assert select_nodes("a+b", names) == ["a+b"]
    assert select_nodes("a(1)", names) == ["a(1)"]
    assert select_nodes("odd[0]", names) == ["odd[0]"]  # in names: exact
    assert select_nodes("a.b", names) == ["a.b"]
    assert select_nodes("a+", names) == ["a+"]  # unknown plain name: passed through, not matched


def test_bad_inputs():
    with pytest.raises(FxtractValueError, match="bad regular expression"):
        select_nodes("re:(", NAMES)
    with pytest.raises(FxtractTypeError):
        select_nodes([1], NAMES)
    with pytest.raises(FxtractTypeError):
        select_nodes(3, NAMES)


def test_is_pattern():
    assert is_pattern("a*") and is_pattern("a?") and is_pattern("a[0]") and is_pattern("re:a")
    assert not is_pattern("layer1.0.relu") and not is_pattern("a+b")


def test_import_does_not_import_torch():
    code = "import sys, fxtract._select; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
