"""Hostile arguments to every public function and CLI command, generated from tables.

Each case either works or raises an :class:`FxtractError` that is also the builtin callers
catch (``TypeError`` for a wrong type, ``ValueError`` for a bad value, ...): never a bare
``AssertionError``, ``AttributeError``, ``KeyError`` or a torch traceback without fxtract's
message in front. CLI commands answer a user mistake with one ``Error: ...`` line and exit 1
(or click's usage error, exit 2), never a traceback.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from fxtract import (
    FxtractError,
    NodePathTracer,
    create_feature_extractor,
    describe,
    feature_info,
    get_graph_node_names,
    select_nodes,
)
from fxtract._cli import main

X = torch.randn(2, 4)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.add_module("conv(a)", nn.ReLU())
        self.add_module("λ", nn.Tanh())

    def forward(self, x):
        return self.λ(getattr(self, "conv(a)")(self.lin(x)))


class RaisesInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        raise RuntimeError("boom in forward")


class RaisesValueError(nn.Module):
    def forward(self, x):
        raise ValueError("bad input in forward")


class ReturnsNone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        self.lin(x)


class NoParameters(nn.Module):
    def forward(self, x):
        return x * 2


class MutatesInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        x.add_(1)
        return self.lin(x)


class ValueBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:
            x = x + 1
        return self.lin(x)


MODELS = {
    "net": Net,
    "raises": RaisesInForward,
    "raises-value": RaisesValueError,
    "returns-none": ReturnsNone,
    "no-params": NoParameters,
    "mutates-input": MutatesInput,
    "value-branch": ValueBranch,
}

# Hostile values of ``return_nodes``: (id, value, what a clear refusal subclasses; None: may work).
RETURN_NODES = [
    ("int", 3, TypeError),
    ("tensor", torch.zeros(1), TypeError),
    ("module", nn.ReLU(), TypeError),
    ("empty-list", [], ValueError),
    ("empty-dict", {}, ValueError),
    ("empty-string", [""], ValueError),
    ("none-entry", [None], TypeError),
    ("int-entry", [1], TypeError),
    ("none-key", {None: "a"}, TypeError),
    ("none-value", {"lin": None}, TypeError),
    ("int-value", {"lin": 1}, None),  # output keys are kept as given (#12.4): out[1]
    ("unknown", ["nope"], ValueError),
    ("unknown-unicode", ["λλ"], ValueError),
    ("duplicate", ["lin", "lin"], None),
    ("duplicate-keys", {"lin": "a", "λ": "a"}, ValueError),
    ("overlapping", ["lin", "l*"], None),
    ("glob-nothing", ["zz*"], ValueError),
    ("bad-regex", ["re:("], ValueError),
    ("regex-name", ["conv(a)"], None),
    ("unicode-name", ["λ"], None),
    ("nested-list", [["lin"]], TypeError),
    ("bytes", [b"lin"], TypeError),
    ("set", {"lin"}, None),
    ("huge-list", [f"n{i}" for i in range(5000)], ValueError),
]

STRATEGY_ARGS = [
    ("strategy-unknown", {"strategy": "magic"}, ValueError),
    ("strategy-int", {"strategy": 1}, (TypeError, ValueError)),
    ("strategy-none", {"strategy": None}, (TypeError, ValueError)),
    ("naming-unknown", {"naming": "tv"}, ValueError),
    ("export-no-inputs", {"strategy": "export"}, ValueError),
    ("hooks-no-inputs", {"strategy": "hooks"}, None),  # hooks run no forward to build
    ("tracer-kwargs-list", {"tracer_kwargs": ["leaf_modules"]}, TypeError),
    ("tracer-kwargs-unknown", {"tracer_kwargs": {"nope": 1}}, TypeError),
    ("leaf-none", {"tracer_kwargs": {"leaf_modules": [None]}}, TypeError),
    ("leaf-int", {"tracer_kwargs": {"leaf_modules": 3}}, TypeError),
    ("leaf-pattern-nothing", {"tracer_kwargs": {"leaf_modules": ["zz*"]}}, ValueError),
    ("concrete-args-list", {"concrete_args": [1]}, TypeError),
    ("concrete-args-unknown", {"concrete_args": {"nope": 1}}, (TypeError, ValueError)),
]

# Hostile example inputs, with the model they go to: (id, inputs, refusal; None: may work).
INPUTS = [
    ("zero-size", torch.randn(0, 4), None),
    ("wrong-width", torch.randn(2, 5), (ValueError, RuntimeError)),
    # Fake tensors (describe, export) do not check matmul dtypes: these may be described.
    ("float64", torch.randn(2, 4, dtype=torch.float64), None),
    ("int64", torch.ones(2, 4, dtype=torch.long), None),
    ("meta-device", torch.empty(2, 4, device="meta"), None),
    ("huge-meta", torch.empty(2**31, 4, device="meta"), None),
    ("string", "not a tensor", (TypeError, ValueError, RuntimeError)),
    ("none-in-tuple", (None,), (TypeError, ValueError, RuntimeError)),
    ("too-many", (X, X), (TypeError, ValueError, RuntimeError)),
    ("empty-tuple", (), (TypeError, ValueError, RuntimeError)),
    ("unknown-kwarg", {"nope": X}, (TypeError, ValueError, RuntimeError)),
]


def expect(call, refusal) -> str:
    """Run ``call``; a refusal must be an FxtractError that is also ``refusal``. Returns the outcome."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call()
        except FxtractError as e:
            if refusal is not None:
                assert isinstance(e, refusal), f"{type(e).__name__} is not a {refusal}: {e}"
            assert str(e).strip(), "an error without a message"
            return "refused"
        except Exception as e:
            raise AssertionError(f"raw {type(e).__name__} escaped: {e}") from e
    assert refusal in (None, ()), f"expected a refusal ({refusal}), got a result"
    return "worked"


