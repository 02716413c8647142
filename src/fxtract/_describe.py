"""What every node of a model computes: kind, target, output shapes, parameters.

Shapes come from running the model on fake tensors
(``torch._subclasses.fake_tensor.FakeTensorMode``), or on ``meta`` tensors when the
model lives on the ``meta`` device: no activation is ever allocated and the model's
parameters and buffers are never read or written, so a model of billions of
parameters built under ``with torch.device("meta"):`` is described in seconds.

Three strategies name the nodes, as in :func:`fxtract.create_feature_extractor`:

- ``"fx"``: fxtract's FX tracer; the graph then runs on fake (or meta) tensors;
- ``"export"``: ``torch.export`` (non-strict), which records a fake value for every node;
- ``"hooks"``: module granularity; the model's own ``forward`` runs on fake tensors with
  forward hooks recording each module call. A ``forward`` that reads tensor values
  (``if x.sum() > 0``) cannot run on fake tensors: then, and only for real (non-meta)
  parameters, one real forward runs under ``torch.no_grad()``, with a warning.

``"auto"`` tries fx, FX with automatic leaves, export, then hooks, like
``create_feature_extractor``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Optional

import torch
from torch import fx, nn
from torch.utils import _pytree as pytree

from ._errors import (
    FxtractError,
    FxtractTypeError,
    FxtractValueError,
    NodeNotFoundError,
    StrategyError,
    TraceError,
)
from ._fallback import _needs_inputs, _short, _warn_fallback, _with_auto_leaves, check_strategy
from ._inputs import normalize_inputs
from ._naming import (
    ModuleCall,
    NodePathTracer,
    _ModelSnapshot,
    _UniqueNamer,
    last_call_under,
    trace_modes,
    training_mode,
)
from ._select import Patterns, select_nodes

__all__ = ["NodeInfo", "NodeInfoList", "describe", "feature_info", "names_in_order"]

MODES = ("train", "eval", "both")

_KINDS = {
    "placeholder": "input",
    "call_module": "module",
    "call_function": "function",
    "call_method": "method",
    "get_attr": "attribute",
    "output": "output",
}


@dataclass(frozen=True)
class NodeInfo:
    """One node of a traced model (or one module call), as :func:`describe` reports it.

    Attributes:
        name: the node's name, as ``create_feature_extractor`` accepts it.
        kind: ``"input"``, ``"module"``, ``"function"``, ``"method"``, ``"attribute"`` or
            ``"output"``. Module calls that FX traces through (``layer1``) are ``"module"``
            too: their output is what the call returned. With strategy ``"export"`` a node
            is ``"input"``, ``"module"`` (the value a module call returned) or
            ``"function"`` (an ATen op); with ``"hooks"`` every node is a ``"module"`` call.
        target: the module's class name, the function's qualified name
            (``torch.flatten``, ``operator.add``; ``aten.conv2d.default`` with export), the
            method name or the attribute path.
        shapes: the shape of every tensor in the output (nested outputs, dataclasses and
            Hugging Face ``ModelOutput`` included, flattened in pytree order); empty when
            shapes were not computed or the output holds no tensor. With export, a size that
            depends on tensor values (``nonzero``) is the symbol's name (``"u0"``).
        dtypes: the dtype of each of those tensors (``"float32"``).
        params: number of parameters of the module (module nodes only, else 0).
        modes: ``"both"`` when the node is in the train and the eval graph, else
            ``"train"`` or ``"eval"``.
        parent: name of the enclosing module call (``""`` at the top level).
    """

    name: str
    kind: str
    target: str
    shapes: tuple[tuple[int, ...], ...] = ()
    dtypes: tuple[str, ...] = ()
    params: int = 0
    modes: str = "both"
    parent: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (shapes as lists).

        Example:
            >>> NodeInfo("fc", "module", "Linear", ((1, 2),), ("float32",), 6).to_dict()["shapes"]
            [[1, 2]]
        """
        return {
            "name": self.name,
            "kind": self.kind,
            "target": self.target,
            "shapes": [list(s) for s in self.shapes],
            "dtypes": list(self.dtypes),
            "params": self.params,
            "modes": self.modes,
            "parent": self.parent,
        }


class NodeInfoList(list):  # type: ignore[type-arg]
    """What :func:`describe` returns: a ``list`` of :class:`NodeInfo`, and how it was computed.

    It compares, slices, iterates and pickles as a plain list; the attributes say which
    strategy named the nodes and computed the shapes.

    Attributes:
        strategy: ``"fx"``, ``"export"`` or ``"hooks"``: the strategy used (with
            ``strategy="auto"``, the first that worked).
        auto_leaves: ``{module path: why}``: modules FX could not trace that became leaves
            (``strategy="auto"``); empty otherwise.
        real_forward: the modes (``"train"``, ``"eval"``) in which strategy ``"hooks"`` had
            to run a real forward (under ``torch.no_grad()``) because the model cannot run on
            fake tensors; empty when nothing real ran.

    Example:
        >>> infos = NodeInfoList([NodeInfo("fc", "module", "Linear")], strategy="hooks")
        >>> infos.strategy, infos == [NodeInfo("fc", "module", "Linear")]
        ('hooks', True)
    """

    def __init__(
        self,
        infos: Iterable[NodeInfo] = (),
        *,
        strategy: str = "fx",
        auto_leaves: Optional[dict[str, str]] = None,
        real_forward: tuple[str, ...] = (),
    ) -> None:
        super().__init__(infos)
        self.strategy = strategy
        self.auto_leaves = dict(auto_leaves or {})
        self.real_forward = tuple(real_forward)

    def __repr__(self) -> str:
        return f"NodeInfoList({list.__repr__(self)}, strategy={self.strategy!r})"


# ---------------------------------------------------------------------------------------------
# Names


