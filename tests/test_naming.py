import re
import subprocess
import sys
import warnings

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import feature_extraction as tvfe

import fxtract
from fxtract import LeafModuleAwareTracer, NodePathTracer, TraceError, get_graph_node_names

from . import models as M
from .zoo import CLASSIFICATION_CI, build, classification_all, video_all


def names(model, **kw):
    kw.setdefault("suppress_diff_warning", True)
    return get_graph_node_names(model, **kw)[1]


def test_import_does_not_import_torch():
    code = "import sys, fxtract; assert 'torch' not in sys.modules, 'torch imported'; print(fxtract.__all__)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_public_api_is_torchvision_shaped():
    assert fxtract.NodePathTracer is NodePathTracer
    assert callable(fxtract._is_subseq) and callable(fxtract._warn_graph_differences)
    assert issubclass(NodePathTracer, LeafModuleAwareTracer)
    assert issubclass(NodePathTracer, torch.fx.Tracer)


def test_repeats_match_torchvision_fixture():
    assert names(M.RepeatModel()) == M.REPEAT_MODEL_NODES
    assert names(M.RepeatModel(), naming="torchvision") == M.REPEAT_MODEL_NODES


def test_node_to_qualname_in_execution_order():
    tracer = NodePathTracer()
    graph = tracer.trace(M.RepeatModel())
    named = [n for n in graph.nodes if n in tracer.node_to_qualname]
    assert list(tracer.node_to_qualname) == named


def test_suffixed_module_names_are_exact():
    assert names(M.SuffixedNames()) == ["x", "ln_1", "ln_2"]
    # torchvision strips the suffix: asking it for "ln_1" means ln_2.
    assert names(M.SuffixedNames(), naming="torchvision") == ["x", "ln", "ln_1"]
    assert tvfe.get_graph_node_names(M.SuffixedNames())[1] == ["x", "ln", "ln_1"]


def test_module_path_wins_over_repeat_suffix():
    got = names(M.Collide())
    assert got == ["x", "relu", "relu_2", "relu_1"]
    assert len(set(got)) == len(got)


def test_regex_characters_in_module_names():
    got = names(M.RegexNames())
    assert got == ["x", "blocks.conv(a)", "blocks.conv(a)_1", "blocks.conv+b"]


def test_module_called_from_two_parents():
    got = names(M.SharedCall())
    assert got == [
        "x",
        "block.fc",
        "block.relu",
        "block.mul",
        "block.fc_1",
        "block.fc_2",
        "block.relu_1",
        "block.mul_1",
    ]
    assert got == tvfe.get_graph_node_names(M.SharedCall())[1]


@pytest.mark.parametrize(
    "leaf",
    [M.TupleBlock, "pair", "p*r", "instance"],
    ids=["class", "path", "glob", "instance"],
)
def test_leaf_modules_by_class_instance_pattern(leaf):
    model = M.Containers()
    if leaf == "instance":
        leaf = model.pair
    got = names(model, tracer_kwargs={"leaf_modules": [leaf]})
    assert got[:4] == ["x", "pair", "getitem", "getitem_1"]
    assert "pair.a" not in got


def test_leaf_pattern_typo_is_an_error():
    with pytest.raises(ValueError, match=r"matches no submodule.*Did you mean 'pair'"):
        names(M.Containers(), tracer_kwargs={"leaf_modules": ["pairr"]})


def test_leaf_entry_of_wrong_type():
    with pytest.raises(TypeError, match="leaf_modules entries must be"):
        names(M.Containers(), tracer_kwargs={"leaf_modules": [3]})


def int_of(x):  # FX autowraps only names without a leading underscore
    return int(x)


class _UsesInt(nn.Module):
    def forward(self, x):
        int_of(x.shape[0])
        return x + 1


def test_autowrap_functions_and_tuple_kwargs_not_mutated():
    kwargs = {"autowrap_functions": (int_of,), "leaf_modules": (nn.ReLU,)}
    before = dict(kwargs)
    got = names(_UsesInt(), tracer_kwargs=kwargs)
    assert got == ["x", "getattr", "getitem", "int_of", "add"]
    assert kwargs == before


