"""describe / feature_info: shapes without a real forward, equal to a real forward's."""

from __future__ import annotations

import json
import pickle
import resource
import subprocess
import sys
import warnings

import pytest
import torch
import torchvision
from torch import fx, nn

from fxtract import create_feature_extractor
from fxtract._api import describe, feature_info
from fxtract._describe import _merge_orders
from fxtract._errors import FxtractValueError, NodeNotFoundError, StrategyError, TraceError
from fxtract._hooks import hook_node_names
from fxtract._info import NodeInfo, NodeInfoList
from fxtract._naming import NodePathTracer, trace_modes
from fxtract._strategies.fx import names_in_order

from . import models as M
from . import models_export as E
from . import models_untraceable as U
from .oracle import module_outputs


class Toy(nn.Module):
    """Modules, functions, methods, attributes, a tuple output and a module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.pair = M.TupleBlock()
        self.scale = nn.Parameter(torch.ones(1, 8, 1, 1))

    def forward(self, x):
        x = self.block(self.conv(x)) * self.scale
        x = torch.relu(x).flatten(2).mean(-1)  # (N, 8)
        x = x[:, :4]
        a, b = self.pair(x)
        return torch.cat([a, b], dim=1).softmax(-1)


def _real_node_outputs(model, graph, *args):
    """Every node's real output shapes, from a real run of the same graph."""
    record = {}

    class Real(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            leaves = torch.utils._pytree.tree_leaves(out)
            record[n] = tuple(tuple(t.shape) for t in leaves if isinstance(t, torch.Tensor))
            return out

    with torch.no_grad():
        Real(model, graph=graph).run(*args)
    return record


def _hook_outputs(model, x):
    """{module path: [output shapes of each call]}, from forward hooks on a real forward."""
    seen: dict[str, list] = {}
    handles = []
    for path, module in model.named_modules():
        if not path:
            continue

        def hook(mod, args, out, path=path):
            leaves = torch.utils._pytree.tree_leaves(out)
            shapes = tuple(tuple(t.shape) for t in leaves if isinstance(t, torch.Tensor))
            seen.setdefault(path, []).append(shapes)

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def _check_against_real_forward(model, x, tracer_kwargs=None):
    model.eval()
    infos = {i.name: i for i in describe(model, x, nodes="*", tracer_kwargs=tracer_kwargs)}
    tracer, graph = trace_modes(model, tracer_kwargs)["eval"]
    # 1. every graph node, against a real run of the graph
    real = _real_node_outputs(model, graph, x)
    for node, name in tracer.node_to_qualname.items():
        assert infos[name].shapes == real[node], name
    # 2. every module call (leaf or traced through), against forward hooks
    hooks = _hook_outputs(model, x)
    calls_per_path: dict[str, int] = {}
    checked = 0
    for call in tracer.module_calls:  # completion order = hook order
        k = calls_per_path.get(call.path, 0)
        calls_per_path[call.path] = k + 1
        assert infos[call.name].shapes == hooks[call.path][k], call.name
        assert infos[call.name].kind == "module"
        checked += 1
    assert checked > 0
    return infos


def test_toy_model_all_nodes():
    model = Toy()
    x = torch.randn(2, 3, 16, 16)
    infos = _check_against_real_forward(model, x)
    assert infos["x"].kind == "input" and infos["x"].target == "x"
    assert infos["conv"].kind == "module" and infos["conv"].target == "Conv2d"
    assert infos["conv"].params == 8 * 3 * 9 + 8
    assert infos["block"].target == "Sequential" and infos["block"].params == 8 * 8 + 8 + 16
    assert infos["block.0"].parent == "block" and infos["block"].parent == ""
    assert infos["relu"].kind == "function" and infos["relu"].target == "torch.relu"
    assert infos["mul"].target == "operator.mul" and infos["mul"].params == 0
    assert infos["flatten"].kind == "method" and infos["flatten"].target == "flatten"
    assert infos["scale"].kind == "attribute" and infos["scale"].shapes == ((1, 8, 1, 1),)
    assert infos["pair"].shapes == ((2, 4), (2, 4))  # a tuple output, flattened
    assert infos["softmax"].shapes == ((2, 8),) and infos["softmax"].dtypes == ("float32",)
    assert all(i.modes == "both" for i in infos.values())


def test_default_lists_graph_nodes_in_order():
    model = Toy()
    infos = describe(model, torch.zeros(1, 3, 8, 8))
    tracer = NodePathTracer()
    tracer.trace(model.eval())
    assert [i.name for i in infos] == list(tracer.node_to_qualname.values())
    # "*" adds traced-through module calls, each after its last node
    names = [i.name for i in describe(model, torch.zeros(1, 3, 8, 8), nodes="*")]
    assert names.index("block") == names.index("block.2") + 1
    assert names.index("pair") == names.index("pair.b") + 1


def test_wrapped_function_may_change_its_list_arguments():
    # The interpreter must pass new lists, as the generated code does (torchvision swin3d).
    model = M.MutatesListArg()
    x = torch.zeros(2, 3, 4, 4)
    infos = describe(model, x, strategy="fx")
    assert "clip_sizes" in [i.name for i in infos]
    assert infos[-1].shapes == (tuple(model(x).shape),) == ((2, 24),)


@pytest.mark.parametrize(
    "name, size, kwargs",
    [("resnet18", 64, {}), ("mobilenet_v3_small", 64, {}), ("vit_b_16", 32, {"image_size": 32})],
)
def test_torchvision_models_match_real_forward(name, size, kwargs):
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    infos = _check_against_real_forward(model, torch.randn(1, 3, size, size))
    assert infos[list(infos)[-1]].shapes[0][-1] == 1000 or any(
        i.shapes == ((1, 1000),) for i in infos.values()
    )


def test_names_in_order_nested_calls():
    tracer = NodePathTracer()
    tracer.trace(M.Containers())
    names, types = names_in_order(tracer)
    assert names.index("pair") == names.index("pair.b") + 1
    assert names.index("early") > names.index("early.sigmoid")
    assert types["pair"] is M.TupleBlock and types["pair.a"] is nn.Linear
    assert len(names) == len(set(names))


def test_merge_orders():
    assert _merge_orders(["a", "b", "d"], ["a", "b", "c", "c2", "d", "e"]) == ["a", "b", "c", "c2", "d", "e"]
    assert _merge_orders(["b"], ["a", "b"]) == ["a", "b"]


class CountingBN(M.Counter):
    """A buffer updated in the traced graph, and a BatchNorm leaf updating its running stats."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(super().forward(x))


def test_model_left_untouched_in_train_mode():
    model = CountingBN().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    infos = describe(model, torch.randn(8, 4), mode="both", nodes="*")
    assert [i.name for i in infos if i.kind == "module"] == ["fc", "fc2", "bn"]
    assert infos[-1].shapes == ((8, 4),)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(m.training for m in model.modules())
    model.eval()
    describe(model, torch.randn(8, 4), mode="train")
    assert not any(m.training for m in model.modules())
    # the same graph on real tensors does update them: describe really ran the updates on fakes
    model.train()(torch.randn(8, 4))
    assert model.count.item() == 1 and model.bn.num_batches_tracked.item() == 1


@pytest.mark.parametrize("strategy", ["fx", "export", "hooks"])
def test_shared_module_paths_get_their_own_tensors_back(strategy):
    # torch.func.functional_call left fake tensors in a module with two paths (timm coat).
    model = M.SharedPaths().eval()
    before = {id(m): (dict(m._parameters), dict(m._buffers)) for m in model.modules()}
    x = torch.randn(3, 4)
    expected = model(x)
    infos = describe(model, x, strategy=strategy, nodes=["cpe", "head"])
    assert [i.shapes for i in infos] == [((3, 4),), ((3, 4),)]
    for m in model.modules():
        params, buffers = before[id(m)]
        assert all(m._parameters[k] is v for k, v in params.items())
        assert all(m._buffers[k] is v for k, v in buffers.items())
    assert model.head.weight is model.stage[0].weight
    torch.testing.assert_close(model(x), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = create_feature_extractor(model, ["cpe", "head"], example_inputs=x, strategy=strategy)
    out = ex.eval()(x)
    assert type(out["head"]) is torch.Tensor
    torch.testing.assert_close(out["head"], expected)


class Caching(nn.Module):
    """A leaf whose forward stores its output, and a forward hook that counts calls."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.last = None

    def forward(self, x):
        self.last = self.fc(x)
        return self.last


def test_leaf_side_effects_do_not_leak_fake_tensors():
    model = nn.Sequential(Caching(), nn.ReLU())
    calls = []
    model[1].register_forward_hook(lambda mod, args, out: calls.append(out.shape))
    infos = describe(model, torch.zeros(2, 4), tracer_kwargs={"leaf_modules": [Caching]})
    assert infos[1].target == "Caching" and infos[1].shapes == ((2, 4),)
    assert model[0].last is None
    assert calls == [torch.Size([2, 4])]  # hooks run, as in a real forward


def test_modes_train_eval_both():
    model = M.TrainEval()
    x = torch.randn(3, 4)
    eval_names = [i.name for i in describe(model, x)]
    train_names = [i.name for i in describe(model, x, mode="train")]
    both = describe(model, x, mode="both")
    assert [i.name for i in both] == _merge_orders(eval_names, train_names)
    modes = {i.name: i.modes for i in both}
    assert modes["add"] == "train" and modes["mul"] == "eval" and modes["dropout"] == "both"
    assert all(i.shapes == () or i.shapes == ((),) for i in both if i.name != "x")


def test_nodes_patterns_and_exclude():
    model = torchvision.models.resnet18()
    x = torch.zeros(1, 3, 32, 32)
    infos = describe(model, x, nodes=["layer4", "re:layer1\\.0\\.relu.*"], exclude="layer1.0.relu_1")
    assert [i.name for i in infos] == ["layer1.0.relu", "layer4"]
    assert infos[1].shapes == ((1, 512, 1, 1),) and infos[1].target == "Sequential"
    assert infos[1].params == sum(p.numel() for p in model.layer4.parameters())
    with pytest.raises(NodeNotFoundError, match=r"Did you mean.*layer4"):
        describe(model, x, nodes="layer5")
    with pytest.raises(NodeNotFoundError, match="matches no node"):
        describe(model, x, nodes="layer9.*")


def test_without_inputs_no_shapes():
    infos = describe(torchvision.models.resnet18(), None, nodes="layer1*")
    assert infos and all(i.shapes == () and i.dtypes == () for i in infos)
    assert infos[0].target == "Conv2d"


def test_input_forms_and_meta_inputs():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 6)

        def forward(self, x, y, scale: float = 2.0):
            return self.fc(x) * scale + y.sum()

    m = TwoInputs()
    x, y = torch.zeros(5, 4), torch.zeros(3)
    expected = ((5, 6),)
    for inputs in ((x, y), (x, y, 3.0), {"x": x, "y": y}, ((x,), {"y": y})):
        assert describe(m, inputs, nodes="fc")[0].shapes == expected
    # meta example inputs are fine for a real model: no real tensor at all
    meta = (torch.empty(5, 4, device="meta"), torch.empty(3, device="meta"))
    assert describe(m, meta, nodes="add")[0].shapes == expected
    with pytest.raises(FxtractValueError, match="does not take"):
        describe(m, {"x": x, "z": y})
    with pytest.raises(FxtractValueError, match="no value for forward\\(\\) argument 'y'"):
        describe(m, x)