def names_in_order(tracer: NodePathTracer) -> tuple[list[str], dict[str, type]]:
    """Every selectable name of a traced graph in execution order, and the module-call types.

    Node names come in graph order. The name of a module call that FX traced through
    (``layer1``, ``layer1_1`` for a second call) comes right after the last node created
    inside the call, inner calls before outer ones, so ``layer1.1`` precedes ``layer1``.

    Returns:
        ``(names, {module-call name: module class})``.

    Example:
        >>> import torch
        >>> from fxtract._naming import NodePathTracer
        >>> m = torch.nn.Sequential(torch.nn.Sequential(torch.nn.ReLU()), torch.nn.Tanh())
        >>> tracer = NodePathTracer()
        >>> _ = tracer.trace(m)
        >>> names_in_order(tracer)[0]
        ['input', '0.0', '0', '1']
    """
    node_names = list(tracer.node_to_qualname.values())
    position = {node: i for i, node in enumerate(tracer.node_to_qualname)}
    # The last node created inside each call, its nested calls included.
    last: dict[int, int] = {}
    for node, i in position.items():
        call = tracer.node_to_call.get(node)
        while call is not None:
            last[id(call)] = i
            call = call.parent
    keyed: list[tuple[int, int, int, str]] = [(i, 0, 0, name) for i, name in enumerate(node_names)]
    types: dict[str, type] = {}
    seen = set(node_names)
    for order, call in enumerate(tracer.module_calls):
        types[call.name] = call.module_type
        if call.name in seen:  # a leaf call: its node has the same name
            continue
        seen.add(call.name)
        end = last.get(id(call))
        if end is None:  # the call created no node (it returns an input as is)
            end = max((position.get(n, -1) for n in _output_nodes(call)), default=-1)
        keyed.append((end, 1, order, call.name))
    keyed.sort()
    return [k[3] for k in keyed], types


def _output_nodes(call: ModuleCall) -> list[fx.Node]:
    nodes: list[fx.Node] = []

    def visit(x: Any) -> Any:
        if isinstance(x, fx.Proxy):
            nodes.append(x.node)
        return x

    try:
        fx.node.map_aggregate(call.output, visit)
    except Exception:  # an exotic container: no nodes to report
        return []
    return nodes


def _merge_orders(first: Sequence[str], second: Sequence[str]) -> list[str]:
    """``first``, with the names only in ``second`` inserted after their predecessor there."""
    present = set(first)
    after: dict[Optional[str], list[str]] = {}
    anchor: Optional[str] = None
    for name in second:
        if name not in present:
            after.setdefault(anchor, []).append(name)
        anchor = name
    out = list(after.get(None, ()))
    for name in first:
        out.append(name)
        out.extend(_chain(name, after))
    return out


def _chain(name: str, after: dict[Optional[str], list[str]]) -> Iterable[str]:
    for extra in after.get(name, ()):
        yield extra
        yield from _chain(extra, after)


# ---------------------------------------------------------------------------------------------
# One traced graph


