"""Strategy "hooks": module outputs of any model, captured by forward hooks during a real forward.

FX and torch.export need a forward they can trace; hooks only need the model to run, so
data-dependent control flow (``if x.sum() > 0``), ``int(x.shape[0])``, HF transformers and
detection models all work. The price is granularity: a name is one module call (``layer1``,
``layer1.0.relu_1``), never an op inside a module.

Names follow the FX tracer's rule: a module's qualified path for its first call, ``path_1``,
``path_2``... for later calls, skipping any suffixed name that is another module's path.
One :class:`_CallRecorder` names the calls for ``get_graph_node_names`` (a real forward
under ``torch.no_grad()``) and for ``describe`` (a forward on fake tensors; a real one only
when the model reads tensor values, with a warning).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import re
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Optional

import torch
from torch import nn
from torch.utils import _pytree as pytree

from .._checks import check_extractor_call, check_not_root, not_scriptable
from .._errors import (
    FxtractError,
    FxtractTypeError,
    FxtractValueError,
    NodeNotFoundError,
    NoModeRunsError,
    ReturnNodesError,
    ShapeInferenceError,
    StrategyError,
    did_you_mean,
    summarize,
)
from .._fake import (
    has_meta,
    model_placement,
    needs_values,
    param_count,
    quiet_fake_tensor_log,
    shapes_dtypes,
    to_meta,
)
from .._info import NodeInfo
from .._inputs import normalize_inputs
from .._model_state import ModelSnapshot, buffers_restored, stand_ins, training_mode
from .._naming import UniqueNamer, last_call_under
from .base import ModeViews, NoGraph, Request, other_modes

__all__ = ["HookFeatureExtractor", "HooksStrategy", "hook_node_names"]

# `path_<k>`: the (k+1)-th call of module `path` (k has no leading zero, as UniqueNamer writes it).
_LATER_CALL = re.compile(r"(.+)_([1-9][0-9]*)")
_LIST_HINT = "List the names with fxtract.get_graph_node_names(model, strategy='hooks', example_inputs=...)."


def hook_node_names(model: nn.Module, example_inputs: Any) -> tuple[list[str], list[str]]:
    """Names of the module calls of one forward of ``model``, for train and for eval mode.

    Each mode runs one forward under ``torch.no_grad()`` and lists the calls of every
    submodule (not the root) in the order they start. The model is left as it was: training
    flags, hooks and buffers (train mode updates BatchNorm's running statistics) are restored.

    Args:
        model: the model.
        example_inputs: a tensor, a tuple of positional arguments, a dict of keyword arguments
            or ``(args, kwargs)``. Names can depend on them (data-dependent control flow).

    Returns:
        ``(train_names, eval_names)``.

    Example:
        >>> import torch
        >>> relu = torch.nn.ReLU()
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), relu, relu)  # relu runs twice
        >>> hook_node_names(model, torch.zeros(1, 2))[1]
        ['0', '1', '1_1']
    """
    _check_model(model)
    args, kwargs = normalize_inputs(example_inputs, model)
    names: dict[str, list[str]] = {}
    errors: dict[str, Exception] = {}
    for mode in ("train", "eval"):
        try:
            names[mode] = _call_names(model, args, kwargs, mode == "train")
        except Exception as e:  # the model's own error (a detection model in train mode without targets)
            errors[mode] = e
    model_name = type(model).__name__
    if len(errors) == 2:
        why = "; ".join(f"{m} mode: {type(e).__name__}: {_first_line(e)}" for m, e in errors.items())
        first = errors["train" if model.training else "eval"]
        raise NoModeRunsError(
            f"strategy='hooks': the forward of {model_name} failed on example_inputs: {type(first).__name__}: "
            f"{_first_line(first)} ({model_name} does not run on these example_inputs in either mode ({why})). "
            "Pass example_inputs that its forward accepts (shapes, dtypes, argument names); "
            "fxtract.describe(model, example_inputs) names the module where it fails."
        ) from first
    for mode, e in errors.items():
        # One mode that cannot run on these inputs does not take the other mode's names with it (#11.3).
        warnings.warn(
            f"{model_name} does not run in {mode} mode on these example_inputs ({type(e).__name__}: "
            f"{_first_line(e)}); only the other mode's names are listed (strategy='hooks'). Give "
            f"example_inputs that the {mode}-mode forward accepts to list its names.",
            stacklevel=3,
        )
        names[mode] = []
    return names["train"], names["eval"]


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]


def _call_names(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], train: bool) -> list[str]:
    recorder = _CallRecorder(model)
    snapshot = ModelSnapshot(model)  # what the forward assigns (a cache) or train() resets
    try:
        with recorder.hooks(), buffers_restored(model), torch.no_grad(), training_mode(model, train):
            model(*args, **kwargs)
    finally:
        snapshot.restore()
    return [c.name for c in recorder.calls]


class _StopForward(BaseException):
    """Raised from a forward hook once every requested call has returned: skips the rest.

    A BaseException, so that ``except Exception`` in the model's own code cannot swallow it.
    """

    def __init__(self, run: _Run) -> None:
        super().__init__()
        self.run = run


class _Run:
    """The state of one extractor forward: names of the calls so far, and captured outputs."""

    def __init__(
        self, wanted: Mapping[str, str], reserved: list[str], containers: frozenset = frozenset()
    ) -> None:
        self.wanted = wanted
        self.containers = containers  # wanted paths of modules with no forward (a ModuleList)
        self.namer = UniqueNamer(reserved)
        self.thread = threading.get_ident()
        self.calls: dict[str, list[str]] = {}  # module path -> names of its calls, in start order
        self.running: dict[str, list[str]] = {}  # module path -> its calls started, not returned
        self.captured: dict[str, Any] = {}

    def pre_hook(self, path: str, module: nn.Module, inputs: Any) -> None:
        if threading.get_ident() != self.thread:  # another thread's forward of the same model
            return
        name = self.namer.claim(path, owns_base=True)
        self.calls.setdefault(path, []).append(name)
        self.running.setdefault(path, []).append(name)

    def hook(self, path: str, module: nn.Module, inputs: Any, output: Any) -> None:
        running = self.running.get(path)
        if threading.get_ident() != self.thread or not running:
            return
        name = running.pop()  # a stack: a module that calls itself returns in reverse order
        if name not in self.wanted:
            return
        if self.containers or len(self.captured) + 1 < len(self.wanted):
            # Later code may modify it in place (resnet's bn1 output goes through ReLU(inplace=True)).
            self.captured[name] = _clone(output)
        else:
            self.captured[name] = output  # nothing runs after this call: no copy needed
            raise _StopForward(self)

    def container_hook(self, name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        """A call of an item of a module with no forward (a ModuleList): the latest stands for it.

        Which item returns last is known only when the forward ends, so a forward that asks
        for such a path runs to the end.
        """
        if threading.get_ident() == self.thread:
            self.captured[name] = _clone(output)

    def not_called(self, name: str, path: str, mode: str) -> NodeNotFoundError:
        calls = self.calls.get(path)
        if calls:
            happened = f"`{path}` ran {len(calls)} time(s), as " + ", ".join(f"`{c}`" for c in calls)
        else:
            happened = f"`{path}` did not run at all"
        return NodeNotFoundError(
            f"`{name}` did not happen in this forward ({mode} mode): {happened}. "
            f"Module calls depend on the inputs and on train/eval mode. {_LIST_HINT}"
        )


def _clone(obj: Any) -> Any:
    """``obj`` with every tensor cloned (autograd kept), through tuples, lists, dicts and dataclasses."""
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):  # HF ModelOutput too
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}
        changed = {k: c for k, v in fields.items() if (c := _clone(v)) is not v}
        return dataclasses.replace(obj, **changed) if changed else obj
    if isinstance(obj, (list, tuple)):
        items = [_clone(v) for v in obj]
        if all(c is v for c, v in zip(items, obj)):
            return obj  # nothing to copy; also spares types whose constructor takes other arguments
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if isinstance(obj, dict):
        out = copy.copy(obj)  # keeps the dict's type (OrderedDict, defaultdict...)
        for k, v in obj.items():
            out[k] = _clone(v)
        return out
    return obj


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise FxtractTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")


def _module_of_call(model: nn.Module, name: str, paths: set[str]) -> str:
    """The path of the module whose call ``name`` denotes; raise if it denotes none."""
    if name in paths:
        return name
    check_not_root(name, type(model).__name__)
    later = _LATER_CALL.fullmatch(name)
    if later and later.group(1) in paths:
        return later.group(1)
    aliases = dict(model.named_modules(remove_duplicate=False))
    if name in aliases:  # a second path to a module that named_modules() lists under its first
        first = next(p for p, m in model.named_modules() if m is aliases[name])
        raise NodeNotFoundError(
            f"`{name}` is the same module as `{first}`; strategy hooks names its calls "
            f"`{first}`, `{first}_1`... {_LIST_HINT}"
        )
    parts = name.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:depth])
        if prefix in paths:
            raise StrategyError(
                f"`{name}` is an op inside `{prefix}`, which strategy hooks cannot split; "
                "use strategy='export' with example_inputs (or strategy='fx')"
            )
    raise NodeNotFoundError(
        f"`{name}` is not a module of {type(model).__name__}: strategy hooks returns module calls, "
        "named by the module's path (`path`, then `path_1`, `path_2`... for later calls); an op "
        f"outside every module needs strategy='export' or 'fx'.{did_you_mean(name, paths)} {_LIST_HINT}"
    )


def _has_no_forward(module: nn.Module) -> bool:
    """A ``ModuleList`` / ``ModuleDict``: never called itself, its items are."""
    return type(module).forward is nn.Module.forward


def _called_items(module: nn.Module) -> Iterator[nn.Module]:
    """The outermost submodules of a module with no forward that can be called."""
    for child in module.children():
        if _has_no_forward(child):
            yield from _called_items(child)
        else:
            yield child


def _check_return_nodes(return_nodes: Mapping[str, str], which: str) -> dict[str, str]:
    if not isinstance(return_nodes, Mapping):
        raise FxtractTypeError(
            f"{which} must be a dict of node name -> output key, got {type(return_nodes).__name__}."
        )
    out = dict(return_nodes)
    for name in out:
        if not isinstance(name, str):
            raise FxtractTypeError(f"{which}: node names must be str, got {name!r}.")
    if len(set(out.values())) != len(out):
        dup = next(k for k in out.values() if list(out.values()).count(k) > 1)
        raise ReturnNodesError(f"{which}: two nodes map to the same output key {dup!r}.")
    return out


class HookFeatureExtractor(nn.Module):
    """Returns the outputs of chosen module calls of ``model``, captured by forward hooks.

    Works on any model that runs, at module granularity. Each forward registers temporary
    hooks, runs the model in the extractor's train/eval mode (the model's own flags are
    restored afterwards) and stops the forward as soon as every requested call has returned,
    so an early layer costs a fraction of a full forward (the model's code after the last
    requested call does not run, ``finally`` blocks and ``with`` exits aside). Outputs are
    returned as the module returned them (tensor, tuple, dict, dataclass...); tensors that
    later code could modify in place are cloned (autograd kept).

    ``train()`` / ``eval()`` pick ``train_return_nodes`` / ``eval_return_nodes``; they do not
    change the wrapped model's flags.

    Args:
        model: the model; ``self.model`` holds it (parameters shared, not copied).
        train_return_nodes: module call name -> output key, used in train mode.
        eval_return_nodes: module call name -> output key, used in eval mode.

    Raises:
        NodeNotFoundError: a name is not a module call (at construction), or a requested call
            did not happen in a forward (at run time).
        StrategyError: a name is an op inside a module (``layer1.0.add``).

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
        >>> extractor = HookFeatureExtractor(model, {"0": "hidden"}, {"1": "hidden"}).eval()
        >>> out = extractor(torch.ones(4, 2))
        >>> list(out), out["hidden"].shape, bool((out["hidden"] >= 0).all())
        (['hidden'], torch.Size([4, 3]), True)
    """

    def __init__(
        self,
        model: nn.Module,
        train_return_nodes: Mapping[str, str],
        eval_return_nodes: Mapping[str, str],
    ) -> None:
        super().__init__()
        _check_model(model)
        self.model = model
        self.strategy = "hooks"
        self._reserved = [path for path, _ in model.named_modules()]
        paths = {path for path in self._reserved if path}
        self.train_return_nodes = _check_return_nodes(train_return_nodes, "train_return_nodes")
        self.eval_return_nodes = _check_return_nodes(eval_return_nodes, "eval_return_nodes")
        # node name -> path of the module it is a call of (the module that gets the hooks);
        # raises on a name that is not a module call
        self._module_paths = {
            name: _module_of_call(model, name, paths)
            for name in (*self.train_return_nodes, *self.eval_return_nodes)
        }
        self.training = model.training

    @property
    def return_nodes(self) -> dict[str, str]:
        """The node name -> output key dict of the current mode."""
        return self.train_return_nodes if self.training else self.eval_return_nodes

    def train(self, mode: bool = True) -> HookFeatureExtractor:
        """Set the extractor's mode only; the model runs in it during ``forward``."""
        if not isinstance(mode, bool):
            raise FxtractValueError(f"training mode is expected to be boolean (train(mode)), got {mode!r}.")
        self.training = mode
        return self

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Run the model on ``args``/``kwargs``; ``{output key: what that module call returned}``."""
        check_extractor_call(self, args, kwargs)
        nodes = self.return_nodes
        if not nodes:
            return {}
        paths = {name: self._module_paths[name] for name in nodes}
        containers = frozenset(n for n, p in paths.items() if _has_no_forward(self.model.get_submodule(p)))
        run = _Run(nodes, self._reserved, containers)
        handles = []
        try:
            for path in dict.fromkeys(p for n, p in paths.items() if n not in containers):
                module = self.model.get_submodule(path)
                handles.append(module.register_forward_pre_hook(partial(run.pre_hook, path)))
                handles.append(module.register_forward_hook(partial(run.hook, path)))
            for name in containers:
                for item in _called_items(self.model.get_submodule(paths[name])):
                    handles.append(item.register_forward_hook(partial(run.container_hook, name)))
            with training_mode(self.model, self.training):
                self.model(*args, **kwargs)
        except _StopForward as stop:
            if stop.run is not run:  # an enclosing extractor's stop: not ours to catch
                raise
        finally:
            for handle in handles:
                handle.remove()
        for name in nodes:
            if name not in run.captured:
                mode = "train" if self.training else "eval"
                if name in containers:
                    raise NodeNotFoundError(
                        f"`{name}` ({type(self.model.get_submodule(paths[name])).__name__}, no forward of its "
                        f"own) stands for the last call of its items, and none ran in this forward ({mode} "
                        f"mode). {_LIST_HINT}"
                    )
                raise run.not_called(name, paths[name], mode)
        return {key: run.captured[name] for name, key in nodes.items()}

    def extra_repr(self) -> str:
        return f"strategy='hooks', return_nodes={self.return_nodes}"

    def __prepare_scriptable__(self) -> None:  # torch.jit.script calls it first
        not_scriptable("hooks")


@dataclass
class _Call:
    """One module call seen by the hooks."""

    name: str
    path: str
    module_type: type
    parent: str
    shapes: tuple[tuple[int, ...], ...] = ()
    dtypes: tuple[str, ...] = ()


class _CallRecorder:
    """Forward hooks on every submodule: each call's name and output shapes (names and describe)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.namer = UniqueNamer(p for p, _ in model.named_modules())
        self.calls: list[_Call] = []
        self.stack: list[_Call] = []
        self.thread = threading.get_ident()

    @contextlib.contextmanager
    def hooks(self) -> Iterator[None]:
        handles = []
        try:
            for path, module in self.model.named_modules():
                if path:
                    handles.append(module.register_forward_pre_hook(partial(self._pre, path)))
                    handles.append(module.register_forward_hook(partial(self._post, path)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _pre(self, path: str, module: nn.Module, args: Any) -> None:
        if threading.get_ident() != self.thread:  # another thread's forward of the same model
            return
        parent = self.stack[-1].name if self.stack else ""
        call = _Call(self.namer.claim(path, owns_base=True), path, type(module), parent)
        self.calls.append(call)
        self.stack.append(call)

    def _post(self, path: str, module: nn.Module, args: Any, output: Any) -> None:
        if threading.get_ident() != self.thread or not self.stack:
            return
        call = self.stack.pop()
        call.shapes, call.dtypes = shapes_dtypes(output)  # no reference to the output is kept

    def where(self) -> str:
        """Where the forward stopped: the innermost module call still running."""
        if not self.stack:
            return f"in the top-level forward of {type(self.model).__name__}"
        call = self.stack[-1]
        return f"in module call {call.name!r} ({call.module_type.__name__})"


def _fake_forward(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``model(*args, **kwargs)`` with fake parameters, buffers and inputs (meta ones if the model is)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    on_meta, device = model_placement(model)
    if on_meta:
        args, kwargs = pytree.tree_map_only(torch.Tensor, to_meta, (args, kwargs))
    mode = FakeTensorMode(allow_non_fake_inputs=True)

    def to_fake(t: torch.Tensor) -> torch.Tensor:
        if t.is_meta and not on_meta:  # a meta example input: stand-in on the model's device
            with mode:
                return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device)
        return mode.from_tensor(t)

    args, kwargs = pytree.tree_map_only(torch.Tensor, to_fake, (args, kwargs))
    # The fake parameters stand in for the real ones: what forward does to them (batch-norm
    # statistics, ``self.count += 1``) never reaches the user's model.
    fake = (lambda t: mode.from_tensor(to_meta(t))) if on_meta else mode.from_tensor
    # The stand-ins are made before the fake mode is entered: from real (or meta) tensors.
    with quiet_fake_tensor_log(), stand_ins(model, fake):  # noqa: SIM117
        with mode:
            model(*args, **kwargs)


def _real_forward(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """One real forward under ``torch.no_grad()``; buffers, attributes and RNG state restored."""

    cuda = sorted(
        {t.device.index or 0 for t in (*model.parameters(), *model.buffers()) if t.device.type == "cuda"}
    )
    with torch.random.fork_rng(devices=cuda), buffers_restored(model), torch.no_grad():
        model(*args, **kwargs)


def _hook_calls(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], training: bool, allow_real: bool
) -> tuple[list[_Call], Optional[str]]:
    """The module calls of one forward in this mode, and why a real forward ran (``None``: it did not)."""
    reason = None
    for real in (False, True) if allow_real else (False,):
        recorder = _CallRecorder(model)
        # Forward may assign attributes (``self.cache = x``): no fake tensor may stay in the model.
        snapshot = ModelSnapshot(model)
        try:
            with recorder.hooks(), training_mode(model, training):
                if real:
                    _real_forward(model, args, kwargs)
                else:
                    _fake_forward(model, args, kwargs)
            return recorder.calls, reason
        except Exception as e:
            if real or not needs_values(e):
                raise _forward_error(model, recorder, e, real) from e
            if not allow_real:
                err = _forward_error(model, recorder, e, real)
                if isinstance(err, ShapeInferenceError):
                    err.reason = (
                        f"{recorder.where()}: it needs tensor values, and a real forward runs only in the "
                        "mode described"
                    )
                raise err from e
            reason = f"{type(model).__name__} cannot run on fake tensors ({recorder.where()}: {summarize(e)})"
            if model_placement(model)[0]:
                raise StrategyError(
                    f"describe() cannot infer the shapes of {type(model).__name__} with strategy='hooks': "
                    f"its forward needs tensor values ({recorder.where()}: {summarize(e)}), which fake tensors "
                    "do not have, and its parameters are on the meta device, so no real forward can run. "
                    "Load real weights (model.to_empty(device=...) and initialise), or make that code "
                    "depend on shapes only."
                ) from e
            if has_meta((args, kwargs)):
                raise StrategyError(
                    f"describe() cannot infer the shapes of {type(model).__name__} with strategy='hooks': "
                    f"its forward needs tensor values ({recorder.where()}: {summarize(e)}) and example_inputs "
                    "are on the meta device, so no real forward can run; pass real example inputs."
                ) from e
        finally:
            snapshot.restore()
    raise AssertionError("unreachable")  # pragma: no cover (the real forward returns or raises)


def _forward_error(model: nn.Module, recorder: _CallRecorder, e: Exception, real: bool) -> FxtractError:
    if isinstance(e, FxtractError):
        return e
    detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
    run = "a real forward" if real else "a forward on fake tensors"
    return ShapeInferenceError(
        f"cannot infer the shapes of {type(model).__name__} (strategy='hooks'): {run} failed "
        f"{recorder.where()}: {type(e).__name__}: {detail} (check example_inputs).",
        data_dependent=needs_values(e),
        reason=f"{recorder.where()}: {type(e).__name__}: {detail}"[:300],
        bad_inputs=True,
    )


class _HookView:
    """The module calls of one mode's forward, by name, in the order they started."""

    def __init__(self, model: nn.Module, calls: list[_Call]) -> None:
        self.model = model
        self.calls = {c.name: c for c in calls}
        self.names = list(self.calls)
        self.node_names = set(self.names)
        self.types = {c.name: c.module_type for c in calls}

    def info(self, name: str, modes: str) -> NodeInfo:
        call = self.calls[name]
        return NodeInfo(
            name=name,
            kind="module",
            target=call.module_type.__name__,
            shapes=call.shapes,
            dtypes=call.dtypes,
            params=param_count(self.model, call.path),
            modes=modes,
            parent=call.parent,
        )


def _hook_views(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], used: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """Each mode's module calls; ``{mode: why a real forward ran}``; ``{mode: why it failed}``.

    A real forward runs only for the modes in ``used``; the other mode, needed only for
    ``NodeInfo.modes``, runs on fake tensors or not at all.
    """
    views: dict[str, Any] = {}
    real: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for m in (*used, *other_modes(used)):
        try:
            calls, reason = _hook_calls(model, args, kwargs, m == "train", allow_real=m in used)
        except FxtractError as e:
            if m in used:
                raise
            reason = e.reason if isinstance(e, ShapeInferenceError) else ""
            views[m], skipped[m] = NoGraph(), reason or summarize(e)
            continue
        views[m] = _HookView(model, calls)
        if reason is not None:
            real[m] = reason
    return views, real, skipped


class HooksStrategy:
    """Module calls of the model's own forward; names and describe run it, an extractor does not."""

    name: ClassVar[str] = "hooks"
    needs_inputs: ClassVar[frozenset[str]] = frozenset({"node_names", "views"})

    def node_names(self, req: Request) -> tuple[list[str], list[str]]:
        return hook_node_names(req.model, req.example_inputs)

    def extractor(self, req: Request) -> _HooksBuilder:
        _check_model(req.model)
        return _HooksBuilder(req)

    def views(self, req: Request) -> ModeViews:
        views, real, skipped = _hook_views(req.model, *req.inputs(), req.modes)
        return ModeViews(views, skipped, real)


class _HooksBuilder:
    def __init__(self, req: Request) -> None:
        self.req = req

    def names(self, mode: str) -> tuple[list[str], dict[str, type]]:
        """The calls of one forward with ``example_inputs``; without, every submodule's path."""
        model = self.req.model
        if self.req.example_inputs is None:
            modules = [(p, m) for p, m in model.named_modules() if p]
            return [p for p, _ in modules], {p: type(m) for p, m in modules}
        recorder = _CallRecorder(model)
        args, kwargs = self.req.inputs()
        with (
            recorder.hooks(),
            buffers_restored(model),
            torch.no_grad(),
            training_mode(model, mode == "train"),
        ):
            model(*args, **kwargs)
        return [c.name for c in recorder.calls], {c.name: c.module_type for c in recorder.calls}

    def build(self, train_nodes: Mapping[str, str], eval_nodes: Mapping[str, str]) -> HookFeatureExtractor:
        return HookFeatureExtractor(self.req.model, dict(train_nodes), dict(eval_nodes))

    def feature_shapes(
        self, extractor: nn.Module, eval_nodes: Mapping[str, str]
    ) -> dict[str, tuple[Any, ...]]:
        """One eval-mode forward on fake tensors (a real one only if the model reads tensor values)."""
        calls, _ = _hook_calls(self.req.model, *self.req.inputs(), training=False, allow_real=True)
        by_name = {c.name: c for c in calls}
        shapes = {}
        for name in eval_nodes:
            call = by_name.get(name) or last_call_under(calls, name)
            shapes[name] = call.shapes[0] if call is not None and call.shapes else ()
        return shapes
