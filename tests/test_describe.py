"""describe / feature_info: shapes without a real forward, equal to a real forward's."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest
import torch
import torchvision
from torch import fx, nn

from fxtract._describe import NodeInfo, _merge_orders, describe, feature_info, names_in_order
from fxtract._errors import FxtractValueError, NodeNotFoundError
from fxtract._naming import NodePathTracer, trace_modes

from . import models as M


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
from fxtract._describe import describe

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
