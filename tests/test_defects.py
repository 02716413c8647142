"""Issue #17: extraction defects found by generated models, one regression test each.

Every case is checked against the eager forward-hook oracle, and the user's model must be
bit for bit what it was before (``snapshot`` / ``assert_unchanged``).
"""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fxtract import create_feature_extractor, describe, get_graph_node_names

from .oracle import assert_same, assert_unchanged, module_outputs, snapshot

STRATEGIES = ["fx", "export", "hooks", "auto"]


def extract(model, nodes, inputs, strategy):
    """The extractor's outputs and the oracle's, the model checked unchanged by both calls."""
    before = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = create_feature_extractor(model, nodes, strategy=strategy, example_inputs=inputs)
    assert_unchanged(model, before)
    with torch.no_grad():
        out = ex(*inputs)
    assert_unchanged(model, before)
    return ex, out, module_outputs(model, *inputs)


def check(model, nodes, inputs, strategy):
    ex, out, oracle = extract(model, nodes, inputs, strategy)
    for n in nodes:
        key = nodes[n] if isinstance(nodes, dict) else n
        assert_same(oracle[n], out[key], n)
    return ex


# -- #17.1: a module or op that may return its input is assumed to --------------------------


class Alias(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


ALIASES = {
    "dropout_eval": nn.Dropout(0.1),
    "dropout_p0": nn.Dropout(0.0),
    "identity": nn.Identity(),
    "flatten_noop": nn.Flatten(),
    "contiguous": Alias(lambda x: x.contiguous()),
    "view": Alias(lambda x: x.view(2, 4)),
    "expand": Alias(lambda x: x.expand(2, 4)),
    "reshape": Alias(lambda x: x.reshape(2, 4)),
    "to_same": Alias(lambda x: x.to(torch.float32)),
    "type_as": Alias(lambda x: x.type_as(x)),
    "f_dropout": Alias(lambda x: F.dropout(x, 0.5, training=False)),
    "einsum_permute": Alias(lambda x: torch.einsum("ij->ij", x)),
}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_alias_of_input_then_inplace(alias, strategy):
    model = nn.Sequential(nn.Linear(4, 4), ALIASES[alias], nn.ReLU(inplace=True)).eval()
    check(model, ["0", "1", "2"], (torch.randn(2, 4),), strategy)


@pytest.mark.parametrize("strategy", ["fx", "auto"])
def test_functional_inplace_by_position(strategy):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return F.relu(self.lin(x), True)

    check(M(), ["lin"], (torch.randn(2, 4),), strategy)


# -- #17.5: a leaf that returns a tuple, then an in-place op on an element ------------------


class TupleLeaves(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 1, batch_first=True)
        self.lstm = nn.LSTM(4, 4, batch_first=True)
        self.pool = nn.MaxPool1d(1, return_indices=True)

    def forward(self, x):
        h = self.attn(x, x, x)[0]
        h.relu_()
        o = self.lstm(h)[0]
        o.relu_()
        p = self.pool(o)[0]
        return p.mul_(2)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_tuple_leaf_then_inplace(strategy):
    check(TupleLeaves().eval(), ["attn", "lstm", "pool"], (torch.randn(2, 3, 4),), strategy)


# -- #17.7: describe and example_inputs leave an LSTM (and every model) as it was -----------


class WithLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 4, batch_first=True, num_layers=2)
        self.gru = nn.GRU(4, 4, batch_first=True)
        self.fc = nn.Linear(4, 2)
        self.cache = [torch.zeros(1)]  # a user's list of tensors, compared by identity

    def forward(self, x):
        return self.fc(self.gru(self.lstm(x)[0])[0])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_describe_lstm_leaves_model_unchanged(strategy):
    model, x = WithLSTM(), torch.randn(2, 3, 4)
    expected = model(x)
    before = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        infos = describe(model, x, strategy=strategy)
    assert_unchanged(model, before)
    assert "fc" in {i.name for i in infos}
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_extractor_with_inputs_lstm(strategy):
    ex = check(WithLSTM(), ["lstm", "gru", "fc"], (torch.randn(2, 3, 4),), strategy)
    assert ex.feature_info is not None


# -- #17.8: a literal name with glob characters is that name, in a dict too ------------------


class GlobKeys(nn.Module):
    def __init__(self):
        super().__init__()
        self.md = nn.ModuleDict({"[x]": nn.Linear(4, 4), "x": nn.Linear(4, 4), "a*": nn.ReLU()})

    def forward(self, x):
        return self.md["a*"](self.md["x"](self.md["[x]"](x)))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("as_dict", [True, False])
def test_literal_name_with_glob_characters(strategy, as_dict):
    nodes = {"md.[x]": "feat", "md.a*": "act"} if as_dict else ["md.[x]", "md.a*"]
    ex = check(GlobKeys(), nodes, (torch.randn(2, 4),), strategy)
    with torch.no_grad():
        assert list(ex(torch.randn(2, 4))) == (["feat", "act"] if as_dict else nodes)


# -- #17.4: a traced-through module returns a namedtuple the generated code cannot name ------


