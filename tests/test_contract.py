"""One contract for every strategy: fx, export and hooks agree on the same toy models."""

import warnings

import pytest
import torch

import fxtract
from fxtract import create_feature_extractor, describe, get_graph_node_names

from .models_contract import CONTRACT_MODELS, Stages
from .models_untraceable import SumBranch
from .oracle import assert_same, module_outputs

STRATEGIES = ["fx", "export", "hooks"]
ATTRIBUTES = ("strategy", "train_return_nodes", "eval_return_nodes", "auto_leaves", "feature_info")


def _extract(model, nodes, strategy, x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # export's notes on dynamic shapes
        ex = create_feature_extractor(model, nodes, strategy=strategy, example_inputs=x, **kw).eval()
    with torch.no_grad():
        return ex, ex(x)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", list(CONTRACT_MODELS))
def test_module_outputs_equal_the_eager_forward(name, strategy):
    factory, inputs, calls, _, _ = CONTRACT_MODELS[name]
    torch.manual_seed(0)
    model, x = factory().eval(), inputs()
    want = module_outputs(model, x)
    _, got = _extract(model, calls, strategy, x)
    assert list(got) == calls
    for call in calls:
        assert_same(got[call], want[call], f"{strategy}:{call}")


@pytest.mark.parametrize("strategy", [*STRATEGIES, "auto"])
@pytest.mark.parametrize("name", list(CONTRACT_MODELS))
def test_patterns_expand_the_same_for_every_strategy(name, strategy):
    factory, inputs, _, pattern, matches = CONTRACT_MODELS[name]
    model, x = factory().eval(), inputs()
    want = module_outputs(model, x)
    ex, got = _extract(model, [pattern], strategy, x)
    assert ex.eval_return_nodes == ex.train_return_nodes == {m: m for m in matches}
    assert list(got) == matches
    for m in matches:
        assert_same(got[m], want[m], f"{strategy}:{m}")


def test_patterns_without_example_inputs_for_hooks_match_module_paths():
    ex = create_feature_extractor(Stages(), ["stages.*.fc"], strategy="hooks")
    assert ex.eval_return_nodes == {"stages.0.fc": "stages.0.fc", "stages.1.fc": "stages.1.fc"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_never_called_container_stands_for_its_last_call(strategy):
    model, x = Stages().eval(), torch.randn(3, 4)
    want = module_outputs(model, x)
    _, got = _extract(model, {"stages": "feat"}, strategy, x)
    assert_same(got["feat"], want["stages.1"], strategy)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_extractor_has_the_same_attributes(strategy):
    model, x = Stages().eval(), torch.randn(3, 4)
    ex, _ = _extract(model, {"stages.0": "a", "head": "b"}, strategy, x)
    assert {a: hasattr(ex, a) for a in ATTRIBUTES} == dict.fromkeys(ATTRIBUTES, True)
    assert ex.strategy == strategy
    assert ex.train_return_nodes == ex.eval_return_nodes == {"stages.0": "a", "head": "b"}
    assert ex.auto_leaves == {}
    assert [(f["name"], f["key"], f["num_chs"], f["shape"]) for f in ex.feature_info] == [
        ("stages.0", "a", 4, (3, 4)),
        ("head", "b", 2, (3, 2)),
    ]


@pytest.mark.parametrize("strategy", ["fx", "hooks"])
def test_without_example_inputs_feature_info_is_none(strategy):
    ex = create_feature_extractor(Stages(), ["head"], strategy=strategy)
    assert ex.feature_info is None and ex.strategy == strategy and ex.auto_leaves == {}


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x: create_feature_extractor(m, ["c"], example_inputs=x),
        lambda m, x: describe(m, x),
        lambda m, x: get_graph_node_names(m, example_inputs=x),
    ],
    ids=["create_feature_extractor", "describe", "get_graph_node_names"],
)
def test_every_public_call_warns_when_auto_falls_back(call):
    model, x = SumBranch(), torch.randn(2, 8)
    with pytest.warns(UserWarning, match=r"fxtract used strategy='hooks'; earlier strategies failed: fx: "):
        call(model, x)


def test_the_result_of_auto_says_which_strategy_ran():
    model, x = SumBranch(), torch.randn(2, 8)
    with pytest.warns(UserWarning):
        ex = create_feature_extractor(model, ["b"], example_inputs=x)
        infos = fxtract.describe(model, x, nodes=["b"])
    assert ex.strategy == infos.strategy == "hooks"
