import copy
import io
import pickle
import warnings

import pytest
import torch
import torchvision
from torch import fx, nn
from torchvision.models import feature_extraction as tvfe

from fxtract import (
    DualGraphModule,
    FxtractError,
    NodeNotFoundError,
    ReturnNodesError,
    create_feature_extractor,
    describe,
    get_graph_node_names,
)
from fxtract._naming import trace_modes

from . import models as M
from .oracle import assert_same, module_outputs
from .zoo import CLASSIFICATION_CI, build, classification_all

X4 = torch.randn(3, 4)


def extract(model, nodes, **kw):
    kw.setdefault("suppress_diff_warning", True)
    return create_feature_extractor(model, nodes, **kw)


# -- selection ------------------------------------------------------------------------------------


def test_prefix_is_the_module_return_value_tuple():
    model = M.Containers().eval()
    out = extract(model, ["pair", "early"])(X4)
    a, b = model.pair.a(X4), model.pair.b(X4)
    assert isinstance(out["pair"], tuple) and len(out["pair"]) == 2
    torch.testing.assert_close(out["pair"][0], a)
    torch.testing.assert_close(out["pair"][1], b)
    # `early` returns fc's output, not the sigmoid computed after it.
    torch.testing.assert_close(out["early"], model.early.fc(a + b))


def test_each_query_resolves_on_its_own():
    model = build("resnet18").eval()
    x = torch.randn(1, 3, 64, 64)
    oracle = module_outputs(model, x)
    out = extract(model, ["layer1", "layer1.1"])(x)
    torch.testing.assert_close(out["layer1"], oracle["layer1"])
    torch.testing.assert_close(out["layer1.1"], oracle["layer1.1"])


def test_later_calls_are_p_k():
    model = M.SharedCall().eval()
    oracle = module_outputs(model, X4)
    out = extract(model, ["block", "block_1", "block.fc_1", "block.fc_2"])(X4)
    for name in out:
        torch.testing.assert_close(out[name], oracle[name])
    assert not torch.equal(out["block"], out["block_1"])