class _GraphView:
    """The nodes and module calls of one traced graph, by name."""

    def __init__(self, model: nn.Module, tracer: NodePathTracer, graph: fx.Graph) -> None:
        self.model = model
        self.tracer = tracer
        self.graph = graph
        self.names, self.types = names_in_order(tracer)
        self.node_names = set(tracer.node_to_qualname.values())
        self.nodes = {name: node for node, name in tracer.node_to_qualname.items()}
        self.calls = {c.name: c for c in tracer.module_calls}
        self.values: dict[fx.Node, tuple[tuple[tuple[int, ...], ...], tuple[str, ...]]] = {}

    def info(self, name: str, modes: str) -> NodeInfo:
        node = self.nodes.get(name)
        if node is not None:
            call = self.tracer.node_to_call.get(node)
            if node.op == "call_module" and call is not None and call.leaf:
                call = call.parent
            shapes, dtypes = self.values.get(node, ((), ()))
            return NodeInfo(
                name=name,
                kind=_KINDS.get(node.op, node.op),
                target=self._target(node),
                shapes=shapes,
                dtypes=dtypes,
                params=_param_count(self.model, node.target) if node.op == "call_module" else 0,
                modes=modes,
                parent=call.name if call is not None else "",
            )
        call = self.calls[name]
        shapes_list: list[tuple[int, ...]] = []
        dtypes_list: list[str] = []
        for leaf in pytree.tree_leaves(_unwrap(call.output)):
            if isinstance(leaf, fx.Node):
                s, d = self.values.get(leaf, ((), ()))
                shapes_list += s
                dtypes_list += d
            elif isinstance(leaf, torch.Tensor):
                shapes_list.append(tuple(leaf.shape))
                dtypes_list.append(_dtype_name(leaf.dtype))
        return NodeInfo(
            name=name,
            kind="module",
            target=call.module_type.__name__,
            shapes=tuple(shapes_list),
            dtypes=tuple(dtypes_list),
            params=_param_count(self.model, call.path),
            modes=modes,
            parent=call.parent.name if call.parent is not None else "",
        )

    def _target(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return type(self.model.get_submodule(node.target)).__name__
        if node.op == "call_function":
            return _qualified_name(node.target)
        return str(node.target)

    def infer(self, args: tuple[Any, ...], kwargs: dict[str, Any], training: bool) -> None:
        """Fill ``values`` with the output shapes of every node (fake or meta tensors)."""
        placeholders = [n for n in self.graph.nodes if n.op == "placeholder"]
        inputs = _bind_inputs(placeholders, args, kwargs)
        names = self.tracer.node_to_qualname
        # Leaf modules and their hooks may assign attributes (``self.cache = x``): restore them,
        # so that no fake tensor is left in the model.
        snapshot = _ModelSnapshot(self.model)
        try:
            with training_mode(self.model, training), torch.set_grad_enabled(torch.is_grad_enabled()):
                _ShapeInterpreter.run_on(self.model, self.graph, inputs, self.values, names)
        finally:
            snapshot.restore()


def _param_count(model: nn.Module, path: str) -> int:
    """Number of parameters of the submodule at ``path`` (0 if there is none)."""
    try:
        module = model.get_submodule(path)
    except AttributeError:
        return 0
    return sum(p.numel() for p in module.parameters())


def _unwrap(value: Any) -> Any:
    try:
        return fx.node.map_aggregate(value, lambda x: x.node if isinstance(x, fx.Proxy) else x)
    except Exception:  # an exotic container
        return None


def _qualified_name(target: Any) -> str:
    name = getattr(target, "__name__", None)
    if name is None:
        return repr(target)
    module = getattr(target, "__module__", None)
    if module in (None, "builtins"):
        return name
    if module == "_operator":
        module = "operator"
    return f"{module}.{name}"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _bind_inputs(placeholders: list[fx.Node], args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """The positional values of the graph's placeholders, from ``args`` and ``kwargs``."""
    names = [str(p.target) for p in placeholders]
    unknown = [k for k in kwargs if k not in names]
    if unknown:
        raise FxtractValueError(
            f"example_inputs has keyword arguments {unknown} that forward() does not take; "
            f"its arguments are {[n.lstrip('*') for n in names]}."
        )
    values: list[Any] = []
    for i, p in enumerate(placeholders):
        target = str(p.target)
        if target.startswith("*"):
            values.extend(args[i:])
            break
        if i < len(args):
            values.append(args[i])
        elif target in kwargs:
            values.append(kwargs[target])
        elif p.args:
            values.append(p.args[0])  # the argument's default
        else:
            raise FxtractValueError(f"example_inputs gives no value for forward() argument {target!r}.")
    return values


def _fresh(value: Any) -> Any:
    """``value`` with new lists and dicts for the graph's immutable ones.

    The generated code builds a new list for a literal at every call, and wrapped
    functions may change it (torchvision's ``_get_window_and_shift_size``); the
    interpreter would pass the node's own immutable list.
    """
    if isinstance(value, (list, tuple)):
        items = [_fresh(v) for v in value]
        if isinstance(value, list):
            return items
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    return value


class _ShapeInterpreter(fx.Interpreter):
    """Runs a graph on fake (or meta) tensors and records each node's output shapes."""

    def __init__(self, model: nn.Module, graph: fx.Graph, record: dict, names: dict) -> None:
        super().__init__(model, garbage_collect_values=True, graph=graph)
        self.record = record
        self.names = names

    def fetch_args_kwargs_from_env(self, n: fx.Node) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args, kwargs = super().fetch_args_kwargs_from_env(n)
        return _fresh(args), _fresh(kwargs)

    def run_node(self, n: fx.Node) -> Any:
        try:
            out = super().run_node(n)
        except FxtractError:
            raise
        except Exception as e:
            raise self._error(n, e) from e
        tensors = [x for x in pytree.tree_leaves(out) if isinstance(x, torch.Tensor)]
        self.record[n] = (
            tuple(tuple(t.shape) for t in tensors),
            tuple(_dtype_name(t.dtype) for t in tensors),
        )
        return out

    def _error(self, n: fx.Node, e: Exception) -> FxtractValueError:
        name = self.names.get(n, n.name)
        shapes = [list(s) for a in n.all_input_nodes if a in self.record for s in self.record[a][0]]
        detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
        hint = "check the shapes of example_inputs"
        data_dependent = _needs_values(e)
        if data_dependent:
            hint = (
                "its output depends on tensor values, which describe() cannot know without running the model"
            )
        err = FxtractValueError(
            f"cannot infer the shapes of node {name!r} ({_KINDS.get(n.op, n.op)} "
            f"{self._target(n)}) from input shapes {shapes}: {type(e).__name__}: {detail} ({hint})."
        )
        err.data_dependent = data_dependent  # type: ignore[attr-defined]
        return err

    def _target(self, n: fx.Node) -> str:
        if n.op == "call_module":
            return type(self.fetch_attr(n.target)).__name__
        return _qualified_name(n.target) if n.op == "call_function" else str(n.target)

    @classmethod
    def run_on(cls, model: nn.Module, graph: fx.Graph, inputs: list[Any], record: dict, names: dict) -> None:
        interpreter = cls(model, graph, record, names)
        interpreter.extra_traceback = False  # keep our one-line message as is
        on_meta, device = _model_placement(model)
        if on_meta:
            # Everything on meta: shapes propagate without data and without a fake mode.
            inputs = pytree.tree_map_only(torch.Tensor, _to_meta, inputs)
            with _stand_ins(model, _to_meta), _quiet_fake_tensor_log():
                interpreter.run(*inputs)
            return
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode(allow_non_fake_inputs=True) as mode:

            def to_fake(t: torch.Tensor) -> torch.Tensor:
                if t.is_meta:  # a meta example input: stand-in on the model's device
                    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device)
                return mode.from_tensor(t)

            inputs = pytree.tree_map_only(torch.Tensor, to_fake, inputs)
            # The fake parameters stand in for the real ones: nothing the graph does
            # (``running_mean`` updates, ``self.count += 1``) reaches the user's model.
            with _stand_ins(model, mode.from_tensor), _quiet_fake_tensor_log():
                interpreter.run(*inputs)


@contextlib.contextmanager
def _stand_ins(model: nn.Module, convert: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Put ``convert(t)`` in place of every parameter and buffer ``t`` of ``model``, then restore.

    Each module once (a module with two paths, a block shared by two stages, is one
    module) and each tensor converted once (tied weights stay tied). Unlike
    ``torch.func.functional_call``, which swaps a shared module once per path and restores
    it in the wrong order, this always puts the user's own tensors back.
    """
    slots = [
        (store, key, t)
        for m in model.modules()
        for store in (m._parameters, m._buffers)
        for key, t in store.items()
        if t is not None
    ]
    converted: dict[int, torch.Tensor] = {}
    try:
        for store, key, t in slots:
            if id(t) not in converted:
                converted[id(t)] = convert(t)
            store[key] = converted[id(t)]  # type: ignore[assignment]
        yield
    finally:
        for store, key, t in slots:
            store[key] = t


@contextlib.contextmanager
def _quiet_fake_tensor_log(*names: str) -> Iterator[None]:
    """FakeTensorMode logs a traceback for each failing op; our error says it in one line.

    ``names``: more loggers to silence (export's symbolic shapes log a failing graph).
    """
    loggers = [logging.getLogger(n) for n in ("torch._subclasses.fake_tensor", *names)]
    saved = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        yield
    finally:
        for lg, disabled in zip(loggers, saved):
            lg.disabled = disabled


# ---------------------------------------------------------------------------------------------
# Values: what fake tensors cannot compute, and the tensors in an output


def _needs_values(e: BaseException) -> bool:
    """Whether ``e`` (or its cause) says the code needs tensor values that fake or meta tensors lack.

    ``if x.sum() > 0``, ``x.item()``, ``x.tolist()``, ``x.numpy()``, ``nonzero`` and ops
    without a fake kernel raise these; a wrong input shape does not.
    """
    from torch._subclasses import fake_tensor

    kinds: tuple[type, ...] = (
        fake_tensor.DataDependentOutputException,
        fake_tensor.DynamicOutputShapeException,
        fake_tensor.UnsupportedOperatorException,
        fake_tensor.UnsupportedFakeTensorException,
    )
    with contextlib.suppress(ImportError):
        from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

        kinds = (*kinds, GuardOnDataDependentSymNode)
    texts = (
        "data-dependent",
        "not supported for tensor subclasses",
        "cannot be called on meta tensors",
        "cannot access data pointer",
        "cannot access storage",
    )
    seen: set[int] = set()
    err: Optional[BaseException] = e
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, kinds) or any(t in str(err).lower() for t in texts):
            return True
        err = err.__cause__ or err.__context__ or getattr(err, "cause", None)
    return False


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in ``value``, in pytree order; unregistered dataclasses are opened too."""
    out: list[torch.Tensor] = []
    for leaf in pytree.tree_leaves(value):
        if isinstance(leaf, torch.Tensor):
            out.append(leaf)
        elif dataclasses.is_dataclass(leaf) and not isinstance(leaf, type):
            out.extend(_tensors([getattr(leaf, f.name) for f in dataclasses.fields(leaf)]))
    return out


def _dim(d: Any) -> Any:
    """A size as an ``int``; a size no example fixes (export's ``u0``) as its symbol's name."""
    try:
        return int(d)
    except Exception:  # an unbacked SymInt
        return str(d)


def _shapes_dtypes(value: Any) -> tuple[tuple[tuple[int, ...], ...], tuple[str, ...]]:
    tensors = _tensors(value)
    return (
        tuple(tuple(_dim(d) for d in t.shape) for t in tensors),
        tuple(_dtype_name(t.dtype) for t in tensors),
    )


def _model_placement(model: nn.Module) -> tuple[bool, torch.device]:
    """Whether any parameter or buffer is on ``meta``, and the model's device."""
    tensors = [*model.parameters(), *model.buffers()]
    on_meta = any(t.is_meta for t in tensors)
    device = next((t.device for t in tensors if not t.is_meta), torch.device("cpu"))
    return on_meta, device


def _to_meta(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_meta else torch.empty_like(t, device="meta")


def _has_meta(value: Any) -> bool:
    return any(isinstance(t, torch.Tensor) and t.is_meta for t in pytree.tree_leaves(value))


# ---------------------------------------------------------------------------------------------
# Strategy "export": the nodes of torch.export's graphs, with the fake values export recorded


class _ExportView:
    """The nodes and module calls of one mode's exported graph, by name."""

    def __init__(self, model: nn.Module, trace: Any) -> None:
        self.model = model
        self.trace = trace
        position = {n: i for i, n in enumerate(trace.graph_module.graph.nodes)}
        self.nodes = {name: node for node, name in trace.node_to_qualname.items()}
        self.node_names = set(self.nodes)
        self.calls = {c.name: c for c in trace.module_calls}
        self.types = {c.name: c.module_type for c in trace.module_calls}
        # Nodes in graph order; a module call right after the last node it ran (inner calls
        # before outer ones), as names_in_order does for FX.
        keyed: list[tuple[int, int, int, int, str]] = [
            (position[node], 0, 0, 0, name) for node, name in trace.node_to_qualname.items()
        ]
        for order, call in enumerate(trace.module_calls):
            if call.name in self.nodes:  # a leaf call: its node has the same name
                continue
            outputs = call.output if isinstance(call.output, tuple) else (call.output,)
            end = max((position[n] for n in (*call.nodes, *outputs) if n in position), default=-1)
            keyed.append((end, 1, -len(list(call.ancestors())), order, call.name))
        keyed.sort()
        self.names = [k[-1] for k in keyed]

    def info(self, name: str, modes: str) -> NodeInfo:
        node = self.nodes.get(name)
        call = self.calls.get(name)
        if node is not None and call is None:
            shapes, dtypes = _shapes_dtypes(node.meta.get("val"))
            inner = self.trace.node_to_call.get(node)
            return NodeInfo(
                name=name,
                kind="input" if node.op == "placeholder" else "function",
                target=str(node.target) if node.op == "placeholder" else _aten_name(node.target),
                shapes=shapes,
                dtypes=dtypes,
                modes=modes,
                parent=inner.name if inner is not None else "",
            )
        outputs = call.output if isinstance(call.output, tuple) else (call.output,)
        shapes, dtypes = _shapes_dtypes([n.meta.get("val") for n in outputs])
        return NodeInfo(
            name=name,
            kind="module",
            target=call.module_type.__name__,
            shapes=shapes,
            dtypes=dtypes,
            params=_param_count(self.model, call.path),
            modes=modes,
            parent=call.parent.name if call.parent is not None else "",
        )


def _aten_name(target: Any) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return str(target)  # aten.conv2d.default
    if isinstance(target, torch._ops.HigherOrderOperator):
        return f"higher_order.{target.name()}"
    return _qualified_name(target)


class _NoGraph:
    """A mode whose graph could not be built (only for presence, see ``_other_modes``)."""

    names: list[str] = []
    node_names: set[str] = set()
    types: dict[str, type] = {}


def _other_modes(used: tuple[str, ...]) -> tuple[str, ...]:
    """Modes needed only to tell ``NodeInfo.modes``; a failure there is a warning, not an error."""
    return tuple(m for m in ("train", "eval") if m not in used)


def _export_views(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], used: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Export ``model`` in each mode (static shapes) on inputs that match its device.

    Returns the views and ``{mode: why}`` for a mode outside ``used`` that failed.
    """
    from ._export import _trace_mode
    from ._naming import LeafModuleAwareTracer, default_tracer_kwargs

    on_meta, device = _model_placement(model)
    if on_meta:
        # Everything on meta: export fakes meta tensors as they are, no data is read.
        args, kwargs = pytree.tree_map_only(torch.Tensor, _to_meta, (args, kwargs))
    elif _has_meta((args, kwargs)):
        # Meta example inputs for a real model: fake stand-ins on the model's device.
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.experimental.symbolic_shapes import ShapeEnv

        mode = FakeTensorMode(shape_env=ShapeEnv(), allow_non_fake_inputs=True)

        def stand_in(t: torch.Tensor) -> torch.Tensor:
            if not t.is_meta:
                return mode.from_tensor(t)
            with mode:
                return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device)

        args, kwargs = pytree.tree_map_only(torch.Tensor, stand_in, (args, kwargs))
    # As trace_export, one mode at a time: train-mode batch norm refuses a batch of one,
    # which must not stop an eval-mode description.
    leaf = LeafModuleAwareTracer(leaf_modules=default_tracer_kwargs(None)["leaf_modules"])
    views: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for m in (*used, *_other_modes(used)):
        try:
            # A failure is a TraceError with the cause; torch's own log of it would only repeat it.
            with _quiet_fake_tensor_log("torch.fx.experimental.symbolic_shapes"):
                views[m] = _ExportView(model, _trace_mode(model, args, kwargs, m, False, leaf))
        except TraceError as e:
            if m in used:
                raise
            views[m], skipped[m] = _NoGraph(), _short(e)
    return views, skipped


# ---------------------------------------------------------------------------------------------
# Strategy "hooks": module calls of the model's own forward, run on fake tensors


@dataclass
class _Call:
    """One module call seen by the hooks."""

    name: str
    path: str
    module_type: type
    parent: str
    shapes: tuple[tuple[int, ...], ...] = ()
    dtypes: tuple[str, ...] = ()


class _HookRecorder:
    """Forward hooks on every submodule: each call's name (as ``hook_node_names``) and output shapes."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.namer = _UniqueNamer(p for p, _ in model.named_modules())
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
        call.shapes, call.dtypes = _shapes_dtypes(output)  # no reference to the output is kept

    def where(self) -> str:
        """Where the forward stopped: the innermost module call still running."""
        if not self.stack:
            return f"in the top-level forward of {type(self.model).__name__}"
        call = self.stack[-1]
        return f"in module call {call.name!r} ({call.module_type.__name__})"


def _fake_forward(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``model(*args, **kwargs)`` with fake parameters, buffers and inputs (meta ones if the model is)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    on_meta, device = _model_placement(model)
    if on_meta:
        args, kwargs = pytree.tree_map_only(torch.Tensor, _to_meta, (args, kwargs))
    mode = FakeTensorMode(allow_non_fake_inputs=True)

    def to_fake(t: torch.Tensor) -> torch.Tensor:
        if t.is_meta and not on_meta:  # a meta example input: stand-in on the model's device
            with mode:
                return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device)
        return mode.from_tensor(t)

    args, kwargs = pytree.tree_map_only(torch.Tensor, to_fake, (args, kwargs))
    # The fake parameters stand in for the real ones: what forward does to them (batch-norm
    # statistics, ``self.count += 1``) never reaches the user's model.
    fake = (lambda t: mode.from_tensor(_to_meta(t))) if on_meta else mode.from_tensor
    # The stand-ins are made before the fake mode is entered: from real (or meta) tensors.
    with _quiet_fake_tensor_log(), _stand_ins(model, fake):  # noqa: SIM117
        with mode:
            model(*args, **kwargs)


def _real_forward(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """One real forward under ``torch.no_grad()``; buffers, attributes and RNG state restored."""
    from ._hooks import _buffers_restored

    cuda = sorted(
        {t.device.index or 0 for t in (*model.parameters(), *model.buffers()) if t.device.type == "cuda"}
    )
    with torch.random.fork_rng(devices=cuda), _buffers_restored(model), torch.no_grad():
        model(*args, **kwargs)


def _hook_calls(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], training: bool, allow_real: bool
) -> tuple[list[_Call], Optional[str]]:
    """The module calls of one forward in this mode, and why a real forward ran (``None``: it did not)."""
    reason = None
    for real in (False, True) if allow_real else (False,):
        recorder = _HookRecorder(model)
        # Forward may assign attributes (``self.cache = x``): no fake tensor may stay in the model.
        snapshot = _ModelSnapshot(model)
        try:
            with recorder.hooks(), training_mode(model, training):
                if real:
                    _real_forward(model, args, kwargs)
                else:
                    _fake_forward(model, args, kwargs)
            return recorder.calls, reason
        except Exception as e:
            if real or not _needs_values(e):
                raise _forward_error(model, recorder, e, real) from e
            if not allow_real:
                err = _forward_error(model, recorder, e, real)
                err.reason = (  # type: ignore[attr-defined]
                    f"{recorder.where()}: it needs tensor values, and a real forward runs only in the "
                    "mode described"
                )
                raise err from e
            reason = f"{type(model).__name__} cannot run on fake tensors ({recorder.where()}: {_short(e)})"
            if _model_placement(model)[0]:
                raise StrategyError(
                    f"describe() cannot infer the shapes of {type(model).__name__} with strategy='hooks': "
                    f"its forward needs tensor values ({recorder.where()}: {_short(e)}), which fake tensors "
                    "do not have, and its parameters are on the meta device, so no real forward can run. "
                    "Load real weights (model.to_empty(device=...) and initialise), or make that code "
                    "depend on shapes only."
                ) from e
            if _has_meta((args, kwargs)):
                raise StrategyError(
                    f"describe() cannot infer the shapes of {type(model).__name__} with strategy='hooks': "
                    f"its forward needs tensor values ({recorder.where()}: {_short(e)}) and example_inputs "
                    "are on the meta device, so no real forward can run; pass real example inputs."
                ) from e
        finally:
            snapshot.restore()
    raise AssertionError("unreachable")  # pragma: no cover (the real forward returns or raises)


def _forward_error(model: nn.Module, recorder: _HookRecorder, e: Exception, real: bool) -> FxtractError:
    if isinstance(e, FxtractError):
        return e
    detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
    run = "a real forward" if real else "a forward on fake tensors"
    err = FxtractValueError(
        f"cannot infer the shapes of {type(model).__name__} (strategy='hooks'): {run} failed "
        f"{recorder.where()}: {type(e).__name__}: {detail} (check example_inputs)."
    )
    err.reason = f"{recorder.where()}: {type(e).__name__}: {detail}"[:300]  # type: ignore[attr-defined]
    return err


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
            params=_param_count(self.model, call.path),
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
    for m in (*used, *_other_modes(used)):
        try:
            calls, reason = _hook_calls(model, args, kwargs, m == "train", allow_real=m in used)
        except FxtractError as e:
            if m in used:
                raise
            views[m], skipped[m] = _NoGraph(), getattr(e, "reason", None) or _short(e)
            continue
        views[m] = _HookView(model, calls)
        if reason is not None:
            real[m] = reason
    return views, real, skipped


# ---------------------------------------------------------------------------------------------
# Choosing the strategy


def _select(
    views: dict[str, Any], used: tuple[str, ...], nodes: Optional[Patterns], exclude: Patterns
) -> list[str]:
    """The chosen names, in execution order (the eval order, train-only names merged in)."""
    order = (
        views[used[-1]].names if len(used) == 1 else _merge_orders(views["eval"].names, views["train"].names)
    )
    if nodes is None:
        graph_nodes = [n for n in order if any(n in views[m].node_names for m in used)]
        return select_nodes(graph_nodes, order, exclude=exclude, strict=True)
    types: dict[str, type] = {}
    for m in used:
        types.update(views[m].types)
    patterns = [nodes] if isinstance(nodes, str) else list(nodes)
    # Paths of modules never called themselves, placed right after the call standing for them.
    after: dict[str, list[str]] = {}
    for p in patterns:
        stand_in = _stand_in(views, used, p) if isinstance(p, str) else None
        if stand_in is not None:
            after.setdefault(stand_in, []).append(p)
    rest = [p for p in patterns if not any(p in v for v in after.values())]
    chosen = select_nodes(rest, order, exclude=exclude, name_types=types, strict=True) if rest else []
    if not after:
        return chosen
    position = {n: i for i, n in enumerate(order)}
    containers = [(position[s], p) for s, ps in after.items() for p in ps]
    merged = sorted([(position.get(n, len(order)), n) for n in chosen] + containers, key=lambda x: x[0])
    return list(dict.fromkeys(n for _, n in merged))


def _stand_in(views: dict[str, Any], used: tuple[str, ...], name: str) -> Optional[str]:
    """The call standing for ``name`` if it is the path of a module never called itself (a
    ModuleList that forward iterates): the extractor returns that call's output for it."""
    for m in ("eval", "train"):
        view = views.get(m)
        if m not in used or view is None or name in view.node_names or name in getattr(view, "calls", {}):
            continue
        call = last_call_under(view.calls.values(), name)
        if call is not None:
            return call.name
    return None


def _infos(views: dict[str, Any], used: tuple[str, ...], chosen: list[str]) -> list[NodeInfo]:
    in_train, in_eval = set(views["train"].names), set(views["eval"].names)
    infos = []
    for name in chosen:
        stand_in = name if name in in_train or name in in_eval else _stand_in(views, used, name)
        if stand_in is None:  # pragma: no cover - _select only chooses known names
            raise NodeNotFoundError(f"node {name!r} is not in the model's graph.")
        modes = (
            "both"
            if stand_in in in_train and stand_in in in_eval
            else ("train" if stand_in in in_train else "eval")
        )
        view = views["eval"] if "eval" in used and stand_in in in_eval else views["train"]
        info = view.info(stand_in, modes)
        if stand_in != name:
            module = view.model.get_submodule(name) if name in dict(view.model.named_modules()) else None
            info = dataclasses.replace(
                info,
                name=name,
                kind="module",
                target=type(module).__name__ if module is not None else info.target,
                params=_param_count(view.model, name) if module is not None else info.params,
            )
        infos.append(info)
    return infos


def _describe(
    model: nn.Module,
    example_inputs: Any,
    nodes: Optional[Patterns],
    exclude: Patterns,
    used: tuple[str, ...],
    tracer_kwargs: Optional[dict[str, Any]],
    strategy: str,
) -> NodeInfoList:
    inputs = normalize_inputs(example_inputs) if example_inputs is not None else None
    why: list[str] = []  # why the earlier strategies failed (strategy "auto")
    if strategy in ("auto", "fx"):
        result = _describe_fx(model, inputs, nodes, exclude, used, tracer_kwargs, strategy, why)
        if result is not None:
            return result
        if inputs is None:
            err = StrategyError(
                f"FX cannot trace {type(model).__name__} ({'; '.join(why)}), even with automatic leaves; pass "
                "example_inputs=... so describe() can name the nodes with torch.export or hooks."
            )
            err.needs_inputs = True  # type: ignore[attr-defined]
            raise err
    if strategy in ("auto", "export"):
        _needs_inputs("export", example_inputs)
        assert inputs is not None
        try:
            export_views, skipped = _export_views(model, *inputs, used)
        except TraceError as e:
            if strategy == "export":
                raise
            why.append(f"export: {_short(e)}")
        else:
            chosen = _select(export_views, used, nodes, exclude)
            if why:
                _warn_fallback("export", why)
            _warn_skipped(skipped, used, "", "export")
            return NodeInfoList(_infos(export_views, used, chosen), strategy="export")
    _needs_inputs("hooks", example_inputs)
    assert inputs is not None
    hook_views, real, skipped = _hook_views(model, *inputs, used)
    chosen = _select(hook_views, used, nodes, exclude)
    if why:
        _warn_fallback("hooks", why)
    message = ""
    if real:
        message = (
            f"describe() ran a real forward because {next(iter(real.values()))}: the shapes come from "
            f"a forward under torch.no_grad() in {' and '.join(real)} mode, which used activation memory "
            "(model, buffers and RNG state restored)."
        )
    _warn_skipped(skipped, used, message, "forward")
    return NodeInfoList(_infos(hook_views, used, chosen), strategy="hooks", real_forward=tuple(real))


def _warn_skipped(skipped: dict[str, str], used: tuple[str, ...], message: str, what: str) -> None:
    """One warning: ``message``, and the modes whose graph failed (``NodeInfo.modes`` is partial)."""
    parts = [message] if message else []
    for m, reason in skipped.items():
        parts.append(
            f"{'The' if parts else 'describe(): the'} {m}-mode {what} failed ({reason}), so "
            f"NodeInfo.modes only reflects {' and '.join(used)} mode."
        )
    if parts:
        warnings.warn(" ".join(parts), stacklevel=4)


def _describe_fx(
    model: nn.Module,
    inputs: Optional[tuple[tuple[Any, ...], dict[str, Any]]],
    nodes: Optional[Patterns],
    exclude: Patterns,
    used: tuple[str, ...],
    tracer_kwargs: Optional[dict[str, Any]],
    strategy: str,
    why: list[str],
) -> Optional[NodeInfoList]:
    """Strategy fx (and automatic leaves); ``None`` (with ``why`` filled) when auto should go on."""

    def attempt(leaf_paths: set[str]) -> dict[str, _GraphView]:
        from ._rewrite import demote_augmented

        traced = trace_modes(model, tracer_kwargs, leaf_paths=leaf_paths)
        for tracer, graph in traced.values():
            demote_augmented(graph, model, tracer)  # the ops the extractor runs (`out += x`: add)
        return {m: _GraphView(model, *traced[m]) for m in ("train", "eval")}

    leaves: dict[str, str] = {}
    try:
        views = attempt(set())
    except TraceError as e:
        if strategy == "fx":
            raise
        why.append(f"fx: {_short(e)}")
        try:
            views, leaves = _with_auto_leaves(model, attempt, e)
        except TraceError as e2:
            why.append(f"automatic leaves: {_short(e2)}")
            return None
    try:
        chosen = _select(views, used, nodes, exclude)
    except NodeNotFoundError:
        queries = [nodes] if isinstance(nodes, str) else list(nodes or ())
        hidden = [q for q in queries if any(q.startswith(f"{leaf}.") for leaf in leaves)]
        if strategy == "fx" or not hidden:
            raise
        # Export and hooks see the calls inside the automatic leaves (#11.1).
        why.append(f"automatic leaves: {', '.join(hidden)} inside {', '.join(sorted(leaves))}")
        return None
    if inputs is not None:
        try:
            for m in used:
                views[m].infer(inputs[0], inputs[1], training=(m == "train"))
        except FxtractValueError as e:
            # Tensor values read inside a leaf: only hooks (a real forward) can tell the shapes.
            if strategy == "fx" or not getattr(e, "data_dependent", False):
                raise
            why.append(f"{'automatic leaves' if leaves else 'fx'}: {str(e)[:200]}")
            return None
    if leaves:
        warnings.warn(
            "FX could not trace some modules, so they became leaves (their outputs are still available by "
            "path): " + "; ".join(f"{p} ({r})" for p, r in leaves.items()),
            stacklevel=4,
        )
    return NodeInfoList(_infos(views, used, chosen), strategy="fx", auto_leaves=leaves)


# ---------------------------------------------------------------------------------------------
# Public API


def describe(
    model: nn.Module,
    example_inputs: Any = None,
    *,
    nodes: Optional[Patterns] = None,
    exclude: Patterns = (),
    mode: str = "eval",
    strategy: str = "auto",
    tracer_kwargs: Optional[dict[str, Any]] = None,
) -> NodeInfoList:
    """Describe the nodes of ``model``: kind, target, output shapes and dtypes, parameters.

    The nodes are named as :func:`fxtract.create_feature_extractor` names them with the
    same ``strategy``, and their outputs are computed on fake tensors (``FakeTensorMode``),
    or on ``meta`` tensors when the model's parameters are on the ``meta`` device. No
    activation memory is allocated, no real forward runs (one exception below), and the
    model (parameters, buffers, attributes, train/eval flags) is left exactly as it was.

    Strategies:

    * ``"fx"``: fxtract's FX tracer, every op a node; a model FX cannot trace raises.
    * ``"export"``: ``torch.export`` (non-strict, shapes fixed to ``example_inputs``), every
      ATen op a node (``"function"``), plus the module calls (``"module"``).
    * ``"hooks"``: module calls only (``path``, ``path_1`` for a second call), from the
      model's own forward run on fake tensors. If that forward reads tensor values
      (``if x.sum() > 0``), it cannot run on fake tensors: then one real forward runs
      under ``torch.no_grad()``, with a warning ("ran a real forward because ..."); on a
      model whose parameters are on the meta device that is a :class:`StrategyError`.
    * ``"auto"`` (default): fx, then FX with automatic leaves (the innermost module FX
      cannot trace becomes a leaf), then export, then hooks; one warning says why the
      earlier ones failed. The result's ``.strategy`` says which one was used.

    Args:
        model: the model.
        example_inputs: what ``forward`` takes, as for ``torch.export``: a tensor, a tuple
            of arguments, a dict of keyword arguments or ``(args, kwargs)``. Only shapes,
            dtypes and devices are used (values too, if a real forward has to run);
            ``meta`` tensors are fine. ``None``: skip shape inference (``shapes`` and
            ``dtypes`` are empty); strategies ``"export"`` and ``"hooks"`` need inputs.
        nodes: patterns choosing the nodes (see :func:`fxtract.select_nodes`): exact names,
            globs, ``re:`` regexes; ``"*"`` also lists the module calls that are not graph
            nodes (``layer1``). ``None``: every node of the graph (every module call with
            ``"hooks"``).
        exclude: patterns of the same kinds; their matches are left out.
        mode: ``"eval"``, ``"train"`` (the graph traced in that mode, run in that mode) or
            ``"both"`` (the union; a node in both graphs is described from the eval one).
            ``NodeInfo.modes`` always tells the graphs a node is in: both modes are
            traced (with ``"hooks"``, two fake forwards).
        strategy: ``"auto"``, ``"fx"``, ``"export"`` or ``"hooks"``.
        tracer_kwargs: options for the FX tracer (``leaf_modules``, ``autowrap_functions``...).

    Returns:
        A :class:`NodeInfoList` (a ``list``): one :class:`NodeInfo` per chosen node, in
        execution order; ``.strategy`` is the strategy used, ``.auto_leaves`` the modules
        that became leaves, ``.real_forward`` the modes in which a real forward ran.

    Raises:
        FxtractValueError: a bad ``mode`` or ``strategy``, or the shapes cannot be
            inferred (the message names the node).
        NodeNotFoundError: a name or pattern in ``nodes`` matches nothing.
        TraceError: FX (``"fx"``) or torch.export (``"export"``) cannot trace the model.
        StrategyError: ``"export"`` / ``"hooks"`` without ``example_inputs``, or a
            real forward would be needed on a meta-device model.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU())
        >>> for info in describe(m, torch.zeros(1, 3, 32, 32)):
        ...     print(info.name, info.kind, info.target, info.shapes, info.params)
        input input input ((1, 3, 32, 32),) 0
        0 module Conv2d ((1, 8, 15, 15),) 224
        1 module ReLU ((1, 8, 15, 15),) 0
        >>> infos = describe(m, torch.zeros(1, 3, 32, 32), strategy="hooks")
        >>> infos.strategy, [(i.name, i.shapes) for i in infos]
        ('hooks', [('0', ((1, 8, 15, 15),)), ('1', ((1, 8, 15, 15),))])
    """
    check_strategy(strategy)
    if mode not in MODES:
        raise FxtractValueError(f"mode must be one of {MODES}, got {mode!r}.")
    if not isinstance(model, nn.Module):
        raise FxtractTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    used = ("train", "eval") if mode == "both" else (mode,)
    return _describe(model, example_inputs, nodes, exclude, used, tracer_kwargs, strategy)


def feature_info(
    model: nn.Module,
    names: Patterns,
    example_inputs: Any,
    *,
    mode: str = "eval",
    strategy: str = "auto",
    tracer_kwargs: Optional[dict[str, Any]] = None,
) -> list[dict[str, Any]]:
    """Channels and reduction of chosen nodes, like timm's ``model.feature_info``.

    For each node: ``{"name", "num_chs", "reduction", "shape"}``, from the first tensor
    the node outputs (shapes from :func:`describe`, on fake tensors). The input's
    spatial size ``(H, W)`` is the last two dims of the first input tensor with at
    least 3 dims. The rules, by the output's number of dims:

    * 4-D: ``NCHW`` (``num_chs`` = dim 1, spatial = dims 2, 3), unless dims 1, 2 are
      spatial (same reduction from ``H`` and ``W``) while dims 2, 3 are not: then
      ``NHWC`` (``num_chs`` = last dim), as in Swin or ConvNeXt's channels-last blocks;
    * 3-D: tokens ``(N, L, C)``: ``num_chs`` = ``C``; the reduction ``r`` is the one for
      which ``L`` minus up to 8 prefix tokens (class / register tokens) is a
      ``(H / r) x (W / r)`` grid, if any;
    * 5-D and more: ``(N, C, ..., H, W)``;
    * 2-D ``(N, C)`` (pooled): ``num_chs`` = ``C``, no reduction.

    ``reduction`` is ``H / h`` rounded to an integer (``h`` the output height), a
    float below 1 for upsampled outputs, ``None`` when there is no spatial grid.

    Args:
        model: the model.
        names: node names or patterns (see :func:`fxtract.select_nodes`).
        example_inputs: as for :func:`describe`.
        mode: ``"eval"`` or ``"train"``.
        strategy: as for :func:`describe`.
        tracer_kwargs: options for the tracer.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU())
        >>> feature_info(m, ["1"], torch.zeros(1, 3, 64, 64))
        [{'name': '1', 'num_chs': 8, 'reduction': 2, 'shape': (1, 8, 32, 32)}]
    """
    if mode not in ("train", "eval"):
        raise FxtractValueError(f"mode must be 'train' or 'eval', got {mode!r}.")
    infos = describe(
        model, example_inputs, nodes=names, mode=mode, strategy=strategy, tracer_kwargs=tracer_kwargs
    )
    return feature_rows({i.name: i.shapes[0] if i.shapes else () for i in infos}, example_inputs)


def feature_rows(shapes: dict[str, tuple[Any, ...]], example_inputs: Any) -> list[dict[str, Any]]:
    """:func:`feature_info`'s rows from ``{name: output shape}`` (see its rules)."""
    args, kwargs = normalize_inputs(example_inputs)
    images = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) and t.dim() >= 3]
    spatial = tuple(images[0].shape[-2:]) if images else None
    out = []
    for name, shape in shapes.items():
        if all(isinstance(d, int) for d in shape):
            num_chs, reduction = _channels_and_reduction(shape, spatial)
        else:  # a size only tensor values fix (export's "u0")
            num_chs, reduction = None, None
        out.append({"name": name, "num_chs": num_chs, "reduction": reduction, "shape": shape})
    return out


def export_feature_rows(trace: Any, names: Iterable[str], example_inputs: Any) -> list[dict[str, Any]]:
    """:func:`feature_info`'s rows from an export trace (its fake values), without exporting again."""
    shapes = {}
    for name in names:
        target = trace.resolve(name)
        first = target[0] if isinstance(target, tuple) else target
        tensor_shapes = _shapes_dtypes(first.meta.get("val"))[0]
        shapes[name] = tensor_shapes[0] if tensor_shapes else ()
    return feature_rows(shapes, example_inputs)


def _channels_and_reduction(
    shape: tuple[int, ...], spatial: Optional[tuple[int, int]]
) -> tuple[Optional[int], Optional[float]]:
    if len(shape) < 2:
        return None, None
    if len(shape) == 2:
        return shape[1], None
    if len(shape) == 3:
        return shape[2], _token_reduction(shape[1], spatial)
    if len(shape) == 4 and spatial is not None:
        nchw = _grid_reduction(shape[2:4], spatial)
        nhwc = _grid_reduction(shape[1:3], spatial)
        if nhwc is not None and nchw is None:
            return shape[3], nhwc
        return shape[1], nchw
    return shape[1], _grid_reduction(shape[-2:], spatial) if spatial is not None else None


def _grid_reduction(hw: Sequence[int], spatial: tuple[int, int]) -> Optional[float]:
    """``H / h`` when ``hw`` is a grid over the input (same ratio for both sides), else None."""
    (h, w), (H, W) = hw, spatial
    if h <= 0 or w <= 0:
        return None
    rh, rw = H / h, W / w
    if abs(rh - rw) > 0.1 * max(rh, rw):
        return None
    return round(rh) if rh >= 1 else rh


def _token_reduction(tokens: int, spatial: Optional[tuple[int, int]]) -> Optional[int]:
    if spatial is None:
        return None
    H, W = spatial
    for prefix in range(9):
        n = tokens - prefix
        if n <= 0:
            break
        r = math.sqrt(H * W / n)
        ri = round(r)
        if ri >= 1 and abs(r - ri) < 1e-6 and H % ri == 0 and W % ri == 0:
            return ri
    return None
