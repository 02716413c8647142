"""Properties of fxtract on generated models (tests/generated.py).

Each drawn model is checked for: unique names, identical across two runs (and, in one batch,
across processes); ``naming="torchvision"`` equal to torchvision's names where torchvision
traces the model; every module call and every module prefix equal to an eager forward-hook
oracle, for each strategy that accepts the model (fx, export, hooks, auto); every op-level node
equal to a reference ``torch.fx.Interpreter`` run of the same graph; a train/eval warning
exactly when the two graphs differ; extractors that survive pickle, deepcopy and
``torch.save``/``load``; ``describe`` shapes equal to the real forward's; the model unchanged
after every call. A failure prints the model's source (``GenModel.repro()``).
"""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from torch import fx
from torch.utils import _pytree as pytree

import fxtract
from fxtract import FxtractError, NodePathTracer, create_feature_extractor, describe, get_graph_node_names
from fxtract._naming import UniqueNamer

from .generated import GenModel, models
from .oracle import assert_same

STRATEGIES = ("fx", "export", "hooks", "auto")
STATS: Counter = Counter()
CHECK = settings(
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


def _clone(x):
    return pytree.tree_map_only(torch.Tensor, lambda t: t.detach().clone(), x)


def _shapes(value) -> tuple:
    return tuple(tuple(t.shape) for t in pytree.tree_leaves(value) if isinstance(t, torch.Tensor))


# -- references ---------------------------------------------------------------------------------


def hook_oracle(model, x, leaves=frozenset()) -> tuple[dict[str, object], dict[str, object]]:
    """``({call name: output}, {uncalled module path: output of the last call that finished under it})``.

    Calls made inside a call of a module in ``leaves`` are not graph nodes, so they get no name.
    """
    paths = [p for p, _ in model.named_modules() if p]
    namer = UniqueNamer(paths)
    values: dict[str, object] = {}
    finished: list[tuple[str, str]] = []  # (path, call name) in the order the calls returned
    stack: list = []  # the call name, or None inside a leaf
    handles = []
    for path, mod in model.named_modules():
        if not path:
            continue

        def pre(m, a, path=path):
            hidden = any(frame is None or frame[1] for frame in stack)
            stack.append(None if hidden else (namer.claim(path, owns_base=True), path in leaves))

        def post(m, a, out, path=path):
            frame = stack.pop()
            if frame is not None:
                values[frame[0]] = _clone(out)
                finished.append((path, frame[0]))

        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    try:
        with torch.no_grad():
            model(x.clone())
    finally:
        for h in handles:
            h.remove()
    called = {p for p, _ in finished}
    prefixes = {}
    for p in paths:
        if p in called or any(p.startswith(f"{leaf}.") for leaf in leaves):
            continue
        under = [name for q, name in finished if q.startswith(p + ".")]
        if under:
            prefixes[p] = values[under[-1]]
    return values, prefixes


def interpreter_values(model, tracer_kwargs) -> tuple[dict[str, object], fx.Graph]:
    """``{node name: value when the node ran}`` from a plain ``fx.Interpreter`` over fxtract's graph."""
    tracer = NodePathTracer(**tracer_kwargs)
    graph = tracer.trace(model)
    names = dict(tracer.node_to_qualname)
    record: dict[str, object] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n in names:
                record[names[n]] = _clone(out)
            return out

    return record, Recorder(fx.GraphModule(tracer.root, graph)), names


class Snapshot:
    """Parameters, buffers (values and objects), flags and attribute names of every submodule."""

    def __init__(self, model) -> None:
        self.model = model
        self.tensors = [(n, t, t.detach().clone()) for n, t in model.state_dict(keep_vars=True).items()]
        self.mods = [(n, m, m.training, sorted(vars(m))) for n, m in model.named_modules()]
        self.hooks = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]

    def check(self, what: str) -> None:
        now = self.model.state_dict(keep_vars=True)
        assert list(now) == [n for n, _, _ in self.tensors], f"{what} changed the model's state_dict keys"
        for n, t, value in self.tensors:
            assert now[n] is t, f"{what} replaced {n}"
            assert torch.equal(t.detach(), value), f"{what} changed {n}"
        mods = [(n, m, m.training, sorted(vars(m))) for n, m in self.model.named_modules()]
        assert mods == self.mods, f"{what} changed a submodule (flag, attributes or tree)"
        hooks = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in self.model.modules()]
        assert hooks == self.hooks, f"{what} left hooks on the model"
        STATS["model unchanged"] += 1


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# -- the properties -----------------------------------------------------------------------------


