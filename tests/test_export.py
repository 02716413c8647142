"""The "export" strategy: names, module-call outputs, extraction, modes, copies, errors."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torchvision
from torch import nn
from torch.utils import _pytree as pytree

import fxtract
from fxtract import NodeNotFoundError, StrategyError, TraceError
from fxtract._errors import FxtractValueError
from fxtract._export import (
    ExportFeatureExtractor,
    create_export_extractor,
    export_module_calls,
    export_node_names,
    trace_export,
)

from .models_export import (
    REPEATS_CALLS,
    REPEATS_NODES,
    BatchNormNet,
    InPlace,
    NoGrad,
    Point,
    Repeats,
    ReturnsObject,
    Structured,
    TinyDino,
    TupleModel,
    tiny_bert,
)
from .oracle import assert_same, module_outputs


def hook_outputs(model: nn.Module, *args, **kwargs) -> dict[str, list[torch.Tensor]]:
    """Oracle: every module call's returned tensors (cloned when returned), by call name."""
    out: dict[str, list[torch.Tensor]] = {}
    counts: dict[str, int] = {}

    def hook(path):
        def fn(module, inputs, output):
            k = counts.get(path, 0)
            counts[path] = k + 1
            tensors = [t.clone() for t in pytree.tree_leaves(output) if isinstance(t, torch.Tensor)]
            out[path if k == 0 else f"{path}_{k}"] = tensors

        return fn

    handles = [m.register_forward_hook(hook(p)) for p, m in model.named_modules() if p]
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return out


def assert_matches(got, want: list[torch.Tensor], atol: float = 1e-5) -> None:
    got = list(got) if isinstance(got, tuple) else [got]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, atol=atol, rtol=1e-5)


def extract_all_calls(model, inputs, mode, traces):
    """Every call of ``mode`` through one extractor, and the hook oracle for the same inputs."""
    calls = traces[mode].call_names
    nodes = {c: c for c in calls}
    extractor = create_export_extractor(model, nodes, nodes, inputs, traces=traces).train(mode == "train")
    args, kwargs = fxtract._inputs.normalize_inputs(inputs)
    with torch.no_grad():
        got = extractor(*args, **kwargs)
    return calls, got, hook_outputs(model, *args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Names


def test_repeats_names_and_calls():
    model = Repeats()
    x = torch.randn(2, 4)
    train, eval_ = export_node_names(model, x)
    assert train == eval_ == REPEATS_NODES
    assert export_module_calls(model, x) == (REPEATS_CALLS, REPEATS_CALLS)


def test_repeats_call_values_match_hooks():
    model = Repeats().eval()
    x = torch.randn(2, 4)
    traces = trace_export(model, x)
    calls, got, want = extract_all_calls(model, x, "eval", traces)
    assert sorted(calls) == sorted(want)
    for name in calls:
        assert_matches(got[name], want[name])
    # the second call of the container differs from the first
    assert not torch.equal(got["block"], got["block_1"])


def test_names_equal_fx_names_on_traceable_models():
    model = Repeats()
    assert export_node_names(model, torch.randn(2, 4)) == fxtract.get_graph_node_names(model)


def test_tuple_return_and_identity():
    model = TupleModel().eval()
    x = torch.randn(3, 4)
    traces = trace_export(model, x)
    assert traces["eval"].node_names == [
        "x",
        "proj",
        "pair.sub",
        "pair.mul",
        "skip",
        "add",
    ]  # skip: nn.Identity
    assert traces["eval"].call_names == ["proj", "pair", "skip"]
    calls, got, want = extract_all_calls(model, x, "eval", traces)
    # `pair` returns (a, b) in return order although b is computed first
    assert isinstance(got["pair"], tuple) and len(got["pair"]) == 2
    torch.testing.assert_close(got["pair"][0], model.proj(x) * 2)
    torch.testing.assert_close(got["pair"][1], model.proj(x) - 1)
    # nn.Identity computes nothing, yet resolves to the input it returned
    torch.testing.assert_close(got["skip"], got["pair"][0])
    for name in calls:
        assert_matches(got[name], want[name])


@pytest.mark.parametrize("roundtrip", [None, copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))])
def test_module_calls_return_their_own_structure(roundtrip):
    # A call returns what the module returned: (tensor, None), a dict with an int, a namedtuple.
    model = Structured().eval()
    x = torch.randn(3, 4)
    ex = fxtract.create_feature_extractor(model, ["a", "b", "c"], strategy="export", example_inputs=x)
    ex = roundtrip(ex) if roundtrip else ex
    out = ex(x)
    oracle = module_outputs(model, x)
    assert out["a"][1] is None and type(out["a"]) is tuple and len(out["a"]) == 2
    assert set(out["b"]) == {"h", "size"} and out["b"]["size"] == 4
    assert type(out["c"]) is Point
    for name in ("a", "b", "c"):
        assert_same(oracle[name], out[name], name)
    # the batch dim stays dynamic with structured outputs
    assert ex(torch.randn(5, 4))["c"].p.shape == (5, 4)