def test_dtypes_follow_the_model():
    m = nn.Sequential(nn.Linear(4, 4)).to(torch.float64)
    info = describe(m, torch.zeros(2, 4, dtype=torch.float64))[-1]
    assert info.dtypes == ("float64",)


def test_shape_error_names_the_node():
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(FxtractValueError) as info:
        describe(m, torch.zeros(2, 4))
    msg = str(info.value)
    assert "node '2' (module Linear)" in msg and "[[2, 4]]" in msg and "\n" not in msg


def test_node_info_to_dict_is_json():
    info = describe(M.Containers(), torch.zeros(2, 4), nodes="pair")[0]
    data = json.loads(json.dumps(info.to_dict()))
    assert data == {
        "name": "pair",
        "kind": "module",
        "target": "TupleBlock",
        "shapes": [[2, 4], [2, 4]],
        "dtypes": ["float32", "float32"],
        "params": 40,
        "modes": "both",
        "parent": "",
    }
    with pytest.raises(AttributeError):
        info.name = "x"  # frozen
    assert isinstance(info, NodeInfo)


def test_no_activation_memory_for_a_real_model():
    # Activations of a real forward would take ~14 GB here.
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    infos = describe(model, torch.empty(64, 3, 1024, 1024, device="meta"))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert infos[-1].shapes == ((64, 64, 1024, 1024),)
    assert grown_mb < 500