def check_names(gm: GenModel, model, snap: Snapshot, x, strategies) -> dict[str, tuple[list, list]]:
    """Unique, deterministic names per strategy; ``{strategy: (train, eval)}`` for those that accept it."""
    tk = gm.tracer_kwargs(model)
    accepted = {}
    for strategy in strategies:
        try:
            names = _quiet(get_graph_node_names, model, tk, strategy=strategy, example_inputs=(x.clone(),))
        except FxtractError:
            snap.check(f"get_graph_node_names(strategy={strategy!r}) (refused)")
            continue
        snap.check(f"get_graph_node_names(strategy={strategy!r})")
        if strategy in ("fx", "hooks"):  # export is the slow one; a second process checks it too
            again = _quiet(get_graph_node_names, model, tk, strategy=strategy, example_inputs=(x.clone(),))
            assert names == again, f"{strategy}: names differ between two runs"
            STATS["names deterministic"] += 1
        for mode, lst in zip(("train", "eval"), names):
            assert len(lst) == len(set(lst)), (
                f"{strategy} {mode}: duplicate names {Counter(lst).most_common(3)}"
            )
        STATS["names unique"] += 1
        accepted[strategy] = names
    assert "hooks" in accepted and "auto" in accepted, "hooks and auto accept every model that runs"
    assert ("fx" in accepted) != gm.untraceable or gm.has_leaves, (
        "fx accepted iff the generator made it traceable"
    )
    return accepted


def check_warning(gm: GenModel, model, accepted) -> None:
    """``get_graph_node_names`` warns about train/eval differences exactly when the graphs differ."""
    if "fx" not in accepted:
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, eval_ = get_graph_node_names(model, gm.tracer_kwargs(model), strategy="fx")
    warned = any("train mode" in str(w.message) for w in caught)
    assert warned == (train != eval_), f"warned={warned} but graphs differ={train != eval_}"
    if gm.train_branch and not gm.has_leaves:
        assert train != eval_ or "if self.training" not in gm.source
    STATS["train/eval warning"] += 1


def check_torchvision(gm: GenModel, model, snap: Snapshot) -> None:
    """``naming="torchvision"`` equals torchvision's own names wherever torchvision traces the model."""
    if not gm.class_leaves:
        return
    from torchvision.models import feature_extraction as tv

    tk = gm.tracer_kwargs(model) or None
    try:
        expected = _quiet(tv.get_graph_node_names, model, tk)
    except Exception:  # torchvision crashes on it: nothing to compare
        return
    finally:
        model.eval()  # torchvision leaves the model in train mode when it crashes in eval
    got = _quiet(get_graph_node_names, model, tk, naming="torchvision", strategy="fx")
    snap.check("get_graph_node_names(naming='torchvision')")
    assert got == expected, "naming='torchvision' differs from torchvision"
    STATS["torchvision parity"] += 1


