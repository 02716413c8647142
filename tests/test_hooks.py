"""Strategy "hooks": module-call names and activations from forward hooks on a real forward."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import pickle
import re
from collections import Counter

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from fxtract._errors import FxtractTypeError, NodeNotFoundError, ReturnNodesError, StrategyError
from fxtract._hooks import HookFeatureExtractor, hook_node_names

from .models_hooks import (
    NESTED_NAMES,
    DataDependent,
    InPlaceAfter,
    Nested,
    ShapeToInt,
    Swallow,
    TrainEval,
)
from .oracle import module_outputs


def _ext(model: nn.Module, nodes: dict[str, str]) -> HookFeatureExtractor:
    """An extractor with the same nodes in both modes."""
    return HookFeatureExtractor(model, nodes, nodes)


def _tensors(obj) -> list[torch.Tensor]:
    """The tensors inside a module's output, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if dataclasses.is_dataclass(obj):
        obj = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


def _assert_same(actual, expected) -> None:
    assert type(actual) is type(expected)
    got, want = _tensors(actual), _tensors(expected)
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
        assert torch.equal(a, b)


def _oracle(model: nn.Module, inputs: dict, names: list[str]) -> dict[str, object]:
    """Outputs of the named calls from plain forward hooks that clone, over a full eager forward.

    ``path_k`` is the (k+1)-th call of ``path`` (no module path in these models ends in ``_k``).
    """
    outputs: dict[str, list] = {}
    paths = {
        name: re.sub(r"_[0-9]+$", "", name) if name not in dict(model.named_modules()) else name
        for name in names
    }
    handles = [
        model.get_submodule(path).register_forward_hook(
            lambda m, i, o, path=path: outputs.setdefault(path, []).append(
                type(o)(t.clone() for t in o) if isinstance(o, tuple) else o.clone()
            )
        )
        for path in set(paths.values())
    ]
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for h in handles:
            h.remove()
    index = {name: int(name.rsplit("_", 1)[1]) if name != paths[name] else 0 for name in names}
    return {name: outputs[paths[name]][index[name]] for name in names}


def _no_hooks_left(model: nn.Module) -> bool:
    return not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return resnet18(weights=None).eval()


@pytest.fixture
def image() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------------------------
# Names


def test_names_nested_and_repeated_calls():
    train, eval_ = hook_node_names(Nested(), torch.randn(2, 4))
    assert train == eval_ == NESTED_NAMES


def test_names_reused_module_in_sequential():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(2, 2), relu, relu, nn.Linear(2, 2))
    # `relu` is listed once by named_modules(), as `1`; its second call is `1_1`.
    assert hook_node_names(model, torch.zeros(1, 2)) == (["0", "1", "1_1", "3"], ["0", "1", "1_1", "3"])


def test_names_resnet18_cover_every_module(resnet, image):
    train, eval_ = hook_node_names(resnet, image)
    paths = [p for p, _ in resnet.named_modules() if p]
    assert train == eval_
    assert eval_[:6] == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer1.0"]
    assert len(set(eval_)) == len(eval_)
    assert set(paths) <= set(eval_)
    # The only calls beyond one per module: each BasicBlock's ReLU runs twice.
    assert [n for n in eval_ if n not in paths] == [
        f"layer{i}.{j}.relu_1" for i in range(1, 5) for j in (0, 1)
    ]


def test_names_train_and_eval_differ():
    assert hook_node_names(TrainEval(), torch.ones(2, 4)) == (["fc", "noise", "head"], ["fc", "head"])


def test_names_accept_kwargs_inputs():
    model = DataDependent()
    assert hook_node_names(model, {"x": -torch.ones(1, 4)})[1] == ["neg", "out"]
    assert hook_node_names(model, ((), {"x": torch.ones(1, 4)}))[1] == ["pos", "out"]


def test_names_leave_model_unchanged(image):
    torch.manual_seed(0)
    model = resnet18(weights=None).train()
    model.layer2.eval()  # mixed flags must come back as they were
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    hook_node_names(model, image)
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # BN running stats too
    assert _no_hooks_left(model)


def test_names_remove_hooks_when_forward_fails():
    model = Nested()
    # Neither mode runs: one StrategyError with the model's own error (#11.3).
    with pytest.raises(StrategyError, match=r"does not run .* in either mode .*shapes cannot be multiplied"):
        hook_node_names(model, torch.ones(2, 5))
    assert _no_hooks_left(model)


# ---------------------------------------------------------------------------------------------
# Activations