META_SCRIPT = """
import resource, sys, time
import torch
from torch import nn
from fxtract._api import describe

t = time.perf_counter()
with torch.device("meta"):
    layers = [nn.TransformerEncoderLayer(4096, 32, 16384, batch_first=True) for _ in range(20)]
    model = nn.Sequential(*layers, nn.Linear(4096, 32000))
n = sum(p.numel() for p in model.parameters())
infos = describe(model, torch.zeros(2, 128, 4096), nodes="*")
print(n, infos[-1].shapes, infos[-1].params, len(infos),
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, round(time.perf_counter() - t, 2))
"""


def test_meta_model_with_billions_of_parameters():
    out = subprocess.run([sys.executable, "-c", META_SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    n, *rest = out.stdout.split(maxsplit=1)
    assert int(n) > 4_000_000_000  # 16 GB of float32 if it were real
    assert "((2, 128, 32000),)" in rest[0]
    rss_mb = int(out.stdout.split()[-2])
    assert rss_mb < 3000, out.stdout  # torch itself takes ~0.5 GB


# ---------------------------------------------------------------------------------------------
# feature_info


def _timm_tracer_kwargs():
    from timm.layers import _fx

    return {"leaf_modules": _fx.get_notrace_modules(), "autowrap_functions": _fx.get_notrace_functions()}


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "convnext_atto", "vit_tiny_patch16_224"])
def test_feature_info_matches_timm(name):
    timm = pytest.importorskip("timm")
    model = timm.create_model(name, pretrained=False)
    expected = [(f["module"], f["num_chs"], f["reduction"]) for f in model.feature_info]
    modules = [e[0] for e in expected]
    got = feature_info(model, modules, torch.zeros(1, 3, 224, 224), tracer_kwargs=_timm_tracer_kwargs())
    assert [(g["name"], g["num_chs"], g["reduction"]) for g in got] == expected


