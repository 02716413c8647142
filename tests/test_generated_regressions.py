"""Shrunk examples the generated-model sweep (tests/test_generated.py) found, kept as regressions."""

from __future__ import annotations

import collections
import warnings

import pytest
import torch
from torch import nn

from fxtract import create_feature_extractor, get_graph_node_names

from .oracle import assert_same, module_outputs

X = torch.randn(2, 4)


class _Items(nn.Module):
    """A ModuleList named with glob characters, iterated (so never called itself)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.add_module(name, nn.ModuleList([nn.Linear(4, 4), nn.Tanh()]))
        self.name = name

    def forward(self, x):
        for m in getattr(self, self.name):
            x = m(x)
        return x * 2


@pytest.mark.parametrize("name", ["x[0]", "q?", "s*t", "plain"])
def test_module_path_with_glob_characters_is_a_name(name):
    # Found: 'λ.q?.blk' / 's*t' / 'x[0]' (a ModuleList prefix, or a module traced through) was
    # read as a glob, matched no node name and raised NodeNotFoundError. Fixed in expand_queries.
    model = _Items(name).eval()
    ex = create_feature_extractor(model, [name, f"{name}.0"], strategy="fx")
    out = ex(X)
    oracle = module_outputs(model, X)
    assert_same(oracle[f"{name}.1"], out[name], name)  # what happened last inside it
    assert_same(oracle[f"{name}.0"], out[f"{name}.0"], f"{name}.0")


class _Branchy(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.add_module(name, nn.Linear(4, 4))
        self.name = name

    def forward(self, x):
        if x.sum() > 0:  # FX cannot trace it: an automatic leaf
            x = x + 1
        return getattr(self, self.name)(x)


class _Outer(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.blk = _Branchy(name)

    def forward(self, x):
        return self.blk(x) * 2


@pytest.mark.parametrize("name", ["lin", "x[0]"])
def test_name_inside_an_automatic_leaf_is_served(name):
    # Found: with glob characters, a call inside an automatic leaf got "pattern ... matches no
    # node name" instead of the message that names the leaf. Since issue #11.1 the chain goes on
    # past the automatic leaf (to hooks here: the branch is on values) and serves the name.
    model = _Outer(name).eval()
    with pytest.warns(UserWarning, match="hooks"):
        ex = create_feature_extractor(model, [f"blk.{name}"], strategy="auto")
    assert ex.strategy == "hooks"
    assert_same(module_outputs(model, X)[f"blk.{name}"], ex(X)[f"blk.{name}"], name)


Pair = collections.namedtuple("Pair", ["a", "b"])


class _ReturnsPair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        h = self.lin(x)
        return Pair(h, h - 1)


class _UsesPair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blk = _ReturnsPair()

    def forward(self, x):
        return self.blk(x).a * 2


def test_namedtuple_of_the_models_own_module():
    # Found by the sweep: issue #17.4 hits a namedtuple defined in the model's own module too.
    model = _UsesPair().eval()
    out = create_feature_extractor(model, ["blk"], strategy="fx")(X)
    assert_same(module_outputs(model, X)["blk"], out["blk"], "blk")


class _Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        act = nn.Tanh()
        self.a = nn.Sequential(nn.Linear(4, 4), act)
        self.b = nn.Sequential(nn.Linear(4, 4), act)

    def forward(self, x):
        return self.b(self.a(x))


def test_module_shared_by_two_parents_under_export():
    model = _Shared().eval()
    oracle = module_outputs(model, X)
    ex = create_feature_extractor(model, list(oracle), strategy="export", example_inputs=(X,))
    out = ex(X)
    for name, value in oracle.items():
        assert_same(value, out[name], name)


class _TwoNames(nn.Module):
    """One Linear registered under two names of the same parent, called through both."""

    def __init__(self) -> None:
        super().__init__()
        lin = nn.Linear(4, 4)
        self.a = lin
        self.b = lin

    def forward(self, x):
        h = self.a(x) + self.b(x)
        return h, h * 2


class _HoldsTwoNames(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q = _TwoNames()

    def forward(self, x):
        return self.q(x)[0]


def test_module_called_under_two_names_of_one_parent_under_export():
    # Found by the sweep (shrunk by hand): the second call of the shared Linear has no name
    # ('q.a_1'), and describe gives the enclosing call 'q' one shape where it returned two.
    from fxtract import describe

    model = _HoldsTwoNames().eval()
    infos = describe(model, (X,), nodes=["q"], strategy="export")
    assert infos[0].shapes == ((2, 4), (2, 4))
    oracle = module_outputs(model, X)
    ex = create_feature_extractor(model, list(oracle), strategy="export", example_inputs=(X,))
    out = ex(X)
    for name, value in oracle.items():
        assert_same(value, out[name], name)


class _ViewOfShapeThenWrite(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        h = x.view(x.shape[0], -1)
        h.add_(1)  # writes x through the view
        return self.lin(h * (x.shape[1] // 2))


def test_sizes_of_a_tensor_written_later_are_not_cloned():
    # Found by the sweep (chunks 0 and 9, shrunk to h = x.view(x.shape[0], -1); h.add_(1)): the
    # alias analysis took x.shape and x.shape[0] to share x's memory, so protect_outputs called
    # .clone() on a torch.Size and an int when every node was requested (AttributeError).
    # Fixed in fx_passes._Aliases: sizes and arithmetic on them hold no memory.
    model = _ViewOfShapeThenWrite().eval()
    ex = create_feature_extractor(model, ["x", "getattr", "getitem", "view", "add_", "lin"], strategy="fx")
    out = ex(X.clone())
    assert out["getattr"] == X.shape and out["getitem"] == 2
    assert torch.equal(out["x"], X) and torch.equal(out["view"], X)  # read before the write
    assert torch.equal(out["add_"], X + 1)
    assert_same(module_outputs(model, X.clone())["lin"], out["lin"], "lin")
    assert not [
        n
        for n in ex.graph.nodes
        if n.op == "call_method" and n.target == "clone" and "getitem" in str(n.args)
    ]


class _Untraceable(nn.Module):
    def __init__(self, lin: nn.Module) -> None:
        super().__init__()
        self.lin = lin

    def forward(self, x):
        x = self.lin(self.lin(x))
        if x.shape[-1] == 4:  # FX cannot trace it: an automatic leaf
            x = x * 2
        return x


class _SharedAcrossALeaf(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        lin = nn.Linear(4, 4)
        self.a = _Untraceable(lin)
        self.b = nn.Sequential(nn.ReLU())
        self.b.add_module("lin", lin)  # the same Linear, outside the leaf

    def forward(self, x):
        return self.b(self.a(x))


def test_module_shared_across_an_automatic_leaf_is_named_once_per_call():
    # Found by the sweep (chunk 0, "auto train: duplicate names [('^h.lin', 2), ...]"): FX with
    # automatic leaves named the shared module's call outside the leaf 'a.lin' (it does not see
    # the two calls inside), the calls inside were listed from hooks as 'a.lin', 'a.lin_1', and
    # 'a.lin' meant two calls. Fixed in chain.run: then auto goes on to export / hooks.
    model = _SharedAcrossALeaf().eval()
    with pytest.warns(UserWarning, match=r"automatic leaves: 'a.lin' inside the leaf 'a' is also 'b.lin'"):
        train, names = get_graph_node_names(model, example_inputs=(X,))
    assert len(names) == len(set(names)) and len(train) == len(set(train))
    assert {"a.lin", "a.lin_1", "a.lin_2"} <= set(names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = create_feature_extractor(model, ["a.lin", "a.lin_1", "a.lin_2"], example_inputs=(X,))
    out, oracle = ex(X), module_outputs(model, X)
    for n in ("a.lin", "a.lin_1", "a.lin_2"):
        assert_same(oracle[n], out[n], n)


class _TwoPathsThenInPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        gelu = nn.GELU()
        self.add_module("λ", gelu)
        self.add_module("ab", gelu)  # one module, two paths
        self.blk = nn.ReLU(inplace=True)
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        h = self.λ(self.ab(x))
        return self.lin(self.blk(h))


class _CalledTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.m = _TwoPathsThenInPlace()

    def forward(self, x):
        return self.m(self.m(x))


@pytest.mark.parametrize("strategy", ["fx", "export", "hooks"])
def test_module_shared_by_two_paths_in_a_block_called_twice(strategy):
    # Found by the sweep (chunk 0, "export (export): m$.λ_1"): export numbered the calls of the
    # canonical path by its own "@k" (calls through that path only), so 'm.λ' took the call made
    # through 'm.ab', and 'm.λ_1' was read after the in-place ReLU. Fixed in export_trace: every
    # path of a shared module is matched to the hooks' calls in order.
    model = _CalledTwice().eval()
    names = ["m.λ", "m.λ_1", "m.λ_2", "m.λ_3", "m.blk", "m.blk_1"]
    ex = create_feature_extractor(model, names, strategy=strategy, example_inputs=(X,))
    out, oracle = ex(X.clone()), module_outputs(model, X.clone())
    for n in names:
        assert_same(oracle[n], out[n], n)


class _DictCalledTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.ModuleDict({"fc_3": nn.Linear(4, 4), "fc_3_1": nn.Linear(4, 4)})

    def forward(self, x):
        for _ in range(2):
            for k in self.lin:
                x = self.lin[k](x)
        return x


def test_torchvision_naming_latest_match_from_another_base():
    # Found by the sweep (chunk 0): torchvision names the second call of 'lin.fc_3' after the
    # latest earlier name matching 'lin.fc(_[0-9]+)?', which is 'lin.fc_3' (handed out for
    # 'lin.fc_3_1'): 'lin.fc_4'. naming="torchvision" said 'lin.fc_1'. Fixed in _TorchvisionNamer.
    tv = pytest.importorskip("torchvision.models.feature_extraction")
    model = _DictCalledTwice()
    expected = tv.get_graph_node_names(model)
    assert expected[1] == ["x", "lin.fc", "lin.fc_3", "lin.fc_4", "lin.fc_3_1"]
    assert get_graph_node_names(model, naming="torchvision", strategy="fx") == expected


class _LeafUsesTheRootsLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.inner = _Untraceable(self.lin)  # an automatic leaf calling the root's Linear twice

    def forward(self, x):
        return self.inner(self.lin(x))


def test_call_of_a_shared_module_inside_an_automatic_leaf_is_extractable():
    # Found by the sweep (chunk 2): 'lin_1' / 'lin_2', the calls of the root's Linear made inside
    # an automatic leaf, raised NodeNotFoundError under auto (FX does not see them, and the names
    # are not under the leaf's path). Fixed in chain.run: auto goes on to export / hooks.
    model = _LeafUsesTheRootsLinear().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = create_feature_extractor(model, ["lin", "lin_1", "lin_2"], example_inputs=(X,))
    assert ex.strategy in ("export", "hooks")
    out, oracle = ex(X), module_outputs(model, X)
    for n in ("lin", "lin_1", "lin_2"):
        assert_same(oracle[n], out[n], n)