def test_objects_export_cannot_return_become_none():
    # The model's own output holds one too: export would refuse it, fxtract drops it.
    model = ReturnsObject().eval()
    x = torch.randn(3, 4)
    ex = fxtract.create_feature_extractor(model, ["block", "lin"], strategy="export", example_inputs=x)
    out = ex(x)
    assert out["block"]["cache"] is None
    torch.testing.assert_close(out["block"]["h"], x + 1)
    torch.testing.assert_close(out["lin"], model(x)[0])


# ---------------------------------------------------------------------------------------------
# In-place safety and pruning


def test_values_overwritten_in_place_later_are_kept():
    model = InPlace().eval()
    x = torch.randn(2, 4)
    nodes = {"lin": "lin", "view": "view", "act": "act", "add": "out"}
    out = create_export_extractor(model, nodes, nodes, x)(x)
    want = hook_outputs(model, x)
    lin = model.lin(x)
    torch.testing.assert_close(out["lin"], want["lin"][0])
    assert (out["lin"] < 0).any()  # not relu'ed by act(inplace=True)
    torch.testing.assert_close(out["view"], lin.reshape(-1))
    torch.testing.assert_close(out["act"], torch.relu(lin))  # not +1'ed by `y += 1`
    torch.testing.assert_close(out["out"], torch.relu(lin) + 1)


def test_pruned_graph_and_shared_parameters():
    model = BatchNormNet().eval()
    extractor = create_export_extractor(model, {"bn": "f"}, {"conv": "f"}, torch.randn(2, 3, 8, 8))
    targets = {str(n.target) for n in extractor.eval_graph.nodes if n.op == "call_function"}
    assert targets == {"aten.conv2d.default"}
    assert not any("head" in str(n.target) for n in extractor.train_graph.nodes)
    assert extractor.conv.weight is model.conv.weight
    assert set(extractor.state_dict()) <= set(model.state_dict())


# ---------------------------------------------------------------------------------------------
# Models FX cannot trace


@pytest.fixture(scope="module")
def dino():
    torch.manual_seed(0)
    model = TinyDino().eval()
    x = torch.randn(2, 3, 32, 32)  # not the 16x16 of pos_embed: the interpolating branch
    return model, x, trace_export(model, x)


def test_dino_fx_fails_export_works(dino):
    model, x, traces = dino
    with pytest.raises(Exception, match="symbolically traced variables cannot be used"):
        torch.fx.symbolic_trace(model)
    assert "upsample_bicubic2d" in traces["eval"].node_names
    calls, got, want = extract_all_calls(model, x, "eval", traces)
    assert {"blocks.0", "blocks.1", "blocks.0.attn", "blocks.1.mlp.1", "norm"} <= set(calls)
    for name in calls:
        assert_matches(got[name], want[name])


def test_dino_dynamic_batch_static_size(dino):
    model, x, traces = dino
    nodes = {"blocks.1": "last", "add": "pos"}
    extractor = create_export_extractor(model, nodes, nodes, x, traces=traces).eval()
    x3 = torch.randn(3, 3, 32, 32)
    out = extractor(x3)
    assert list(out) == ["last", "pos"]
    assert_matches(out["last"], hook_outputs(model, x3)["blocks.1"])
    with pytest.raises(
        FxtractValueError, match=r"eval-mode graph was exported .* x of shape \(\*, 3, 32, 32\)"
    ):
        extractor(torch.randn(2, 3, 16, 16))