def test_feature_info_rules():
    class Layouts(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 4, stride=4)
            self.up = nn.Upsample(scale_factor=8)

        def forward(self, x):
            y = self.conv(x)  # NCHW (1, 16, 8, 8)
            nhwc = y.permute(0, 2, 3, 1)  # NHWC (1, 8, 8, 16)
            tokens = torch.cat([y[:, :, :1, 0].transpose(1, 2), y.flatten(2).transpose(1, 2)], 1)
            pooled = y.mean((2, 3))
            return nhwc, tokens, pooled, self.up(y)

    got = {
        f["name"]: (f["num_chs"], f["reduction"])
        for f in feature_info(Layouts(), "*", torch.zeros(1, 3, 32, 32))
    }
    assert got["conv"] == (16, 4)
    assert got["permute"] == (16, 4)  # NHWC
    assert got["cat"] == (16, 4)  # 1 prefix token + an 8 x 8 grid
    assert got["mean"] == (16, None)
    assert got["up"] == (16, 0.5)


# ---------------------------------------------------------------------------------------------
# Strategies: export and hooks


def _call_shapes(model, *args, **kwargs):
    """{call name (``P``, ``P_1``): output shapes} from a real forward with hooks (the oracle)."""
    model.eval()
    out = {}
    for name, value in module_outputs(model, *args, **kwargs).items():
        leaves = torch.utils._pytree.tree_leaves(value)
        out[name] = tuple(tuple(t.shape) for t in leaves if isinstance(t, torch.Tensor))
    return out


def _assert_calls_match(infos, oracle):
    """Every module call ``describe`` reports has the shapes a real forward gave it."""
    checked = 0
    for info in infos:
        if info.kind == "module" and info.name in oracle:
            assert info.shapes == oracle[info.name], info.name
            checked += 1
    assert checked > 0
    return checked


@pytest.fixture
def strict_warnings():
    """Any warning fails the test (describe must not warn when nothing fell back)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


class Spy(nn.Module):
    """Records the type of every tensor it sees: fake (no real forward) or real."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.seen: list[str] = []

    def forward(self, x):
        self.seen.append(type(x).__name__)
        return self.fc(x)