def _extract(model, nodes, *, run=True, **kw):
    ex = create_feature_extractor(model, nodes, **kw)
    if run:
        ex.eval()
        with torch.no_grad():
            ex(X.clone())


def case(call, refusal, id):
    return pytest.param(call, refusal, id=id)


# -- the tables, crossed ------------------------------------------------------------------------

CASES: list = []
for (rid, nodes, refusal), strategy in itertools.product(RETURN_NODES, ("fx", "hooks", "auto")):
    kw = {"strategy": strategy, "example_inputs": (X,)}
    CASES.append(case(lambda n=nodes, kw=kw: _extract(Net(), n, **kw), refusal, id=f"cfe-{rid}-{strategy}"))
    CASES.append(
        case(
            lambda n=nodes, s=strategy: describe(Net(), (X,), nodes=n, strategy=s),
            refusal
            if rid not in ("empty-list", "empty-dict", "duplicate-keys", "none-value", "int-value")
            else (),
            id=f"describe-{rid}-{strategy}",
        )
    )
    CASES.append(
        case(
            lambda n=nodes, s=strategy: feature_info(Net(), n, (X,), strategy=s),
            refusal
            if rid not in ("empty-list", "empty-dict", "duplicate-keys", "none-value", "int-value")
            else None,
            id=f"feature_info-{rid}-{strategy}",
        )
    )
for rid, nodes, refusal in RETURN_NODES:
    CASES.append(
        case(
            lambda n=nodes: select_nodes(n, ["x", "lin", "conv(a)", "λ"], strict=True),
            refusal
            if rid not in ("empty-list", "empty-dict", "duplicate-keys", "none-value", "int-value")
            else (),
            id=f"select_nodes-{rid}",
        )
    )
for rid, kw, refusal in STRATEGY_ARGS:
    CASES.append(case(lambda kw=kw: _extract(Net(), ["lin"], **kw), refusal, id=f"cfe-{rid}"))
    CASES.append(case(lambda kw=kw: get_graph_node_names(Net(), **kw), refusal, id=f"names-{rid}"))
    dkw = {k: v for k, v in kw.items() if k not in ("naming", "concrete_args")}
    if dkw:
        CASES.append(case(lambda kw=dkw: describe(Net(), None, **kw), refusal, id=f"describe-{rid}"))
for (iid, inputs, refusal), strategy in itertools.product(INPUTS, ("fx", "export", "hooks", "auto")):
    args = inputs if isinstance(inputs, (tuple, dict)) else (inputs,)
    CASES.append(
        case(
            lambda i=inputs, s=strategy: _extract(Net(), ["lin"], strategy=s, example_inputs=i),
            refusal if strategy == "export" else None,  # fx never runs example_inputs, hooks not to build
            id=f"cfe-input-{iid}-{strategy}",
        )
    )
    CASES.append(
        case(
            lambda i=inputs, s=strategy: describe(Net(), i, strategy=s),
            refusal,
            id=f"describe-input-{iid}-{strategy}",
        )
    )
    CASES.append(
        case(
            lambda i=inputs, s=strategy: get_graph_node_names(Net(), strategy=s, example_inputs=i),
            None if strategy in ("fx", "auto") else refusal,  # auto: fx traces Net
            id=f"names-input-{iid}-{strategy}",
        )
    )
    del args