def test_bert_encoder_layers_match_hooks():
    model = tiny_bert()
    ids = torch.randint(0, 100, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    traces = trace_export(model, inputs)
    names = traces["eval"].node_names
    assert names[:2] == ["input_ids", "attention_mask"]
    assert "encoder.layer.1.output.LayerNorm" in names
    nodes = {"embeddings": "emb", "encoder.layer.0": "l0", "encoder.layer.1": "l1"}
    extractor = create_export_extractor(model, nodes, nodes, inputs, traces=traces)
    assert not extractor.training
    # another batch size (dynamic batch) and a pickled copy
    ids3 = torch.randint(0, 100, (3, 8))
    mask3 = torch.ones(3, 8, dtype=torch.long)
    want = hook_outputs(model, input_ids=ids3, attention_mask=mask3)
    for ex in (extractor, pickle.loads(pickle.dumps(extractor))):
        out = ex(input_ids=ids3, attention_mask=mask3)
        assert list(out) == ["emb", "l0", "l1"]
        for name, key in nodes.items():
            assert_matches(out[key], want[name])
    torch.testing.assert_close(
        out["l1"], model(input_ids=ids3, attention_mask=mask3).last_hidden_state, atol=1e-5, rtol=1e-5
    )


# ---------------------------------------------------------------------------------------------
# torchvision


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    return model, x, trace_export(model, x)


def test_resnet18_names_follow_fx(resnet):
    model, _, traces = resnet
    fx_train, fx_eval = fxtract.get_graph_node_names(model)
    assert traces["eval"].node_names == fx_eval
    # Export also shows what runs inside leaves: train-mode batch norm's num_batches_tracked += 1
    extra = [n for n in traces["train"].node_names if n not in fx_train]
    assert extra and all(
        n.endswith("bn1.add") or n.endswith("bn2.add") or ".downsample.1.add" in n for n in extra
    )
    assert [n for n in traces["train"].node_names if n in fx_train] == fx_train


def test_resnet18_every_call_matches_hooks(resnet):
    model, x, traces = resnet
    calls, got, want = extract_all_calls(model, x, "eval", traces)
    assert sorted(calls) == sorted(want)  # every call is addressable (relu_1... included)
    for name in calls:
        assert_matches(got[name], want[name])


def test_resnet18_requested_nodes(resnet):
    model, x, traces = resnet
    nodes = {"layer1": "c2", "layer2.0": "b", "fc": "logits", "bn1": "bn1"}
    extractor = create_export_extractor(model, nodes, nodes, x, traces=traces)
    out = extractor(x)
    assert list(out) == ["c2", "b", "logits", "bn1"]
    want = hook_outputs(model, x)
    for name, key in nodes.items():
        assert_matches(out[key], want[name])
    assert (out["bn1"] < 0).any()  # bn1 is taken before relu(inplace=True) overwrites it
    torch.testing.assert_close(out["logits"], model(x))
    assert extractor(torch.randn(1, 3, 64, 64))["c2"].shape == (1, 64, 16, 16)


# ---------------------------------------------------------------------------------------------
# Modes, copies, the user's model


def test_train_eval_switch_and_batch_norm_stats():
    torch.manual_seed(0)
    model = BatchNormNet().train()
    x = torch.randn(4, 3, 8, 8)
    before = copy.deepcopy(model.state_dict())
    extractor = create_export_extractor(model, {"bn": "feat"}, {"head": "feat", "bn": "bn"}, x)
    assert extractor.training and extractor.strategy == "export"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # export moved nothing

    reference = copy.deepcopy(model)
    out = extractor(x)
    assert list(out) == ["feat"]
    torch.testing.assert_close(out["feat"], reference.bn(reference.conv(x)))
    # the modules that ran updated their statistics as in the model; bn_head did not run
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[key])
    assert model.bn.num_batches_tracked.item() == 1
    assert model.bn_head.num_batches_tracked.item() == 0

    extractor.eval()
    model.eval()
    out = extractor(x)
    assert list(out) == ["feat", "bn"]
    torch.testing.assert_close(out["feat"], model.head(model.bn(model.conv(x)).mean((2, 3))))
    extractor.train()
    assert list(extractor(x)) == ["feat"]


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_keep_both_graphs_mode_and_flag(how):
    torch.manual_seed(0)
    model = BatchNormNet().eval()
    x = torch.randn(2, 3, 8, 8)
    extractor = create_export_extractor(model, {"conv": "a"}, {"head": "b"}, x)
    extractor.feature_info = [{"name": "head"}]  # attributes set on the extractor survive
    clone = copy.deepcopy(extractor) if how == "deepcopy" else pickle.loads(pickle.dumps(extractor))
    assert isinstance(clone, ExportFeatureExtractor)
    assert clone.strategy == "export" and not clone.training
    assert clone.feature_info == [{"name": "head"}]
    torch.testing.assert_close(clone(x)["b"], extractor(x)["b"])
    assert clone.conv.weight is not model.conv.weight
    clone.train()
    torch.testing.assert_close(clone(x)["a"], model.conv(x))