@pytest.mark.parametrize(
    "names",
    [
        ["bn1", "layer1.0.bn2", "layer1", "fc"],
        ["bn1", "relu"],  # bn1's output is then modified by ReLU(inplace=True)
        ["layer1.0.relu_1", "layer1.0.bn1", "layer2.0.downsample"],
        ["fc"],
        ["bn1"],
    ],
)
def test_activations_equal_eager_oracle(resnet, image, names):
    nodes = {name: f"out{i}" for i, name in enumerate(names)}
    out = _ext(resnet, nodes)(image)
    expected = _oracle(resnet, {"x": image}, names)
    assert list(out) == list(nodes.values())  # the user's order, not execution order
    for name, key in nodes.items():
        _assert_same(out[key], expected[name])
    if "relu" in names:
        assert (out["out0"] < 0).any() and not (out["out1"] < 0).any()
    assert _no_hooks_left(resnet)


def test_order_follows_return_nodes(resnet, image):
    out = _ext(resnet, {"fc": "logits", "conv1": "stem"})(image)
    assert list(out) == ["logits", "stem"]
    torch.testing.assert_close(out["logits"], resnet(image), rtol=0, atol=0)


def test_stops_after_last_requested_call(resnet, image):
    counts: Counter[str] = Counter()
    watched = ("layer1", "layer2", "layer4", "fc")
    handles = [
        resnet.get_submodule(p).register_forward_hook(lambda m, i, o, p=p: counts.update([p]))
        for p in watched
    ]
    try:
        _ext(resnet, {"layer1": "f"})(image)
        assert counts == {"layer1": 1}  # layer2... never ran
        counts.clear()
        _ext(resnet, {"layer2.0.bn1": "a", "layer1.1": "b"})(image)
        assert counts == {"layer1": 1}  # stopped inside layer2
        counts.clear()
        _ext(resnet, {"fc": "f"})(image)
        assert counts == dict.fromkeys(watched, 1)
        # Only the user's hooks are left.
        assert all(len(resnet.get_submodule(p)._forward_hooks) == 1 for p in watched)
    finally:
        for h in handles:
            h.remove()


def test_early_stop_gets_through_except_exception():
    torch.manual_seed(0)
    model = Swallow()
    calls = []
    model.after.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, 4)
    out = _ext(model, {"fc": "f"})(x)
    assert torch.equal(out["f"], model.fc(x))
    assert calls == []


@pytest.mark.parametrize("kind", ["tuple", "dict", "dataclass"])
@pytest.mark.parametrize("also_last", [True, False])
def test_structured_outputs_protected_from_inplace_ops(kind, also_last):
    torch.manual_seed(0)
    model = InPlaceAfter(kind)
    x = torch.randn(2, 4)
    expected = model.part(x)
    nodes = {"part": "p", "last": "l"} if also_last else {"part": "p"}
    out = _ext(model, nodes)(x)
    _assert_same(out["p"], expected)  # `a.mul_(0)` / `b.add_(100)` later did not reach it
    if kind == "tuple":
        assert out["p"][1][1] == 3
    if also_last:
        torch.testing.assert_close(out["l"], model(x), rtol=0, atol=0)


def test_keeps_autograd():
    torch.manual_seed(0)
    model = Nested()
    x = torch.randn(3, 4)
    out = _ext(model, {"block": "b", "relu_2": "r"})(x)
    assert out["b"].requires_grad and out["b"].grad_fn is not None
    (out["b"].sum() + out["r"].pow(2).sum()).backward()
    got = model.block.fc.weight.grad.clone()

    model.zero_grad()
    b = model.block(x)
    r = model.relu(model.relu_1(model.relu(model.block(b - 1))) + 1)
    (b.sum() + r.pow(2).sum()).backward()
    torch.testing.assert_close(got, model.block.fc.weight.grad)


@pytest.mark.parametrize(("sign", "branch"), [(1.0, "pos"), (-1.0, "neg")])
def test_data_dependent_control_flow(sign, branch):
    torch.manual_seed(0)
    model = DataDependent()
    x = sign * torch.ones(2, 4)
    with pytest.raises(
        Exception, match="symbolically traced variables cannot be used as inputs to control flow"
    ):
        torch.fx.symbolic_trace(model)
    assert hook_node_names(model, x)[1] == [branch, "out"]
    out = _ext(model, {branch: "h", "out": "y"})(x)
    torch.testing.assert_close(out["h"], model.get_submodule(branch)(x), rtol=0, atol=0)
    torch.testing.assert_close(out["y"], model(x), rtol=0, atol=0)


def test_int_of_shape():
    torch.manual_seed(0)
    model = ShapeToInt()
    x = torch.randn(2, 4)
    assert hook_node_names(model, x)[1] == ["fc", "fc_1", "out"]
    out = _ext(model, {"fc_1": "second", "fc": "first"})(x)
    torch.testing.assert_close(out["first"], model.fc(x[0]), rtol=0, atol=0)
    torch.testing.assert_close(out["second"], model.fc(x[1]), rtol=0, atol=0)