for (mid, cls), strategy in itertools.product(MODELS.items(), ("fx", "export", "hooks", "auto")):
    CASES.append(
        case(
            lambda c=cls, s=strategy: get_graph_node_names(c(), strategy=s, example_inputs=(X.clone(),)),
            None,
            id=f"names-model-{mid}-{strategy}",
        )
    )
    CASES.append(
        case(
            lambda c=cls, s=strategy: describe(c(), (X.clone(),), strategy=s),
            None,
            id=f"describe-model-{mid}-{strategy}",
        )
    )
    CASES.append(
        case(
            lambda c=cls, s=strategy: _extract(
                c(), ["lin"], run=False, strategy=s, example_inputs=(X.clone(),)
            ),
            None,
            id=f"cfe-model-{mid}-{strategy}",
        )
    )
# Not a model at all.
for bad_id, bad in [("none", None), ("string", "resnet18"), ("class", Net)]:
    for fid, fn in [
        ("names", lambda m: get_graph_node_names(m)),
        ("cfe", lambda m: create_feature_extractor(m, ["lin"])),
        ("describe", lambda m: describe(m, (X,))),
        ("feature_info", lambda m: feature_info(m, ["lin"], (X,))),
        ("tracer", lambda m: NodePathTracer().trace(m)),
    ]:
        CASES.append(case(lambda f=fn, b=bad: f(b), TypeError, id=f"{fid}-model-{bad_id}"))
for tid, kw, refusal in [
    ("naming-unknown", {"naming": "x"}, ValueError),
    ("leaf-none", {"leaf_modules": [None]}, TypeError),
    ("leaf-int", {"leaf_modules": 3}, TypeError),
    ("leaf-nothing", {"leaf_modules": ["zz*"]}, ValueError),
]:
    CASES.append(case(lambda kw=kw: NodePathTracer(**kw).trace(Net()), refusal, id=f"tracer-{tid}"))
for mid, cls in MODELS.items():
    CASES.append(case(lambda c=cls: NodePathTracer().trace(c()), None, id=f"tracer-model-{mid}"))
CASES.append(case(lambda: NodePathTracer().trace(lambda x: x + 1), None, id="tracer-model-function"))
for sid, kw, refusal in [
    ("patterns-int", {"patterns": 3}, TypeError),
    ("names-none", {"names": None}, TypeError),
    ("names-int", {"names": 3}, TypeError),
    ("exclude-none-entry", {"exclude": [None]}, TypeError),
    ("types-not-type", {"types": "Linear"}, TypeError),
    ("types-without-map", {"types": nn.Linear}, ValueError),
    ("types-none-entry", {"types": [None]}, TypeError),
]:
    call = {"patterns": ["lin"], "names": ["lin"], **kw}
    CASES.append(
        case(
            lambda c=call: select_nodes(c.pop("patterns"), c.pop("names"), **c),
            refusal,
            id=f"select_nodes-{sid}",
        )
    )
for fid, kw, refusal in [
    ("mode-unknown", {"mode": "test"}, ValueError),
    ("mode-none", {"mode": None}, (TypeError, ValueError)),
    ("exclude-int", {"exclude": 3}, TypeError),
    ("exclude-everything", {"exclude": ["*"]}, None),
]:
    CASES.append(case(lambda kw=kw: describe(Net(), (X,), **kw), refusal, id=f"describe-{fid}"))
    if fid != "exclude-int" and fid != "exclude-everything":
        CASES.append(
            case(lambda kw=kw: feature_info(Net(), ["lin"], (X,), **kw), refusal, id=f"feature_info-{fid}")
        )


# -- the dataset tier: fxtract.extract and fxtract.open_features ------------------------------

IMAGES = torch.randn(6, 3, 8, 8)


def _conv():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()


def _extract_to(tmp, **kw):
    import tempfile

    import fxtract

    args = {"nodes": ["1"], "progress": False, **kw}
    data = args.pop("data", IMAGES)
    model = args.pop("model", _conv())
    out = args.pop("out", tempfile.mkdtemp(prefix="fxtract-hostile-"))
    fxtract.extract(model, data, out, **args)