def test_hooks_data_dependent_branch_runs_one_real_forward():
    model = U.SumBranch()
    x = torch.randn(2, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match=r"ran a real forward because SumBranch cannot run on fake tensors"):
        infos = describe(model, x, strategy="hooks", mode="both")
    assert isinstance(infos, NodeInfoList) and isinstance(infos, list)
    assert infos.strategy == "hooks" and infos.real_forward == ("train", "eval")
    assert all(i.modes == "both" for i in infos)
    assert [i.name for i in infos] == ["a", "b", "c"]
    assert {i.name: i.shapes for i in infos} == _call_shapes(model, x)
    assert all(i.kind == "module" and i.target == "Linear" and i.params == 72 for i in infos)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # auto: fx, automatic leaves and export fail on the branch; one warning says why. In eval
    # mode only the eval forward runs for real, so the train graph is unknown.
    with pytest.warns(UserWarning, match=r"used strategy='hooks'; earlier strategies failed: fx: .*export: "):
        with pytest.warns(
            UserWarning, match=r"in eval mode, .* train-mode forward failed .*only reflects eval"
        ):
            auto = describe(model, x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        describe(model, x)
    assert len(caught) == 2 and all(w.filename == __file__ for w in caught)  # they point here
    assert auto.strategy == "hooks" and auto.real_forward == ("eval",)
    assert [(i.name, i.shapes, i.modes) for i in auto] == [(i.name, i.shapes, "eval") for i in infos]


def test_hooks_run_on_fake_tensors_without_a_real_forward(strict_warnings):
    model = nn.Sequential(Spy(), nn.ReLU())
    infos = describe(model, torch.randn(3, 8), strategy="hooks", mode="both")
    assert infos.strategy == "hooks" and infos.real_forward == ()
    assert model[0].seen == ["FakeTensor", "FakeTensor"]  # train and eval, both fake
    assert [(i.name, i.shapes, i.parent) for i in infos] == [
        ("0", ((3, 8),), ""),
        ("0.fc", ((3, 8),), "0"),
        ("1", ((3, 8),), ""),
    ]
    assert all(i.modes == "both" for i in infos)


def test_hooks_names_repeated_calls_as_get_graph_node_names():
    model = E.Repeats()
    x = torch.randn(2, 4)
    infos = describe(model, x, strategy="hooks")
    assert [i.name for i in infos] == hook_node_names(model, x)[1]
    assert {i.name: i.shapes for i in infos} == _call_shapes(model, x)
    assert {i.name: i.parent for i in infos}["block.0_1"] == "block_1"


class TrainOnly(nn.Module):
    """``drop`` runs in train mode only; batch norm moves its statistics in train mode."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.drop = nn.Dropout(0.5)
        self.last = None

    def forward(self, x):
        x = self.bn(self.fc(x))
        if self.training:
            x = self.drop(x)
        self.last = x  # an attribute set in forward: must not keep a fake tensor
        return x


@pytest.mark.filterwarnings("ignore:The tensor attribute self.last was assigned during export")
@pytest.mark.parametrize("strategy", ["hooks", "export"])
def test_train_eval_presence_and_model_untouched(strategy):
    model = TrainOnly().train()
    model.bn.eval()  # a submodule's own flag, restored as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    infos = describe(model, torch.randn(8, 4), mode="both", strategy=strategy, nodes="*")
    modes = {i.name: i.modes for i in infos}
    assert modes["drop"] == "train" and modes["fc"] == modes["bn"] == "both"
    assert {i.name: i.shapes for i in infos}["drop"] == ((8, 4),)
    assert "drop" not in [i.name for i in describe(model, torch.randn(8, 4), strategy=strategy)]
    assert model.training and not model.bn.training and model.last is None
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("strategy, what", [("hooks", "forward"), ("export", "export")])
def test_other_mode_failing_is_a_warning(strategy, what):
    # Train-mode batch norm refuses one value per channel; eval mode is fine.
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    with pytest.warns(
        UserWarning, match=f"the train-mode {what} failed .*per channel.*only reflects eval mode"
    ):
        infos = describe(model, torch.zeros(1, 4), strategy=strategy, nodes="*")
    assert {i.name: i.shapes for i in infos}["1"] == ((1, 3),) and {i.modes for i in infos} == {"eval"}
    with pytest.raises((FxtractValueError, TraceError), match="per channel"):
        describe(model, torch.zeros(1, 4), strategy=strategy, mode="train")


def test_export_dino_vit_auto_falls_back_to_export():
    model = U.TinyDino().eval()
    x = torch.randn(2, 3, 48, 32)  # not the position embedding's size: interpolated
    with pytest.warns(UserWarning, match=r"fxtract used strategy='export'; earlier strategies failed: fx: "):
        infos = describe(model, x, nodes="*")
    assert infos.strategy == "export" and infos.auto_leaves == {}
    by_name = {i.name: i for i in infos}
    _assert_calls_match(infos, _call_shapes(model, x))
    assert by_name["x"].kind == "input" and by_name["x"].shapes == ((2, 3, 48, 32),)
    assert by_name["patch_embed"].kind == "module" and by_name["patch_embed"].target == "Conv2d"
    assert by_name["patch_embed"].params == sum(p.numel() for p in model.patch_embed.parameters())
    ops = [i for i in infos if i.kind == "function"]
    assert ops and all(i.target.startswith(("aten.", "operator.")) for i in ops)
    assert by_name["blocks.1"].parent == "" and by_name["blocks.1.linear1"].parent == "blocks.1"
    with torch.no_grad():
        assert infos[-1].name == "norm" and infos[-1].shapes == (tuple(model(x).shape),)
    # the default lists the graph's nodes only: module calls that are no node are left out
    default = [i.name for i in describe(model, x, strategy="export")]
    assert default == [i.name for i in infos if i.name in set(default)] and default[0] == "x"
    calls_only = set(by_name) - set(default)  # blocks.0.norm2: its output is the node blocks.0
    assert calls_only and all(by_name[n].kind == "module" for n in calls_only)


def test_export_explicit_does_not_warn(strict_warnings):
    infos = describe(E.TinyDino(), torch.randn(2, 3, 16, 16), strategy="export", nodes="blocks.0.attn*")
    assert infos.strategy == "export"
    assert [i.name for i in infos][-1] == "blocks.0.attn"  # after the ops it ran
    assert {i.name: i.shapes for i in infos}["blocks.0.attn.qkv"] == ((2, 5, 48),)


def _present(model, cls):
    """The paths of the submodules of class ``cls`` (names from the installed version)."""
    return [p for p, m in model.named_modules() if type(m).__name__ == cls]


def test_hf_bert_tiny_through_export():
    inputs = {
        "input_ids": torch.randint(0, 100, (2, 7)),
        "attention_mask": torch.ones(2, 7, dtype=torch.long),
    }
    model = E.tiny_bert()
    with pytest.warns(UserWarning, match="used strategy='export'"):
        infos = describe(model, inputs, nodes="*")
    assert infos.strategy == "export"
    oracle = _call_shapes(model, **inputs)
    assert _assert_calls_match(infos, oracle) >= 20
    by_name = {i.name: i for i in infos}
    first_layer = _present(model, "BertLayer")[0]
    assert by_name[first_layer].shapes == ((2, 7, 32),)
    assert by_name[first_layer].params == sum(
        p.numel() for p in model.get_submodule(first_layer).parameters()
    )


def test_hf_vit_tiny_through_hooks(strict_warnings):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    model = transformers.ViTModel(cfg).eval()
    x = torch.randn(2, 3, 32, 32)
    infos = describe(model, x, strategy="hooks")
    assert infos.strategy == "hooks" and infos.real_forward == ()
    oracle = _call_shapes(model, x)
    assert {i.name: i.shapes for i in infos} == oracle
    linears = _present(model, "Linear")
    assert linears and all(n in oracle for n in linears)
    fc = next(i for i in infos if i.name == linears[-1])
    assert fc.kind == "module" and fc.params == sum(
        p.numel() for p in model.get_submodule(fc.name).parameters()
    )


@pytest.mark.parametrize("strategy", ["hooks", "export"])
def test_meta_model(strategy, strict_warnings):
    real = E.TinyDino()
    with torch.device("meta"):
        meta = E.TinyDino()
    x = torch.zeros(2, 3, 16, 16)
    infos = describe(meta, x, strategy=strategy, nodes="*")
    assert infos.strategy == strategy
    expected = {i.name: i for i in describe(real, x, strategy=strategy, nodes="*")}
    assert [i.name for i in infos] == list(expected)
    for info in infos:
        assert info == expected[info.name], info.name
    _assert_calls_match(infos, _call_shapes(real, x))
    assert all(p.is_meta for p in meta.parameters())


def test_meta_model_needing_values_is_a_clear_error():
    with torch.device("meta"):
        model = U.SumBranch()
    with pytest.raises(StrategyError, match=r"needs tensor values .*parameters are on the meta device"):
        describe(model, torch.ones(2, 8), strategy="hooks")
    with pytest.raises(StrategyError, match="meta device"):
        describe(model, torch.ones(2, 8))  # auto: every strategy fails
    with pytest.raises(StrategyError, match="example_inputs are on the meta device"):
        describe(U.SumBranch(), torch.empty(2, 8, device="meta"), strategy="hooks")


@pytest.mark.parametrize("strategy", ["hooks", "export"])
def test_no_activation_memory(strategy):
    # A real forward would take ~14 GB of activations; the inputs are meta too.
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    infos = describe(model, torch.empty(64, 3, 1024, 1024, device="meta"), strategy=strategy)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert infos[-1].name == "2" and infos[-1].shapes == ((64, 64, 1024, 1024),)
    assert grown_mb < 500


def test_strategy_recorded_and_automatic_leaves():
    infos = describe(M.Containers(), torch.zeros(2, 4))
    assert infos.strategy == "fx" and infos.auto_leaves == {} and infos.real_forward == ()
    with pytest.warns(UserWarning, match=r"became leaves .*inner\.0 \(TypeError") as caught:
        infos = describe(M.DeepInt(), torch.randn(3, 4), nodes="*")
    assert [w.filename for w in caught] == [__file__]
    assert infos.strategy == "fx" and list(infos.auto_leaves) == ["inner.0"]
    assert {i.name: i.shapes for i in infos}["inner.0"] == ((3, 4),)
    copy = pickle.loads(pickle.dumps(infos))
    assert copy == infos and copy.strategy == "fx" and copy.auto_leaves == infos.auto_leaves


def test_auto_falls_back_when_shapes_need_values():
    class NonZero(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x).nonzero()

    # FX traces it but cannot run nonzero on fake tensors; export gives the size a name
    with pytest.warns(UserWarning, match=r"used strategy='export'.*depends on tensor values"):
        infos = describe(NonZero(), torch.randn(3, 4))
    assert infos.strategy == "export"
    assert {i.name: i.shapes for i in infos}["nonzero"] == (("u0", 2),)
    with pytest.raises(FxtractValueError, match="depends on tensor values"):
        describe(NonZero(), torch.randn(3, 4), strategy="fx")


def test_strategy_errors():
    x = torch.zeros(2, 8)
    with pytest.raises(
        FxtractValueError, match=r"strategy must be one of \('auto', 'fx', 'export', 'hooks'\)"
    ):
        describe(U.SumBranch(), x, strategy="jit")
    for strategy in ("export", "hooks"):
        with pytest.raises(StrategyError, match=f"strategy='{strategy}'.*needs example_inputs"):
            describe(U.SumBranch(), None, strategy=strategy)
    with pytest.raises(StrategyError, match=r"FX cannot trace SumBranch .*pass example_inputs"):
        describe(U.SumBranch())
    with pytest.raises(TraceError, match="could not trace"):
        describe(U.SumBranch(), x, strategy="fx")
    with pytest.raises(TraceError, match=r"torch\.export could not export"):
        describe(U.SumBranch(), x, strategy="export")
    bad = nn.Sequential(nn.Linear(8, 4), nn.Linear(5, 2))
    with pytest.raises(FxtractValueError, match=r"fake tensors failed in module call '1' \(Linear\)"):
        describe(bad, x, strategy="hooks")
    with pytest.raises(NodeNotFoundError, match="Did you mean"):
        describe(U.SumBranch(), x, strategy="hooks", nodes="cc")


def test_feature_info_with_hooks():
    got = feature_info(U.TinyDino(), ["blocks.1", "norm"], torch.zeros(1, 3, 32, 32), strategy="hooks")
    assert [(f["name"], f["num_chs"], f["reduction"]) for f in got] == [("blocks.1", 32, 8), ("norm", 32, 8)]


class _WithTensorConstant(nn.Module):
    """``torch.tensor(...)`` in forward: FX stores it as ``_tensor_constant0`` (maxvit_t does this)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(x) * torch.tensor([1.0, 2.0, 3.0, 4.0])


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_describe_fx_graph_with_tensor_constants(device):
    model = _WithTensorConstant().to(device)
    infos = describe(model, torch.randn(2, 4, device=device), strategy="fx")
    assert infos.strategy == "fx"
    assert {i.name: i.shapes for i in infos}["mul"] == ((2, 4),)
    assert not hasattr(model, "_tensor_constant0")  # the constant stays off the user's model