class _IteratedList(nn.Module):
    """A ModuleList that forward iterates (never calls): timm coat's serial_blocks1."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(3)])
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x) + 1
        return self.head(x)


def test_prefix_of_a_module_never_called_itself():
    # torchvision accepts any prefix of node names; timm's FeatureGraphNet asks for such paths.
    model = _IteratedList().eval()
    ours = extract(model, ["blocks", "blocks.1"])(X4)
    theirs = tvfe.create_feature_extractor(model, ["blocks", "blocks.1"])(X4)
    torch.testing.assert_close(ours["blocks"], model.blocks[2](model.blocks[1](model.blocks[0](X4) + 1) + 1))
    torch.testing.assert_close(ours["blocks"], theirs["blocks"])
    torch.testing.assert_close(ours["blocks.1"], theirs["blocks.1"])
    with pytest.raises(NodeNotFoundError):
        extract(model, ["block"])


@pytest.mark.parametrize("strategy", ["fx", "export", "hooks"])
def test_module_never_called_itself_in_every_strategy(strategy):
    # The same rule everywhere: the outermost call inside that finished last (blocks.2).
    model = _IteratedList().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = extract(model, ["blocks", "head"], strategy=strategy, example_inputs=X4)
    out = ex(X4)
    torch.testing.assert_close(out["blocks"], model.blocks[2](model.blocks[1](model.blocks[0](X4) + 1) + 1))
    torch.testing.assert_close(out["head"], model(X4))
    assert [row["name"] for row in ex.feature_info] == ["blocks", "head"]
    assert ex.feature_info[0]["num_chs"] == 4
    (info,) = describe(model, X4, nodes=["blocks"], strategy=strategy)
    assert (info.name, info.kind, info.target, info.shapes) == ("blocks", "module", "ModuleList", ((3, 4),))
    assert info.params == sum(p.numel() for p in model.blocks.parameters())


def test_module_never_called_itself_with_hooks_when_no_item_ran():
    model = _IteratedList().eval()
    model.forward = lambda x: model.head(x)  # an instance attribute: the class is untouched
    with pytest.raises(NodeNotFoundError, match=r"`blocks` \(ModuleList, no forward of its own\).*none ran"):
        extract(model, ["blocks"], strategy="hooks")(X4)


def test_dict_keys_and_request_order():
    model = build("resnet18").eval()
    out = extract(model, {"layer2": "b", "layer1": "a"})(torch.randn(1, 3, 64, 64))
    assert list(out) == ["b", "a"]


# -- errors ---------------------------------------------------------------------------------------


def test_unknown_name_suggests_and_names_mode():
    with pytest.raises(
        NodeNotFoundError, match=r"(?s)'layer1\.0\.relu_9' is not in the train graph.*Did you mean"
    ):
        extract(build("resnet18"), ["layer1.0.relu_9"])
    assert issubclass(NodeNotFoundError, ValueError) and issubclass(NodeNotFoundError, FxtractError)


def test_inside_a_leaf_module_says_so():
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.Linear(4, 2))
    with pytest.raises(
        NodeNotFoundError, match=r"'0.1' is inside '0', a leaf module \(Sequential\).*'hooks'"
    ):
        extract(model, ["0.1"], tracer_kwargs={"leaf_modules": ["0"]})


def test_regex_lookalike_is_not_accepted():
    with pytest.raises(NodeNotFoundError, match=r"'a.b'.*Did you mean 'axb'"):
        extract(M.AxB(), ["a.b"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "no return nodes"),
        ({"train_return_nodes": ["fc"]}, "go together"),
        ({"return_nodes": ["fc"], "train_return_nodes": ["fc"], "eval_return_nodes": ["fc"]}, "not both"),
        ({"return_nodes": {"fc": "k", "bn": "k"}}, "to the output key 'k'"),
        ({"return_nodes": []}, "is empty"),
    ],
)
def test_inconsistent_return_nodes(kwargs, match):
    with pytest.raises(ReturnNodesError, match=match):
        create_feature_extractor(M.NoneTrain(), **kwargs)
    assert issubclass(ReturnNodesError, ValueError) and issubclass(ReturnNodesError, AssertionError)


# -- in-place safety --------------------------------------------------------------------------------


def test_inplace_relu_does_not_change_returned_values():
    model = build("resnet18").eval()
    x = torch.randn(2, 3, 64, 64)
    oracle = module_outputs(model, x)
    ex = extract(model, ["bn1", "layer1.0.bn2", "layer1.0.relu_1", "conv1"])
    out = ex(x)
    for name in out:
        torch.testing.assert_close(out[name], oracle[name], msg=name)
    with torch.no_grad():
        tv = tvfe.create_feature_extractor(model, ["bn1", "layer1"])(x)["bn1"]
    assert not torch.equal(tv, oracle["bn1"]), "torchvision returns bn1 after the in-place ReLU"
    assert ex.num_clones["eval"] == 1  # only bn1: relu_1 is the last writer, conv1/bn2 are never written


def test_clone_goes_when_its_inplace_writer_is_pruned():
    model = build("resnet18").eval()
    x = torch.randn(2, 3, 64, 64)
    alone = extract(model, ["layer1.0.add"])  # the in-place relu after it is pruned: no clone
    assert alone.num_clones == {"train": 0, "eval": 0}
    tv = tvfe.create_feature_extractor(model, ["layer1.0.add"])
    assert len(alone.eval_graph.nodes) == len(tv.eval_graph.nodes)
    both = extract(model, ["layer1.0.add", "layer1.0.relu_1"])  # relu_1 kept: the add needs a copy
    assert both.num_clones["eval"] == 1
    torch.testing.assert_close(both(x)["layer1.0.add"], alone(x)["layer1.0.add"])
    assert not torch.equal(both(x)["layer1.0.add"], both(x)["layer1.0.relu_1"])


def test_common_case_copies_nothing():
    ex = extract(build("resnet18"), ["layer1", "layer2", "layer3", "layer4", "fc"])
    assert ex.num_clones == {"train": 0, "eval": 0}


def test_views_and_inplace_methods():
    model = M.InplaceInput().eval()
    out = extract(model, ["fc", "view", "mul_", "add_", "relu_"])(X4)
    y = model.fc(X4)
    torch.testing.assert_close(out["fc"], y)
    torch.testing.assert_close(out["mul_"].view(3, 4), y * 2)
    torch.testing.assert_close(out["relu_"], torch.relu(y * 2 + 1))


# -- a faithful graph --------------------------------------------------------------------------------


def test_module_output_is_read_when_the_call_returns():
    # `pos` returns cat(...) after adding into it: the value is the one after the add_,
    # and the mul_ after the call must not reach it (mvit_v1_b's pos_encoding).
    model = M.ChangedInsideThenAfter().eval()
    out = extract(model, ["pos", "pos.cat"])(X4)
    torch.testing.assert_close(out["pos"], torch.cat((X4, X4), dim=1) + 1)
    torch.testing.assert_close(out["pos.cat"], torch.cat((X4, X4), dim=1))


def test_opaque_function_called_for_its_effect_is_kept():
    # torchvision drops the call (its result is unused): every later activation is wrong,
    # as for torchvision's own mvit_v1_b / mvit_v2_s.
    model = M.OpaqueInplace().eval()
    lin = model.lin(X4)
    out = extract(model, ["lin", "out"])(X4)
    torch.testing.assert_close(out["out"], model(X4))
    torch.testing.assert_close(out["lin"], lin)  # returned before add_into changed it
    theirs = tvfe.create_feature_extractor(model, ["out"])(X4)
    assert not torch.allclose(theirs["out"], model(X4))


def test_grad_mode_regions_are_kept():
    model = M.GradRegions()
    ex = extract(model, ["a", "b", "mul", "add_1"])
    x = torch.randn(2, 4, requires_grad=True)
    out = ex(x)
    assert out["a"].requires_grad and not out["b"].requires_grad
    with torch.no_grad():
        out = ex(x)
    assert out["mul"].requires_grad, "enable_grad() inside forward wins over the caller's no_grad"
    assert not out["a"].requires_grad
    assert torch.is_grad_enabled()


def test_buffer_update_runs_at_call_time_only():
    model = M.Counter()
    ex = extract(model, ["fc"])
    assert model.count.item() == 0, "tracing must not touch the model"
    ex(X4)
    ex(X4)
    assert model.count.item() == 2
    torch.testing.assert_close(ex(X4)["fc"], model.fc(X4))


def test_tracing_does_not_call_hooks_with_proxies():
    model = M.HookedBlock()
    with pytest.warns(UserWarning, match=r"block: forward_hook .*_hook"):
        ex = extract(model, ["block"])
    assert model.seen == []
    torch.testing.assert_close(ex(X4)["block"], model.block(X4))


def test_model_is_not_modified():
    model = build("resnet18")
    model.eval()
    model.layer1.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    extract(model, ["layer1"])
    assert not model.training and model.layer1.training and not model.layer2.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])


def test_parameters_are_shared():
    model = build("resnet18")
    ex = extract(model, ["layer1"])
    assert ex.conv1.weight is model.conv1.weight
    assert not hasattr(ex, "fc"), "unused modules are pruned"
    assert copy.deepcopy(ex).conv1.weight is not model.conv1.weight


def test_tracer_kwargs_pass_through():
    ex = extract(build("resnet18"), ["layer1"], tracer_kwargs={"param_shapes_constant": True})
    assert isinstance(ex, fx.GraphModule)


# -- train / eval, copies, compilers ----------------------------------------------------------------


def _train_eval_extractor():
    model = M.TrainEval()
    return create_feature_extractor(
        model,
        train_return_nodes=["dropout", "add", "sub"],
        eval_return_nodes=["dropout", "mul", "sub"],
        suppress_diff_warning=True,
    )


def _check_mode(ex, mode):
    with torch.no_grad():
        out = ex(torch.ones(10, 10))
    if mode == "train":
        assert out["dropout"].item() == 0 and out["sub"].item() == 100 and "mul" not in out
    else:
        assert out["dropout"].item() == 1 and out["sub"].item() == 0 and "add" not in out


@pytest.mark.parametrize(
    "roundtrip",
    [
        lambda m: m,
        copy.deepcopy,
        lambda m: pickle.loads(pickle.dumps(m)),
        lambda m: _torch_roundtrip(m),
    ],
    ids=["same", "deepcopy", "pickle", "torch.save"],
)
def test_train_eval_switching_survives_copies(roundtrip):
    ex = _train_eval_extractor()
    assert isinstance(ex, DualGraphModule)
    for start in ("train", "eval"):
        ex.train(start == "train")
        copied = roundtrip(ex)
        assert copied.training == (start == "train")
        _check_mode(copied, start)
        for mode in ("eval", "train", "eval"):
            copied.train(mode == "train")
            _check_mode(copied, mode)


def _torch_roundtrip(m):
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_deepcopy_keeps_eval_mode_and_outputs():
    model = build("resnet18").eval()
    ex = extract(model, ["layer2"])
    copied = copy.deepcopy(ex)
    assert not copied.training
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(copied(x)["layer2"], ex(x)["layer2"])


def test_torchscript_keeps_switching():
    ex = _train_eval_extractor()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(ex)
    _check_mode(scripted, "train")
    scripted.eval()
    _check_mode(scripted, "eval")
    scripted.train()
    _check_mode(scripted, "train")


@pytest.mark.parametrize("start", ["train", "eval"])
def test_torchscript_with_train_eval_outputs_of_different_types(start):
    # torchvision's own test_jit_forward_backward samples different train / eval nodes (vit:
    # a tuple-returning attention module in one mode only): one forward cannot return both
    # types, so the current mode's graph is scripted, as torchvision does.
    model = M.Containers().train(start == "train")
    ex = create_feature_extractor(
        model, train_return_nodes=["pair"], eval_return_nodes=["early"], suppress_diff_warning=True
    )
    with pytest.warns(UserWarning, match=f"runs the {start} graph only"):
        scripted = torch.jit.script(ex)
    expected = ex(X4)
    for mode in (True, False):
        assert_same(scripted.train(mode)(X4), expected, f"{start}->{mode}")


def test_compile_and_export():
    model = build("resnet18").eval()
    ex = extract(model, ["layer1", "fc"])
    x = torch.randn(1, 3, 64, 64)
    ref = ex(x)
    ep = torch.export.export(ex, (x,))
    torch.testing.assert_close(ep.module()(x)["fc"], ref["fc"])
    compiled = torch.compile(ex, backend="eager")
    torch.testing.assert_close(compiled(x)["layer1"], ref["layer1"])


# -- pruning ----------------------------------------------------------------------------------------


def _kept(ex, mode="eval"):
    graph = ex.eval_graph if mode == "eval" else ex.train_graph
    return [n.name for n in graph.nodes if n.op in ("call_module", "call_function", "call_method")]


def test_pruning_keeps_checks_on_kept_computation_only():
    model = M.Asserts().eval()
    ex = extract(model, ["one"])
    kept = _kept(ex)
    asserts = [n for n in kept if n.startswith("_assert")]
    # The input check and one's own check stay; two's check and the late check go.
    assert len(asserts) == 2
    assert "two_fc" not in kept
    with pytest.raises(AssertionError, match="input must be 2-D"):
        ex(torch.randn(4))


def test_vit_early_layer_prunes_later_blocks_and_keeps_its_checks():
    model = build("vit_b_16").eval()
    ex = extract(model, ["encoder.layers.encoder_layer_1"])
    tv = tvfe.create_feature_extractor(model, ["encoder.layers.encoder_layer_1"])
    ours, theirs = len(_kept(ex)), sum(n.op.startswith("call") for n in tv.graph.nodes)
    assert ours < theirs / 2
    x = torch.randn(1, 3, 224, 224)
    oracle = module_outputs(model, x)
    torch.testing.assert_close(
        ex(x)["encoder.layers.encoder_layer_1"], oracle["encoder.layers.encoder_layer_1"]
    )
    with pytest.raises(AssertionError, match="Wrong image height"):
        ex(torch.randn(1, 3, 160, 224))


# -- oracle over torchvision models -------------------------------------------------------------------


def _module_call_names(model):
    tracer = trace_modes(model)["eval"][0]
    return [c.name for c in tracer.module_calls]


def _check_oracle(name, size=64, shape=None):
    model = build(name).eval()
    size = 224 if name.startswith(("vit", "swin", "maxvit")) else 96 if name == "inception_v3" else size
    x = torch.randn(*(shape or (1, 3, size, size)))
    names = _module_call_names(model)
    ex = extract(model, names)
    with torch.no_grad():
        out = ex(x)
    oracle = module_outputs(model, x)
    assert set(names) <= set(oracle)
    for n in names:
        assert_same(oracle[n], out[n], n)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "vit_b_16", "densenet121", "googlenet"])
def test_oracle_ci(name):
    _check_oracle(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", classification_all())
def test_oracle_all(name):
    if name in ("vit_h_14", "vit_l_32", "vit_l_16", "regnet_y_128gf"):
        pytest.skip("too large for this machine's test budget")
    _check_oracle(name)


VIDEO_SHAPES = {
    "r3d_18": (1, 3, 8, 64, 64),
    "mc3_18": (1, 3, 8, 64, 64),
    "r2plus1d_18": (1, 3, 8, 64, 64),
    "s3d": (1, 3, 16, 224, 224),
    "swin3d_t": (1, 3, 8, 64, 64),
    "mvit_v1_b": (1, 3, 16, 224, 224),
    "mvit_v2_s": (1, 3, 16, 224, 224),  # its _add_shortcut is the opaque in-place call torchvision drops
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VIDEO_SHAPES))
def test_oracle_video(name):
    _check_oracle(name, shape=VIDEO_SHAPES[name])


@pytest.mark.parametrize("name", CLASSIFICATION_CI[:3])
def test_names_listed_are_extractable(name):
    model = build(name).eval()
    _, eval_names = get_graph_node_names(model, suppress_diff_warning=True)
    ex = extract(model, eval_names[1::7])
    assert len(ex(torch.randn(1, 3, 64, 64))) == len(eval_names[1::7])


def test_torchvision_compat_forward_backward():
    model = build("resnet18").train()
    train_nodes, eval_nodes = get_graph_node_names(model, suppress_diff_warning=True)
    ex = create_feature_extractor(
        model,
        train_return_nodes=train_nodes[1:8],
        eval_return_nodes=eval_nodes[1:8],
        suppress_diff_warning=True,
    )
    out = ex(torch.randn(2, 3, 64, 64))
    sum(v.float().mean() for v in out.values()).backward()
    assert model.conv1.weight.grad is not None


def test_leaf_module_and_function_from_torchvision_suite():
    class LeafModule(nn.Module):
        def forward(self, x):
            int(x.shape[0])
            return nn.functional.relu(x + 4)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 1, 3)
            self.leaf_module = LeafModule()

        def forward(self, x):
            return self.leaf_module(self.conv(x))

    ex = create_feature_extractor(
        Model(), return_nodes=["leaf_module"], tracer_kwargs={"leaf_modules": [LeafModule]}, strategy="fx"
    ).train()
    assert "leaf_module" in [str(n) for n in ex.graph.nodes]
    ex(torch.randn(1, 3, 8, 8))["leaf_module"].mean().backward()


def test_feature_extraction_matches_intermediate_layer_getter():
    from torchvision.models._utils import IntermediateLayerGetter

    model = torchvision.models.resnet18(weights=None).eval()
    layers = {"layer1": "layer1", "layer2": "layer2", "layer3": "layer3", "layer4": "layer4"}
    ilg = IntermediateLayerGetter(model, layers).eval()
    ex = extract(model, layers)
    for (n1, p1), (n2, p2) in zip(ilg.named_parameters(), ex.named_parameters()):
        assert n1 == n2 and p1.equal(p2)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = ilg(x), ex(x)
    assert list(a) == list(b)
    for k in a:
        assert a[k].equal(b[k])


def test_feature_info_on_the_extractor():
    ex = extract(build("resnet18"), ["layer1", "layer4"], example_inputs=torch.randn(1, 3, 224, 224))
    assert [(f["num_chs"], f["reduction"]) for f in ex.feature_info] == [(64, 4), (512, 32)]


def test_feature_info_reuses_the_extractors_two_traces(monkeypatch):
    """feature_info of an FX extractor traced the model four times (two more for describe)."""
    from fxtract._naming import NodePathTracer

    traces = []
    original = NodePathTracer.trace

    def counting(self, *args, **kwargs):
        traces.append(type(args[0]).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NodePathTracer, "trace", counting)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())
    ex = create_feature_extractor(model, {"1": "act", "2": "flat"}, example_inputs=torch.zeros(1, 3, 16, 16))
    assert traces == ["Sequential", "Sequential"]
    assert ex.feature_info == [
        {"name": "1", "num_chs": 8, "reduction": 2, "shape": (1, 8, 8, 8), "key": "act"},
        {"name": "2", "num_chs": 512, "reduction": None, "shape": (1, 512), "key": "flat"},
    ]