def check_oracle(gm: GenModel, model, snap: Snapshot, x, accepted) -> dict:
    """Every module call and module prefix, through every accepting strategy, equals the hook oracle."""
    extractors = {}
    paths = {p for p, _ in model.named_modules()}
    for strategy, names in accepted.items():
        leaves = frozenset()
        if strategy in ("fx", "auto"):
            # A leaf (the user's or an automatic one) is one node: the calls inside it are not names.
            leaves = frozenset((set(names[0]) | set(names[1])) & paths)
        calls, prefixes = hook_oracle(model, x, leaves)
        asked = {**calls, **prefixes}
        if not asked:
            continue
        ex = _quiet(
            create_feature_extractor,
            model,
            list(asked),
            tracer_kwargs=gm.tracer_kwargs(model),
            strategy=strategy,
            example_inputs=(x.clone(),),
        )
        snap.check(f"create_feature_extractor(strategy={strategy!r})")
        ex.eval()
        with torch.no_grad():
            out = ex(x.clone())
        snap.check(f"a forward of the {strategy} extractor")
        assert list(out) == list(asked), f"{strategy}: keys {list(out)} != {list(asked)}"
        if leaves and ex.strategy != "fx":
            # auto went on to export or hooks, which see every call (no leaf hides one): a
            # module shared by a leaf and its parent is numbered over all its calls there.
            calls, prefixes = hook_oracle(model, x, frozenset())
            everything = {**calls, **prefixes}
            asked = {name: everything[name] for name in asked}
        for name, value in asked.items():
            assert_same(value, out[name], f"{strategy} ({ex.strategy}): {name}")
            assert type(out[name]) is type(value), f"{strategy}: {name} is a {type(out[name]).__name__}"
        STATS[f"module calls/prefixes equal the oracle ({strategy})"] += len(asked)
        extractors[strategy] = (ex, out)
    return extractors


def check_interpreter(gm: GenModel, model, snap: Snapshot, x, accepted) -> None:
    """Every op-level node of the fx graph equals a plain Interpreter run of that graph."""
    if "fx" not in accepted:
        return
    tk = gm.tracer_kwargs(model)
    record, interp, names = interpreter_values(model, tk)
    with torch.no_grad():
        interp.run(x.clone())
    wanted = [n for n in names.values() if n in record]
    ex = _quiet(create_feature_extractor, model, wanted, tracer_kwargs=tk, strategy="fx")
    snap.check("create_feature_extractor(all op nodes)")
    with torch.no_grad():
        out = ex(x.clone())
    for name in wanted:
        assert_same(record[name], out[name], f"op node {name}")
    STATS["op nodes equal the interpreter"] += len(wanted)


def check_serialisation(extractors, x) -> None:
    """Each extractor, pickled, deep-copied or saved and loaded, returns what it returned."""
    for strategy, (ex, out) in extractors.items():
        buf = io.BytesIO()
        torch.save(ex, buf)
        buf.seek(0)
        copies = {
            "pickle": pickle.loads(pickle.dumps(ex)),
            "deepcopy": copy.deepcopy(ex),
            "torch.save": torch.load(buf, weights_only=False),
        }
        for how, other in copies.items():
            assert other.training == ex.training, f"{strategy}: {how} changed the mode"
            with torch.no_grad():
                again = other(x.clone())
            assert list(again) == list(out), f"{strategy}: {how} changed the keys"
            for k in out:
                assert_same(out[k], again[k], f"{strategy} after {how}: {k}")
            STATS["survives pickle/deepcopy/torch.save"] += 1
        assert_same(out, pickle.loads(pickle.dumps(out)), f"{strategy}: outputs through pickle")


def check_describe(gm: GenModel, model, snap: Snapshot, x) -> None:
    """``describe`` shapes equal the shapes of the real forward (hook oracle, interpreter)."""
    calls, _ = hook_oracle(model, x)
    infos = _quiet(describe, model, (x.clone(),), nodes="*", tracer_kwargs=gm.tracer_kwargs(model))
    snap.check("describe")
    record = {}
    if infos.strategy == "fx" and not infos.auto_leaves:
        record, interp, _ = interpreter_values(model, gm.tracer_kwargs(model))
        with torch.no_grad():
            interp.run(x.clone())
    checked = 0
    for info in infos:
        if info.kind == "module" and info.name in calls:
            assert info.shapes == _shapes(calls[info.name]), f"describe {info.name}: {info.shapes}"
            checked += 1
        elif info.name in record and info.kind != "output":
            assert info.shapes == _shapes(record[info.name]), f"describe {info.name}: {info.shapes}"
            checked += 1
    STATS["describe shapes equal the forward"] += checked