def test_torchvision_defaults_apply_to_torchvision_models():
    # Conv2dNormActivation (a torchvision.ops module) is a leaf, as in torchvision.
    got = names(build("mobilenet_v3_small"))
    assert "features.0" in got and "features.0.0" not in got


def test_train_eval_difference_warns_with_torchvision_messages():
    with pytest.warns(UserWarning, match="train mode are different to those obtained in eval mode"):
        train, eval_ = get_graph_node_names(M.TrainEval())
    assert "add" in train and "mul" in eval_


def test_train_returning_none_and_flags_restored():
    model = M.NoneTrain()
    model.eval()
    model.bn.train()
    get_graph_node_names(model, suppress_diff_warning=True)
    assert not model.training and model.bn.training and not model.fc.training


def test_trace_error_names_module_and_remedies():
    with pytest.raises(
        TraceError, match=r"(?s)module 'inner.0' \(IntShape\).*leaf_modules.*autowrap_functions"
    ):
        get_graph_node_names(M.DeepInt(), strategy="fx")
    assert issubclass(TraceError, RuntimeError)


def test_is_subseq_semantics():
    assert fxtract._is_subseq([1, 2, 3, 4], [1, 3])
    assert not fxtract._is_subseq([1, 2, 3], [3, 1])


@pytest.mark.parametrize("name", CLASSIFICATION_CI)
def test_torchvision_naming_parity_ci(name):
    _check_parity(build(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", classification_all())
def test_torchvision_naming_parity_all(name):
    _check_parity(build(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", video_all())
def test_torchvision_naming_parity_video(name):
    try:
        model = torchvision.models.get_model(name, weights=None)
        expected = tvfe.get_graph_node_names(model, suppress_diff_warning=True)
    except Exception:
        pytest.skip("torchvision itself cannot trace this video model")
    assert get_graph_node_names(model, suppress_diff_warning=True, naming="torchvision") == expected


@pytest.mark.parametrize(
    "factory",
    [
        lambda: torchvision.models.detection.backbone_utils.resnet_fpn_backbone(
            backbone_name="resnet18", weights=None
        ),
        lambda: torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None).backbone,
        lambda: (
            torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
                weights=None, weights_backbone=None
            ).backbone
        ),
    ],
    ids=["resnet_fpn", "fcn_backbone", "frcnn_mobilenet_backbone"],
)
def test_torchvision_naming_parity_backbones(factory):
    _check_parity(factory())


_DOCUMENTED_SUFFIX = re.compile(r"_[0-9]+$")


def _check_parity(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = tvfe.get_graph_node_names(model)
        assert get_graph_node_names(model, naming="torchvision") == expected
        ours = get_graph_node_names(model)
    # Default naming differs only by the documented rule: leaf modules keep their exact
    # names when those end in _<int>.
    paths = {n for n, _ in model.named_modules()}
    for mine, theirs in zip(ours, expected):
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs):
            if a != b:
                assert a in paths and _DOCUMENTED_SUFFIX.search(a), (a, b)


def test_argument_errors_are_importable_from_fxtract():
    assert {"FxtractTypeError", "FxtractValueError"} <= set(fxtract.__all__)
    assert issubclass(fxtract.FxtractTypeError, (fxtract.FxtractError, TypeError))
    assert issubclass(fxtract.FxtractValueError, (fxtract.FxtractError, ValueError))


@pytest.mark.parametrize(
    "call",
    [
        lambda m: fxtract.get_graph_node_names(m),
        lambda m: fxtract.create_feature_extractor(m, ["x"]),
        lambda m: fxtract.create_feature_extractor(m, ["x"], strategy="hooks"),
        lambda m: fxtract.describe(m),
        lambda m: fxtract.feature_info(m, ["x"], torch.zeros(1)),
    ],
)
def test_every_public_call_rejects_a_non_module_with_one_type_error(call):
    with pytest.raises(fxtract.FxtractTypeError, match=r"model must be a torch\.nn\.Module, got function"):
        call(lambda x: x)