def test_model_left_unchanged():
    model = BatchNormNet().eval()
    model.bn.train()  # mixed flags must survive
    handle = model.conv.register_forward_hook(lambda *a: None)
    state = copy.deepcopy(model.state_dict())
    params = list(model.parameters())
    trace_export(model, torch.randn(2, 3, 8, 8))
    assert [m.training for m in model.modules()] == [False, False, True, False, False]
    assert list(model.conv._forward_hooks) == [handle.id]
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(a is b for a, b in zip(params, model.parameters()))
    assert not nn.modules.module._global_forward_hooks  # our recording hooks are gone


def test_no_grad_block_has_a_subgraph_per_mode():
    model = NoGrad()
    x = torch.randn(8, 4)
    assert export_node_names(model, x)[1] == ["x", "wrap_with_set_grad_enabled", "getitem", "add", "out"]
    extractor = create_export_extractor(model, {"add": "h"}, {"out": "o"}, x)
    assert set(extractor.state_dict()) == set(model.state_dict())  # export's constants are not in it
    torch.manual_seed(1)
    got = extractor.train()(x)["h"]
    torch.manual_seed(1)
    with torch.no_grad():
        want = model.drop(model.lin(x)) * 2 + x
    torch.testing.assert_close(got, want)  # the train subgraph drops out
    model.eval()
    out = extractor.eval()(x)["o"]
    torch.testing.assert_close(out, model(x))
    out.sum().backward()  # no_grad still holds: no gradient reaches lin
    assert model.lin.weight.grad is None and model.out.weight.grad is not None
    clone = pickle.loads(pickle.dumps(extractor))
    torch.testing.assert_close(clone(x)["o"], model(x))


# ---------------------------------------------------------------------------------------------
# Errors and options


def test_unknown_name():
    model = Repeats()
    with pytest.raises(
        NodeNotFoundError, match=r"'blok' is not in the train-mode graph.*Did you mean 'block'"
    ):
        create_export_extractor(model, {"blok": "x"}, {"block": "x"}, torch.randn(2, 4))


def test_missing_example_inputs():
    with pytest.raises(StrategyError, match=r"strategy='export' needs example_inputs="):
        create_export_extractor(Repeats(), {"act": "x"}, {"act": "x"}, None)


class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # a branch on values, not shapes: export cannot resolve it
            return x + 1
        return x - 1


def test_export_failure():
    with pytest.raises(
        TraceError, match=r"torch.export could not export DataDependent in train mode"
    ) as info:
        export_node_names(DataDependent(), torch.randn(2, 4))
    assert info.value.cause is info.value.__cause__


def test_static_batch():
    model = Repeats().eval()
    extractor = create_export_extractor(
        model, {"act": "a"}, {"act": "a"}, torch.randn(2, 4), dynamic_batch=False
    )
    with pytest.raises(FxtractValueError, match=r"x of shape \(2, 4\), got \(3, 4\)"):
        extractor(torch.randn(3, 4))


def test_glob_return_nodes_with_export():
    """``["*.1"]`` raised NodeNotFoundError with strategy export."""
    model = nn.Sequential(
        nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    )
    x = torch.randn(2, 4)
    ex = fxtract.create_feature_extractor(model, ["*.1"], strategy="export", example_inputs=x).eval()
    assert ex.eval_return_nodes == {"0.1": "0.1", "1.1": "1.1"}
    want = module_outputs(model, x)
    got = ex(x)
    for name in ("0.1", "1.1"):
        torch.testing.assert_close(got[name], want[name])


def test_export_extractor_has_the_attributes_of_the_others():
    """ExportFeatureExtractor lacked train_return_nodes, eval_return_nodes and auto_leaves."""
    model, x = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), torch.randn(2, 4)
    ex = fxtract.create_feature_extractor(
        model, train_return_nodes=["1"], eval_return_nodes={"2": "out"}, strategy="export", example_inputs=x
    )
    assert (ex.strategy, ex.train_return_nodes, ex.eval_return_nodes, ex.auto_leaves) == (
        "export",
        {"1": "1"},
        {"2": "out"},
        {},
    )
    assert [(f["name"], f["key"]) for f in ex.feature_info] == [("2", "out")]
    again = pickle.loads(pickle.dumps(ex))
    assert (again.train_return_nodes, again.eval_return_nodes, again.auto_leaves) == (
        {"1": "1"},
        {"2": "out"},
        {},
    )