def check_model(gm: GenModel, *, export: bool = True) -> None:
    """Every property on one model; ``export=False`` leaves out the (slow) export strategy."""
    note(gm.repro())
    model = gm.build()
    x = gm.inputs()
    with torch.no_grad():
        model(x.clone())  # the generator's models run
    snap = Snapshot(model)
    strategies = STRATEGIES if export else tuple(s for s in STRATEGIES if s != "export")
    accepted = check_names(gm, model, snap, x, strategies)
    check_warning(gm, model, accepted)
    check_torchvision(gm, model, snap)
    extractors = check_oracle(gm, model, snap, x, accepted)
    check_interpreter(gm, model, snap, x, accepted)
    check_serialisation(extractors, x)
    check_describe(gm, model, snap, x)
    snap.check("the whole run")
    STATS["models"] += 1
    for s in accepted:
        STATS[f"models accepted by {s}"] += 1


# -- the CI slice and the sweep -----------------------------------------------------------------


# torch.export costs ~20x the other strategies on these models: one model in four gets it.
@settings(CHECK, derandomize=True, max_examples=40)
@given(models(), st.integers(0, 3))
def test_generated_models(gm, k):
    check_model(gm, export=k == 0)


# The sweep in chunks: pytest-xdist spreads them over the cores, and a failure (which hypothesis
# then shrinks) ends only its own chunk, so one run finds several defects.
SWEEP_CHUNKS = 20
SWEEP_EXAMPLES = int(os.environ.get("FXTRACT_SWEEP_EXAMPLES", "2000"))


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(SWEEP_CHUNKS))
@settings(CHECK, max_examples=max(1, SWEEP_EXAMPLES // SWEEP_CHUNKS))
@given(gm=models(), k=st.integers(0, 3))
def test_generated_sweep(chunk, gm, k):
    check_model(gm, export=k == 0)


@pytest.fixture(scope="module", autouse=True)
def _report_stats():
    yield
    report = os.environ.get("FXTRACT_SWEEP_REPORT")
    if report:  # one file per xdist worker: REPORT.gw0, REPORT.gw1 (tests/sweep_stats.py sums them)
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        path = Path(f"{report}.{worker}" if worker else report)
        path.write_text(json.dumps(dict(STATS), indent=1, sort_keys=True))


# -- names across processes ---------------------------------------------------------------------

_NAMES_SCRIPT = """
import json, sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[1])
from tests.generated import GenModel
import fxtract
out = []
for source in json.load(open(sys.argv[2])):
    gm = GenModel(source)
    m = gm.build()
    out.append(fxtract.get_graph_node_names(m, gm.tracer_kwargs(m), example_inputs=(gm.inputs(),)))
print(json.dumps(out))
"""


def test_generated_names_across_processes(tmp_path):
    sources: list[str] = []

    @settings(CHECK, derandomize=True, max_examples=25)
    @given(models())
    def collect(gm):
        sources.append(gm.source)

    collect()
    here = []
    for source in sources:
        gm = GenModel(source)
        m = gm.build()
        here.append(_quiet(get_graph_node_names, m, gm.tracer_kwargs(m), example_inputs=(gm.inputs(),)))
    (tmp_path / "sources.json").write_text(json.dumps(sources))
    root = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONHASHSEED": "123",
        "PYTHONPATH": os.pathsep.join([str(Path(fxtract.__file__).parent.parent), root]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _NAMES_SCRIPT, root, str(tmp_path / "sources.json")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    there = [tuple(pair) for pair in json.loads(proc.stdout)]
    assert [tuple(map(list, pair)) for pair in here] == there