EXTRACT_ARGS = [
    ("data-none", {"data": None}, (TypeError, ValueError)),
    ("data-empty-list", {"data": []}, ValueError),
    ("data-empty-tensor", {"data": torch.randn(0, 3, 8, 8)}, ValueError),
    ("data-missing-path", {"data": "/nonexistent/dir"}, FileNotFoundError),
    ("data-unicode-path", {"data": "/nonexistent/λ-图"}, FileNotFoundError),
    ("data-int", {"data": 3}, (TypeError, ValueError)),
    ("model-none", {"model": None}, TypeError),
    ("model-string", {"model": "resnet18"}, TypeError),
    ("model-raises", {"model": RaisesInForward()}, None),
    ("model-returns-none", {"model": ReturnsNone()}, None),
    ("model-no-params", {"model": NoParameters(), "nodes": None}, None),
    ("nodes-empty", {"nodes": []}, ValueError),
    ("nodes-unknown", {"nodes": ["nope"]}, ValueError),
    ("nodes-none-entry", {"nodes": [None]}, TypeError),
    ("nodes-duplicate", {"nodes": ["1", "1"]}, None),
    ("batch-size-zero", {"batch_size": 0}, ValueError),
    ("batch-size-negative", {"batch_size": -1}, ValueError),
    ("batch-size-string", {"batch_size": "8"}, (TypeError, ValueError)),
    ("num-workers-negative", {"num_workers": -1}, ValueError),
    ("device-unknown", {"device": "nodevice"}, ValueError),
    ("device-absent", {"device": "cuda:7"}, (ValueError, RuntimeError)),
    ("dtype-unknown", {"dtype": "int8"}, ValueError),
    ("pool-unknown", {"pool": "median"}, ValueError),
    ("pool-unknown-node", {"pool": {"nope": "avg"}}, ValueError),
    ("format-unknown", {"format": "csv"}, ValueError),
    ("shard-size-zero", {"shard_size": 0}, ValueError),
    ("on-error-unknown", {"on_error": "ignore"}, ValueError),
    ("num-shards-zero", {"num_shards": 0}, ValueError),
    ("shard-index-out-of-range", {"shard_index": 3}, ValueError),
    ("out-is-a-file", {"out": __file__}, (ValueError, RuntimeError, OSError)),
    ("out-none", {"out": None}, (TypeError, ValueError)),
]
for eid, kw, refusal in EXTRACT_ARGS:
    CASES.append(case(lambda kw=kw: _extract_to(None, **kw), refusal, id=f"extract-{eid}"))
for oid, arg, refusal in [
    ("none", None, (TypeError, ValueError)),
    ("missing", "/nonexistent/store", (RuntimeError, FileNotFoundError)),  # StoreError is a RuntimeError
    ("a-file", __file__, (RuntimeError, ValueError)),
    ("not-a-store", str(torch.__path__[0]), (RuntimeError, ValueError)),
    ("int", 3, (TypeError, ValueError)),
]:
    CASES.append(
        case(lambda a=arg: __import__("fxtract").open_features(a), refusal, id=f"open_features-{oid}")
    )


@pytest.mark.parametrize(("call", "refusal"), CASES)
def test_hostile_argument(call, refusal):
    expect(call, refusal)


def test_hostile_case_count():
    assert len(CASES) >= 300  # the tables above, crossed with the strategies


def test_hostile_calls_leave_the_model_unchanged():
    for cls in MODELS.values():
        model = cls().eval()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        for strategy in ("fx", "export", "hooks", "auto"):
            for call in (
                lambda model=model, strategy=strategy: describe(model, (X.clone(),), strategy=strategy),
                lambda model=model, strategy=strategy: get_graph_node_names(
                    model, strategy=strategy, example_inputs=(X.clone(),)
                ),
                lambda model=model, strategy=strategy: create_feature_extractor(
                    model, ["lin"], strategy=strategy, example_inputs=(X.clone(),)
                ),
            ):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    with contextlib.suppress(Exception):  # whatever the outcome, the model is as it was
                        call()
                assert not any(m.training for m in model.modules()), (cls.__name__, strategy)
                assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), (
                    cls.__name__,
                    strategy,
                )


# -- the CLI ------------------------------------------------------------------------------------

MODEL_FILE = """
import torch
from torch import nn


def build():
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU())


def raises():
    raise RuntimeError("factory failed")


def not_a_model():
    return 3


class Boom(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom in forward")


def boom():
    return Boom()
"""