def _local_structures():
    from collections import OrderedDict, namedtuple

    Pair = namedtuple("Pair", "a b")  # defined here, not where the model's class is

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            h = self.lin(x)
            return Pair(h, (Pair(x, h), OrderedDict(z=h)))

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Inner()

        def forward(self, x):
            p = self.inner(x)
            return p.a + p.b[0].a + p.b[1]["z"]

    return Outer()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_local_namedtuple_output(strategy):
    _, out, oracle = extract(_local_structures(), ["inner"], (torch.randn(2, 4),), strategy)
    assert_same(oracle["inner"], out["inner"], "inner")
    assert type(out["inner"]) is type(oracle["inner"])
    assert type(out["inner"].b[0]) is type(oracle["inner"].b[0])
    assert type(out["inner"].b[1]) is type(oracle["inner"].b[1])


# -- #17.6: a leaf (automatic or declared) that writes its input -----------------------------


class WritesInput(nn.Module):
    def forward(self, h):
        if int(h.shape[0]) > 0:  # FX cannot trace this: an automatic leaf under "auto"
            h[:, 0] = 0
        return h * 2


class Scale(nn.Module):
    def forward(self, x):
        if x.sum() > -1e9:  # data-dependent: export cannot either
            x.mul_(-1)
        return x


class LeafWrites(nn.Module):
    def __init__(self, leaf):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.leaf = leaf
        self.out = nn.Linear(4, 4)

    def forward(self, x):
        h = self.lin(x)
        return self.out(self.leaf(h)) + h


@pytest.mark.parametrize(
    ("leaf", "strategy"),
    [
        (WritesInput, "auto"),
        (WritesInput, "export"),
        (WritesInput, "hooks"),
        (Scale, "auto"),
        (Scale, "hooks"),
    ],
)
def test_leaf_writes_its_input(leaf, strategy):
    check(LeafWrites(leaf()), ["lin", "leaf", "out"], (torch.randn(2, 4),), strategy)


@pytest.mark.parametrize("leaf", [WritesInput, Scale])
def test_declared_leaf_writes_its_input(leaf):
    model, x = LeafWrites(leaf()), torch.randn(2, 4)
    ex = create_feature_extractor(
        model, ["lin", "leaf"], tracer_kwargs={"leaf_modules": [leaf]}, strategy="fx"
    )
    oracle = module_outputs(model, x)
    out = ex(x)
    for n in ("lin", "leaf"):
        assert_same(oracle[n], out[n], n)


# -- #17.3: a module shared by two parents, under export --------------------------------------

Halves = __import__("collections").namedtuple("Halves", "pre post")


class Parent(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.act = act

    def forward(self, x):
        h = self.lin(x)
        return Halves(h, self.act(h))


class SharedChild(nn.Module):
    def __init__(self):
        super().__init__()
        act = nn.GELU()
        self.p = Parent(act)
        self.q = Parent(act)

    def forward(self, x):
        return self.q(self.p(x).post).post


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_shared_module_second_call(strategy):
    x = torch.randn(2, 4)
    model = SharedChild()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = get_graph_node_names(model, strategy=strategy, example_inputs=(x,))[1]
    if strategy != "hooks":  # hooks list module calls only: p.act_1 is there, q.lin too
        assert names == ["x", "p.lin", "p.act", "q.lin", "p.act_1"]
    assert "p.act_1" in names
    nodes = ["p", "p.act", "q", "p.act_1"]
    _, out, oracle = extract(model, nodes, (x,), strategy)
    for n in nodes:
        assert_same(oracle[n], out[n], n)
        assert type(out[n]) is type(oracle[n]), n


# -- #17.2 (and #11.4): augmented assignment writes the tensor under every name -------------


class AliasedIAdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)
        self.out = nn.Linear(6, 6)

    def forward(self, x):
        h = self.lin(x)
        y = h
        y += 1
        return self.out(h)


class SliceIMul(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)
        self.head = nn.Linear(6, 6)

    def forward(self, x):
        t = self.lin(x)
        s = t[:, 2:4]
        s *= 0
        n = x.shape[0]
        n += 1  # an int: a new value, as in Python
        return self.head(t) * n


class ReturnsWritten(nn.Module):
    """The block returns ``h`` after writing it under another name: its value is the written one."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x):
        h = self.lin(x)
        y = h
        y -= 2
        return h


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(
    ("model", "nodes"),
    [(AliasedIAdd, ["lin", "out"]), (SliceIMul, ["lin", "head"]), (ReturnsWritten, ["lin"])],
    ids=["alias", "slice", "returned"],
)
def test_augmented_assignment_writes_in_place(model, nodes, strategy):
    m = model()
    ex = check(m, nodes, (torch.randn(2, 6),), strategy)
    with torch.no_grad():
        torch.testing.assert_close(
            ex(torch.ones(2, 6))[nodes[-1]], module_outputs(m, torch.ones(2, 6))[nodes[-1]]
        )


def test_augmented_assignment_keeps_names_and_resnet_graph():
    names = get_graph_node_names(AliasedIAdd())[1]
    assert names == ["x", "lin", "add", "out"]
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(weights=None).eval()
    ex = create_feature_extractor(model, ["layer1.0.bn2", "layer1.0.add"])
    assert ex.num_clones["eval"] == 0  # `out += identity`: no other name sees it, so out of place
    ops = {n.target for n in ex.eval_graph.nodes if n.name.endswith("add")}
    assert ops == {__import__("operator").add}