def test_hf_transformers_kwargs():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    torch.manual_seed(0)
    model = transformers.BertModel(config).eval()
    inputs = {"input_ids": torch.randint(0, 50, (2, 8)), "attention_mask": torch.ones(2, 8, dtype=torch.long)}
    names = hook_node_names(model, inputs)[1]
    assert {"embeddings", "encoder.layer.0", "encoder.layer.1", "pooler"} <= set(names)
    ran = []
    handle = model.pooler.register_forward_hook(lambda *a: ran.append(1))
    try:
        out = _ext(model, {"encoder.layer.0": "l0", "embeddings": "emb"})(**inputs)
    finally:
        handle.remove()
    assert ran == []
    expected = _oracle(model, inputs, ["embeddings", "encoder.layer.0"])
    _assert_same(out["emb"], expected["embeddings"])
    _assert_same(out["l0"], expected["encoder.layer.0"])
    # A ModelOutput (a dataclass and a dict) returned before the last call is copied whole.
    out = _ext(model, {"encoder": "enc", "pooler": "pool"})(**inputs)
    full = model(**inputs)
    assert isinstance(out["enc"], transformers.modeling_outputs.ModelOutput)
    torch.testing.assert_close(out["enc"]["last_hidden_state"], full.last_hidden_state, rtol=0, atol=0)
    torch.testing.assert_close(out["pool"], full.pooler_output, rtol=0, atol=0)