CLI_ARGS = [
    ("no-model", [], 2),
    ("empty-spec", [""], 1),
    ("unknown-library", ["nolib:resnet18"], 1),
    ("unknown-torchvision", ["torchvision:resnet_nope"], 1),
    ("unicode-spec", ["torchvision:résnet"], 1),
    ("missing-file", ["nofile.py:build"], 1),
    ("missing-factory", ["{file}:nope"], 1),
    ("factory-raises", ["{file}:raises"], 1),
    ("factory-not-a-model", ["{file}:not_a_model"], 1),
    ("forward-raises", ["{file}:boom", "--input-size", "4"], 1),
    ("input-size-letters", ["{file}:build", "--input-size", "a,b"], 1),
    ("input-size-zero", ["{file}:build", "--input-size", "0"], None),
    ("input-size-negative", ["{file}:build", "--input-size", "-1"], 1),
    ("input-size-empty", ["{file}:build", "--input-size", ""], 1),
    ("input-size-wrong", ["{file}:build", "--input-size", "5", "--shapes"], 1),
    ("input-size-huge", ["{file}:build", "--input-size", "99999999999", "--shapes"], 1),
    ("mode-unknown", ["{file}:build", "--mode", "test"], 2),
    ("strategy-unknown", ["{file}:build", "--strategy", "magic"], 2),
    ("weights-missing-file", ["{file}:build", "--weights", "nofile.pt"], 1),
    ("weights-not-a-state-dict", ["{file}:build", "--weights", "{file}"], 1),
]
NODES_ARGS = [
    ("filter-nothing", ["{file}:build", "--filter", "zz*"], 1),
    ("filter-bad-regex", ["{file}:build", "--filter", "re:("], 1),
    ("filter-unicode", ["{file}:build", "--filter", "λ"], None),
    ("depth-zero", ["{file}:build", "--tree", "--depth", "0"], 2),
]
DESCRIBE_ARGS = [
    ("nodes-nothing", ["{file}:build", "--nodes", "zz*"], 1),
    ("nodes-bad-regex", ["{file}:build", "--nodes", "re:("], 1),
    ("exclude-everything", ["{file}:build", "--exclude", "*"], None),
    ("nodes-unknown", ["{file}:build", "--nodes", "nope", "--input-size", "4"], 1),
]
EXTRACT_CLI = [
    ("no-out", ["{file}:build", "{data}", "--nodes", "0"], 2),
    ("no-nodes", ["{file}:build", "{data}", "--out", "{out}"], 2),
    ("missing-data", ["{file}:build", "/nonexistent", "--nodes", "0", "--out", "{out}"], 1),
    ("unknown-node", ["{file}:build", "{data}", "--nodes", "nope", "--out", "{out}"], 1),
    ("bad-pool", ["{file}:build", "{data}", "--nodes", "0", "--out", "{out}", "--pool", "median"], 1),
    ("bad-device", ["{file}:build", "{data}", "--nodes", "0", "--out", "{out}", "--device", "nodevice"], 1),
    ("batch-zero", ["{file}:build", "{data}", "--nodes", "0", "--out", "{out}", "--batch-size", "0"], 2),
    ("shard-index", ["{file}:build", "{data}", "--nodes", "0", "--out", "{out}", "--shard-index", "4"], 1),
    ("forward-raises", ["{file}:boom", "{data}", "--nodes", "x", "--out", "{out}"], 1),
]
INFO_CLI = [
    ("missing", ["/nonexistent"], 2),
    ("not-a-store", ["{tmp}"], 1),
]
CLI_CASES = [
    pytest.param(
        cmd,
        args,
        code,
        id=f"{cmd}-{cid}",
    )
    for cmd in ("nodes", "describe")
    for cid, args, code in CLI_ARGS + (NODES_ARGS if cmd == "nodes" else DESCRIBE_ARGS)
] + [
    pytest.param(cmd, args, code, id=f"{cmd}-{cid}")
    for cmd, table in (("extract", EXTRACT_CLI), ("info", INFO_CLI))
    for cid, args, code in table
]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "models.py"
    path.write_text(MODEL_FILE)
    return path


@pytest.mark.parametrize(("command", "args", "code"), CLI_CASES)
def test_hostile_cli(command, args, code, model_file):
    tmp = model_file.parent
    data = tmp / "data.pt"
    if not data.exists():
        torch.save(torch.randn(4, 4), data)
    fill = {"{file}": str(model_file), "{data}": str(data), "{out}": str(tmp / "out"), "{tmp}": str(tmp)}
    argv = [command]
    for a in args:
        for k, v in fill.items():
            a = a.replace(k, v)
        argv.append(a)
    if command == "describe":  # describe always computes shapes
        argv = [a for a in argv if a != "--shapes"]
    result = CliRunner().invoke(main, argv, env={"TQDM_DISABLE": "1"})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    if code is None:  # may work; a refusal is still one Error: line
        assert result.exit_code in (0, 1, 2), result.output
    elif code == 1:  # a user error: one Error: line (a bad option value is click's exit 2)
        assert result.exit_code in (1, 2), result.output
    else:
        assert result.exit_code == code, result.output
    if result.exit_code in (1, 2):
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1, result.stderr
