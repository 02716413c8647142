"""Issue 12's list of hostile calls, one test each: every one gets an FxtractError (or a warning).

Each error subclasses the builtin callers catch and says what was wrong, what exists
and what to do; in the CLI, it is one ``Error:`` line in the CLI's terms.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import fxtract
from fxtract import (
    FxtractError,
    NodeNotFoundError,
    NodePathTracer,
    create_feature_extractor,
    describe,
    feature_info,
    get_graph_node_names,
    select_nodes,
)
from fxtract._errors import ForwardError, NotScriptableError, suggest

from .test_cli import assert_one_line_error, run


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act1 = nn.ReLU()

    def forward(self, x):
        return self.act1(self.conv(x))


class Fails(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        raise RuntimeError("this forward always fails")


X = torch.randn(1, 3, 8, 8)
NAMES = ["x", "conv", "act1"]


def raises(base: type, match: str):
    """``pytest.raises`` for an FxtractError that is also ``base``."""

    class Check:
        def __enter__(self):
            self.ctx = pytest.raises(base, match=match)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.ctx.__exit__(*exc)
            assert isinstance(self.info.value, FxtractError), type(self.info.value)
            return handled

    return Check()


# ---------------------------------------------------------------------------------------------
# Suggestions: by how names end, and by module class


def test_glob_suggests_modules_of_the_class_the_pattern_names():
    names = ["x", "conv1", "layer1.0.conv1", "layer1.0.act1", "layer1.0.act2", "layer4.1.act1", "fc"]
    types = {"conv1": nn.Conv2d, "layer1.0.conv1": nn.Conv2d, "fc": nn.Linear}
    types.update({n: nn.ReLU for n in names if ".act" in n})
    with raises(ValueError, match=r"ReLU modules there are 'layer1.0.act1'.*pattern like 'layer\*\.act\*'"):
        select_nodes("layer*.relu*", names, name_types=types)


def test_suggestions_rank_names_that_end_like_the_name():
    names = ["layer4.1", "layer4.1.conv1", "layer1.0.relu", "layer2.0.relu", "fc"]
    assert set(suggest("layer9.0.relu", names, n=2)) == {"layer1.0.relu", "layer2.0.relu"}
    # a name's leading path counts too: the same block's other layers before another block's
    assert suggest("layer4.1.conv9", names, n=1) == ["layer4.1.conv1"]


def test_glob_suggests_names_whose_last_part_is_close():
    names = ["layer1.0.relu", "layer1.0.relu_1", "layer1.1.relu", "layer4.1"]
    with raises(ValueError, match=r"Did you mean 'layer1.0.relu', 'layer1.0.relu_1'"):
        select_nodes("layer*.rleu*", names)


# ---------------------------------------------------------------------------------------------
# --input-size: never a real allocation, always validated


def test_cli_huge_input_size_allocates_nothing():
    result = run("describe", "torchvision:resnet18", "--input-size", "3,100000,100000", "--nodes", "fc")
    assert result.exit_code == 0, result.stderr
    assert "[1, 1000]" in result.stdout and "nothing allocated" in result.stderr


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("99999999999999999999,1,1", "too large (at most 2147483647"),
        ("3,,64", "has an empty field (number 2)"),
        ("3,0,64", "has a size 0"),
        ("", "is empty"),
        ("3,-1,4", "'-1' is not a positive integer"),
        ("2000000000,2000000000,2000000000", "a tensor holds at most 2**62"),
    ],
)
def test_cli_bad_input_size(size, message):
    result = run("nodes", "torchvision:resnet18", "--shapes", "--input-size", size)
    assert_one_line_error(result, "--input-size", message)


def test_cli_model_built_for_another_size_says_model_arg():
    result = run("describe", "torchvision:vit_b_16", "--input-size", "3,64,64", "--nodes", "encoder")
    assert_one_line_error(result, "Wrong image height! Expected 224", "--model-arg image_size=N")
    assert "Proxy(" not in result.stderr


# ---------------------------------------------------------------------------------------------
# return_nodes: keys kept, names are strings


def test_output_keys_are_kept_as_given():
    out = create_feature_extractor(Net(), {"conv": 5, "act1": ("act", 1)})(X)
    assert list(out) == [5, ("act", 1)]


def test_output_key_that_cannot_be_kept():
    with raises(TypeError, match=r"maps 'conv' to the output key <object .*a string, an int or a tuple"):
        create_feature_extractor(Net(), {"conv": object()})


@pytest.mark.parametrize("name", [None, 1])
def test_node_names_must_be_strings(name):
    with raises(TypeError, match=rf"return_nodes holds {name} \(\w+\); node names are strings"):
        create_feature_extractor(Net(), [name])


# ---------------------------------------------------------------------------------------------
# Wrong types


def test_tracer_given_a_model_name():
    with raises(
        TypeError, match=r"takes an nn.Module or a function, got str 'resnet18'.*get_model\('resnet18'"
    ):
        NodePathTracer().trace("resnet18")


def test_tracer_given_a_class():
    with raises(TypeError, match=r"got type; pass an instance"):
        NodePathTracer().trace(Net)


def test_describe_nodes_not_patterns():
    with raises(TypeError, match="nodes must be a string or an iterable of strings, got int"):
        describe(Net(), X, nodes=5)


def test_describe_exclude_not_patterns():
    with raises(TypeError, match="exclude must be a string or an iterable of strings, got int"):
        describe(Net(), X, exclude=5)


def test_feature_info_names_not_patterns():
    with raises(TypeError, match="names must be a string or an iterable of strings, got int"):
        feature_info(Net(), 5, X)


def test_select_nodes_types_not_classes():
    with raises(
        TypeError, match=r"types must be a module class or a list of them \(types=\[nn.Conv2d\]\), got int"
    ):
        select_nodes(None, NAMES, types=5)


def test_select_nodes_patterns_not_strings():
    with raises(TypeError, match=r"patterns must contain strings, got 5 \(int\)"):
        select_nodes([5], NAMES)


def test_return_nodes_not_a_list():
    with raises(TypeError, match="return_nodes must be a list of node names or a dict"):
        create_feature_extractor(Net(), 5)


@pytest.mark.parametrize(
    ("tracer_kwargs", "message"),
    [
        (
            {"leaf_modulez": []},
            r"tracer_kwargs has 'leaf_modulez', which NodePathTracer does not take. Did you mean",
        ),
        ({"autowrap_functions": 5}, r"'autowrap_functions'\] entries must be functions; got 5"),
        ({"autowrap_modules": [5]}, r"'autowrap_modules'\] entries must be Python modules"),
    ],
)
def test_tracer_kwargs(tracer_kwargs, message):
    with raises(TypeError, match=message):
        create_feature_extractor(Net(), ["conv"], tracer_kwargs=tracer_kwargs)


def test_leaf_module_aware_tracer_leaf_modules_not_a_list():
    with raises(TypeError, match=r"tracer_kwargs\['leaf_modules'\] must be a list, got int 5"):
        fxtract.LeafModuleAwareTracer(leaf_modules=5)


def test_select_nodes_name_types_not_a_dict():
    with raises(TypeError, match=r"name_types must be a dict \{name: module class\}, got int"):
        select_nodes(None, NAMES, types=[nn.Conv2d], name_types=5)


# ---------------------------------------------------------------------------------------------
# Inputs the model's forward rejects


def test_hooks_with_wrong_shaped_example_inputs():
    with raises(ValueError, match=r"module call 'conv' \(Conv2d\): RuntimeError: .*3 channels"):
        create_feature_extractor(Net(), ["conv"], strategy="hooks", example_inputs=torch.randn(1, 5, 8, 8))


def test_hooks_names_with_wrong_shaped_example_inputs():
    with raises(RuntimeError, match=r"strategy='hooks': the forward of Net failed on example_inputs"):
        get_graph_node_names(Net(), strategy="hooks", example_inputs=torch.randn(1, 5, 8, 8))
    assert issubclass(ForwardError, RuntimeError)


def test_hooks_with_a_forward_that_raises():
    with raises(ValueError, match=r"cannot infer the shapes of Fails.*this forward always fails"):
        create_feature_extractor(Fails(), ["conv"], strategy="hooks", example_inputs=X)


def test_hooks_names_with_a_forward_that_raises():
    with raises(RuntimeError, match=r"forward of Fails failed on example_inputs: RuntimeError: this forward"):
        get_graph_node_names(Fails(), strategy="hooks", example_inputs=X)


# ---------------------------------------------------------------------------------------------
# Accepted silently before


@pytest.mark.parametrize("strategy", ["auto", "export", "hooks"])
def test_extra_positional_example_inputs(strategy):
    with raises(
        ValueError, match=r"example_inputs has 2 positional inputs, but Net.forward\(x\) takes at most 1"
    ):
        create_feature_extractor(Net(), ["conv"], strategy=strategy, example_inputs=(X, X))


def test_extra_positional_example_inputs_describe():
    with raises(ValueError, match="example_inputs has 2 positional inputs"):
        describe(Net(), (X, X))


def test_unknown_keyword_example_inputs():
    with raises(ValueError, match=r"keyword arguments \['y'\] that forward\(\) does not take.*\['x'\]"):
        describe(Net(), {"x": X, "y": X})


def test_unknown_concrete_args():
    with raises(ValueError, match=r"concrete_args names \['y'\], which forward\(\) does not take.*\['x'\]"):
        create_feature_extractor(Net(), ["conv"], concrete_args={"y": 1})
    with raises(ValueError, match=r"concrete_args names \['y'\]"):
        get_graph_node_names(Net(), concrete_args={"y": 1})


def test_exclude_typo_warns():
    with pytest.warns(UserWarning, match=r"exclude name 'convv' is not a node name.*Did you mean 'conv'"):
        infos = describe(Net(), X, exclude="convv")
    assert [i.name for i in infos] == NAMES
    with pytest.warns(UserWarning, match="excludes nothing"):
        assert select_nodes("*", NAMES, exclude="convv") == NAMES


def test_exclude_existing_name_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert select_nodes("*", NAMES, exclude="conv") == ["x", "act1"]


def test_select_nodes_names_as_a_string():
    with raises(TypeError, match=r"names must be a list of node names .*got str 'abc'"):
        select_nodes(["a*"], "abc")


# ---------------------------------------------------------------------------------------------
# Export extractors called with other inputs


@pytest.fixture(scope="module")
def export_extractor():
    return create_feature_extractor(
        Net(), ["conv"], strategy="export", example_inputs=torch.randn(2, 3, 8, 8)
    )


def test_export_extractor_unknown_keyword(export_extractor):
    with raises(
        TypeError, match=r"takes forward\(x\), the inputs it was exported with; got the keyword argument 'y'"
    ):
        export_extractor(x=X, y=X)


def test_export_extractor_keyword_instead_of_its_input(export_extractor):
    with raises(TypeError, match=r"got the keyword argument 'input'"):
        export_extractor(input=X)


def test_export_extractor_float64(export_extractor):
    with raises(TypeError, match=r"exported .* for x of dtype float32, got float64.*x.to\(torch.float32\)"):
        export_extractor(X.double())


def test_export_extractor_other_batch_and_size(export_extractor):
    assert export_extractor(torch.randn(5, 3, 8, 8))["conv"].shape == (5, 4, 6, 6)
    with raises(ValueError, match=r"for x of shape \(\*, 3, 8, 8\), got \(5, 3, 9, 9\)"):
        export_extractor(torch.randn(5, 3, 9, 9))


def test_hooks_extractor_unknown_keyword():
    extractor = create_feature_extractor(Net(), ["conv"], strategy="hooks")
    with raises(
        TypeError, match=r"strategy='hooks'\) takes forward\(x\), the inputs of the model's forward; got"
    ):
        extractor(y=X)
    assert extractor(x=X)["conv"].shape == (1, 4, 6, 6)


def test_export_unknown_name_advises_public_calls():
    with raises(ValueError, match=r"fxtract.get_graph_node_names\(model, strategy='export'") as info:
        create_feature_extractor(Net(), ["nope"], strategy="export", example_inputs=X)
    assert "fxtract._export" not in str(info.value)
    assert isinstance(info.value, NodeNotFoundError)


def test_hooks_root_module():
    with raises(
        ValueError, match=r"'' names Net itself; strategy hooks returns the calls of modules inside it"
    ):
        create_feature_extractor(Net(), ["", "conv"], strategy="hooks")


@pytest.mark.parametrize("strategy", ["hooks", "export"])
def test_torchscript_of_hooks_and_export_extractors(strategy):
    extractor = create_feature_extractor(Net(), ["conv"], strategy=strategy, example_inputs=X)
    with raises(
        RuntimeError, match=rf"torch.jit.script cannot compile an extractor of strategy='{strategy}'"
    ):
        torch.jit.script(extractor)
    assert issubclass(NotScriptableError, RuntimeError)


# ---------------------------------------------------------------------------------------------
# The CLI says it in its terms


def test_cli_input_named_wrong():
    result = run("nodes", "torchvision:resnet18", "--input", "y=1,3,32,32", "--shapes")
    assert_one_line_error(result, "the inputs have keyword arguments ['y']", "['x']")


def test_errors_are_public():
    assert fxtract.FxtractError is FxtractError


def test_cli_too_many_inputs():
    result = run("nodes", "torchvision:resnet18", "--input", "1,3,32,32", "--input", "1,3,32,32", "--shapes")
    assert_one_line_error(
        result, "the inputs have 2 positional tensors", "name the extra ones (--input NAME="
    )