class _Outer(nn.Module):
    """A model whose forward runs another hooks extractor."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Nested()
        self.features = _ext(self.backbone, {"block": "b"})
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.features(x)["b"])


@pytest.mark.parametrize("names", [["backbone.block"], ["backbone.block", "head"]])
def test_nested_extractors(names):
    torch.manual_seed(0)
    model = _Outer()
    x = torch.randn(2, 4)
    out = _ext(model, {n: n for n in names})(x)
    torch.testing.assert_close(out["backbone.block"], model.backbone.block(x), rtol=0, atol=0)
    if "head" in names:
        torch.testing.assert_close(out["head"], model(x), rtol=0, atol=0)
    assert _no_hooks_left(model)


# ---------------------------------------------------------------------------------------------
# Train / eval, copies


def test_train_eval_pick_their_nodes_and_restore_model_flags():
    torch.manual_seed(0)
    model = TrainEval().eval()
    model.head.train()  # mixed flags
    flags = [m.training for m in model.modules()]
    ext = HookFeatureExtractor(model, {"noise": "n", "fc": "f"}, {"head": "h"})
    assert ext.strategy == "hooks" and ext.model is model
    assert not ext.training  # follows the model, as torchvision's extractor does
    x = torch.randn(8, 4)

    out = ext(x)
    assert list(out) == ["h"] and model.fc.seen == [False]
    torch.testing.assert_close(out["h"], model.head(model.fc(x)), rtol=0, atol=0)

    assert ext.train() is ext and ext.return_nodes == {"noise": "n", "fc": "f"}
    assert [m.training for m in model.modules()] == flags  # train() does not recurse into the model
    out = ext(x)
    assert list(out) == ["n", "f"] and model.fc.seen[-1] is True
    torch.testing.assert_close(out["f"], model.fc(x), rtol=0, atol=0)
    kept = out["n"] != 0
    assert not kept.all() and kept.any()  # dropout ran in train mode
    torch.testing.assert_close(out["n"][kept], 2 * out["f"][kept])
    assert [m.training for m in model.modules()] == flags

    ext.eval()
    assert ext.return_nodes == {"head": "h"} and list(ext(x)) == ["h"]


@pytest.mark.parametrize("roundtrip", ["deepcopy", "pickle", "torch.save"])
@pytest.mark.parametrize("training", [True, False])
def test_copies_keep_nodes_and_mode(roundtrip, training):
    torch.manual_seed(0)
    model = TrainEval()
    ext = HookFeatureExtractor(model, {"noise": "n", "fc": "f"}, {"head": "h"}).train(training)
    if roundtrip == "deepcopy":
        clone = copy.deepcopy(ext)
    elif roundtrip == "pickle":
        clone = pickle.loads(pickle.dumps(ext))
    else:
        buf = io.BytesIO()
        torch.save(ext, buf)
        buf.seek(0)
        clone = torch.load(buf, weights_only=False)
    assert clone.training is training and clone.strategy == "hooks"
    assert (clone.train_return_nodes, clone.eval_return_nodes) == ({"noise": "n", "fc": "f"}, {"head": "h"})
    assert clone.model is not model
    x = torch.randn(2, 4)
    assert list(clone(x)) == (["n", "f"] if training else ["h"])
    clone.eval()
    torch.testing.assert_close(clone(x)["h"], ext.eval()(x)["h"], rtol=0, atol=0)
    assert _no_hooks_left(clone.model)


# ---------------------------------------------------------------------------------------------
# Errors


def test_unknown_name_suggests_module_paths(resnet):
    with pytest.raises(
        NodeNotFoundError, match=r"`layer5` is not a module of ResNet.*Did you mean 'layer4'"
    ) as e:
        _ext(resnet, {"layer5": "f"})
    assert "fxtract.get_graph_node_names(model, strategy='hooks', example_inputs=...)" in str(e.value)


def test_op_outside_modules_is_not_found(resnet):
    with pytest.raises(NodeNotFoundError, match="an op outside every module needs strategy='export' or 'fx'"):
        HookFeatureExtractor(resnet, {"layer1": "f"}, {"flatten": "f"})


@pytest.mark.parametrize(
    ("name", "owner"), [("layer1.0.add", "layer1.0"), ("layer1.add_3", "layer1"), ("fc.linear", "fc")]
)
def test_op_inside_module_needs_another_strategy(resnet, name, owner):
    msg = (
        f"`{name}` is an op inside `{owner}`, which strategy hooks cannot split; "
        "use strategy='export' with example_inputs (or strategy='fx')"
    )
    with pytest.raises(StrategyError, match=re.escape(msg)):
        _ext(resnet, {name: "f"})


@pytest.mark.parametrize(("alias", "first"), [("2", "1"), ("3.act2", "3.act")])
def test_alias_path_names_the_first_path(alias, first):
    relu, act = nn.ReLU(), nn.ReLU()
    inner = nn.Module()
    inner.act, inner.act2 = act, act
    model = nn.Sequential(nn.Linear(2, 2), relu, relu, inner)
    msg = f"`{alias}` is the same module as `{first}`; strategy hooks names its calls `{first}`, `{first}_1`"
    with pytest.raises(NodeNotFoundError, match=re.escape(msg)):
        _ext(model, {alias: "f"})


@pytest.mark.parametrize(
    ("model", "x", "name", "happened"),
    [
        (Nested(), torch.ones(2, 4), "relu_3", "`relu` ran 2 time(s), as `relu`, `relu_2`"),
        (Nested(), torch.ones(2, 4), "block.fc_2", "`block.fc` ran 2 time(s), as `block.fc`, `block.fc_1`"),
        (DataDependent(), torch.ones(2, 4), "neg", "`neg` did not run at all"),
        (TrainEval().eval(), torch.ones(2, 4), "noise", "`noise` did not run at all"),
    ],
)
def test_call_that_did_not_happen(model, x, name, happened):
    ext = _ext(model, {name: "f", "head" if hasattr(model, "head") else "out": "g"})
    msg = f"`{name}` did not happen in this forward (eval mode): {happened}."
    with pytest.raises(NodeNotFoundError, match=re.escape(msg)):
        ext.eval()(x)
    assert _no_hooks_left(model)


@pytest.mark.parametrize(
    ("nodes", "error", "match"),
    [
        ({"fc": "f", "head": "f"}, ReturnNodesError, "two nodes map to the same output key 'f'"),
        (["fc"], FxtractTypeError, "must be a dict of node name -> output key, got list"),
        ({1: "f"}, FxtractTypeError, "node names must be str, got 1"),
    ],
)
def test_bad_return_nodes(nodes, error, match):
    with pytest.raises(error, match=match):
        _ext(TrainEval(), nodes)


def test_not_a_module():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, got function"):
        hook_node_names(lambda x: x, torch.ones(1))


@pytest.mark.parametrize("strategy", ["hooks", "auto"])
def test_glob_return_nodes_with_hooks(strategy):
    """``["*.1"]`` raised NodeNotFoundError with hooks (and with auto once it reached hooks)."""
    import fxtract

    from .models_untraceable import SumBranch

    model, x = SumBranch(), torch.randn(2, 8)  # data-dependent: auto ends on hooks
    with pytest.warns(UserWarning) if strategy == "auto" else contextlib.nullcontext():
        ex = fxtract.create_feature_extractor(model, ["re:[ab]", "c*"], strategy=strategy, example_inputs=x)
    assert ex.strategy == "hooks"
    assert list(ex.eval_return_nodes) == ["a", "b", "c"]
    want = module_outputs(model, x)
    got = ex.eval()(x)
    for name in ex.eval_return_nodes:
        torch.testing.assert_close(got[name], want[name])
