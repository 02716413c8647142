"""What every node of a model computes: kind, target, output shapes, parameters.

Shapes come from running the traced graph on fake tensors
(``torch._subclasses.fake_tensor.FakeTensorMode``), or on ``meta`` tensors when the
model lives on the ``meta`` device: no activation is ever allocated and the model's
parameters and buffers are never read or written, so a model of billions of
parameters built under ``with torch.device("meta"):`` is described in seconds.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import fx, nn
from torch.utils import _pytree as pytree

from ._errors import FxtractError, FxtractValueError
from ._inputs import normalize_inputs
from ._naming import ModuleCall, NodePathTracer, _ModelSnapshot, trace_modes, training_mode
from ._select import Patterns, select_nodes

__all__ = ["NodeInfo", "describe", "feature_info", "names_in_order"]

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
            too: their output is what the call returned.
        target: the module's class name, the function's qualified name
            (``torch.flatten``, ``operator.add``), the method name or the attribute path.
        shapes: the shape of every tensor in the output (nested outputs flattened in
            pytree order); empty when shapes were not computed or the output holds no tensor.
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
                params=self._params(node.target) if node.op == "call_module" else 0,
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
            params=self._params(call.path),
            modes=modes,
            parent=call.parent.name if call.parent is not None else "",
        )

    def _target(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return type(self.model.get_submodule(node.target)).__name__
        if node.op == "call_function":
            return _qualified_name(node.target)
        return str(node.target)

    def _params(self, path: str) -> int:
        try:
            module = self.model.get_submodule(path)
        except AttributeError:
            return 0
        return sum(p.numel() for p in module.parameters())

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


class _ShapeInterpreter(fx.Interpreter):
    """Runs a graph on fake (or meta) tensors and records each node's output shapes."""

    def __init__(self, model: nn.Module, graph: fx.Graph, record: dict, names: dict) -> None:
        super().__init__(model, garbage_collect_values=True, graph=graph)
        self.record = record
        self.names = names

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
        if "data-dependent" in str(e).lower() or "DynamicOutputShape" in type(e).__name__:
            hint = (
                "its output depends on tensor values, which describe() cannot know without running the model"
            )
        return FxtractValueError(
            f"cannot infer the shapes of node {name!r} ({_KINDS.get(n.op, n.op)} "
            f"{self._target(n)}) from input shapes {shapes}: {type(e).__name__}: {detail} ({hint})."
        )

    def _target(self, n: fx.Node) -> str:
        if n.op == "call_module":
            return type(self.fetch_attr(n.target)).__name__
        return _qualified_name(n.target) if n.op == "call_function" else str(n.target)

    @classmethod
    def run_on(cls, model: nn.Module, graph: fx.Graph, inputs: list[Any], record: dict, names: dict) -> None:
        state = dict(model.named_parameters(remove_duplicate=False))
        state.update(model.named_buffers(remove_duplicate=False))
        on_meta = any(t.is_meta for t in state.values())
        if on_meta:
            # Everything on meta: shapes propagate without data and without a fake mode.
            to_meta = lambda t: t if t.is_meta else torch.empty_like(t, device="meta")  # noqa: E731
            state = {k: to_meta(t) for k, t in state.items()}
            inputs = pytree.tree_map_only(torch.Tensor, to_meta, inputs)
            _run_with_state(cls, model, graph, inputs, state, record, names)
            return
        from torch._subclasses.fake_tensor import FakeTensorMode

        device = next(iter(state.values())).device if state else torch.device("cpu")
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            # The fake parameters stand in for the real ones: nothing the graph does
            # (``running_mean`` updates, ``self.count += 1``) reaches the user's model.
            fake_state = {k: mode.from_tensor(t) for k, t in state.items()}

            def to_fake(t: torch.Tensor) -> torch.Tensor:
                if t.is_meta:  # a meta example input: stand-in on the model's device
                    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device)
                return mode.from_tensor(t)

            inputs = pytree.tree_map_only(torch.Tensor, to_fake, inputs)
            _run_with_state(cls, model, graph, inputs, fake_state, record, names)


class _Runner(nn.Module):
    """Lets ``torch.func.functional_call`` swap the model's tensors around an interpreter run."""

    def __init__(self, model: nn.Module, run: Any) -> None:
        super().__init__()
        self.model = model
        self._run = run

    def forward(self, *inputs: Any) -> Any:
        return self._run(*inputs)


def _run_with_state(
    cls: type[_ShapeInterpreter],
    model: nn.Module,
    graph: fx.Graph,
    inputs: list[Any],
    state: dict[str, torch.Tensor],
    record: dict,
    names: dict,
) -> None:
    interpreter = cls(model, graph, record, names)
    interpreter.extra_traceback = False  # keep our one-line message as is
    runner = _Runner(model, interpreter.run)
    swapped = {f"model.{k}": v for k, v in state.items()}
    with _quiet_fake_tensor_log():
        torch.func.functional_call(runner, swapped, tuple(inputs), strict=False)


@contextlib.contextmanager
def _quiet_fake_tensor_log() -> Iterator[None]:
    """FakeTensorMode logs a traceback for each failing op; our error says it in one line."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    disabled = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = disabled


# ---------------------------------------------------------------------------------------------
# Public API


def describe(
    model: nn.Module,
    example_inputs: Any = None,
    *,
    nodes: Optional[Patterns] = None,
    exclude: Patterns = (),
    mode: str = "eval",
    tracer_kwargs: Optional[dict[str, Any]] = None,
) -> list[NodeInfo]:
    """Describe the nodes of ``model``: kind, target, output shapes and dtypes, parameters.

    The model is traced with fxtract's tracer, then its graph runs on fake tensors
    (``FakeTensorMode``), or on ``meta`` tensors when the model's parameters are on the
    ``meta`` device. No activation memory is allocated, no real forward runs, and the
    model (parameters, buffers, train/eval flags) is left exactly as it was.

    Args:
        model: the model.
        example_inputs: what ``forward`` takes, as for ``torch.export``: a tensor, a tuple
            of arguments, a dict of keyword arguments or ``(args, kwargs)``. Only shapes,
            dtypes and devices are used; ``meta`` tensors are fine. ``None``: skip shape
            inference (``shapes`` and ``dtypes`` are empty).
        nodes: patterns choosing the nodes (see :func:`fxtract.select_nodes`): exact names,
            globs, ``re:`` regexes; ``"*"`` also lists the traced-through module calls
            (``layer1``). ``None``: every node of the graph.
        exclude: patterns of the same kinds; their matches are left out.
        mode: ``"eval"``, ``"train"`` (the graph traced in that mode, run in that mode) or
            ``"both"`` (the union; a node in both graphs is described from the eval one).
        tracer_kwargs: options for the tracer (``leaf_modules``, ``autowrap_functions``...).

    Returns:
        One :class:`NodeInfo` per chosen node, in execution order.

    Raises:
        NodeNotFoundError: a name or pattern in ``nodes`` matches nothing.
        TraceError: FX cannot trace the model.
        FxtractValueError: the shapes cannot be inferred (the message names the node).

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU())
        >>> for info in describe(m, torch.zeros(1, 3, 32, 32)):
        ...     print(info.name, info.kind, info.target, info.shapes, info.params)
        input input input ((1, 3, 32, 32),) 0
        0 module Conv2d ((1, 8, 15, 15),) 224
        1 module ReLU ((1, 8, 15, 15),) 0
    """
    if mode not in MODES:
        raise FxtractValueError(f"mode must be one of {MODES}, got {mode!r}.")
    inputs = normalize_inputs(example_inputs) if example_inputs is not None else None
    traced = trace_modes(model, tracer_kwargs)
    views = {m: _GraphView(model, *traced[m]) for m in ("train", "eval")}
    used = ("train", "eval") if mode == "both" else (mode,)
    order = (
        views[used[-1]].names if len(used) == 1 else _merge_orders(views["eval"].names, views["train"].names)
    )
    types: dict[str, type] = {}
    for m in used:
        types.update(views[m].types)
    if nodes is None:
        graph_nodes = [n for n in order if any(n in views[m].node_names for m in used)]
        chosen = select_nodes(graph_nodes, order, exclude=exclude, strict=True)
    else:
        chosen = select_nodes(nodes, order, exclude=exclude, name_types=types, strict=True)
    if inputs is not None:
        for m in used:
            views[m].infer(inputs[0], inputs[1], training=(m == "train"))
    in_train, in_eval = set(views["train"].names), set(views["eval"].names)
    infos = []
    for name in chosen:
        modes = "both" if name in in_train and name in in_eval else ("train" if name in in_train else "eval")
        view = views["eval"] if "eval" in used and name in in_eval else views["train"]
        infos.append(view.info(name, modes))
    return infos


def feature_info(
    model: nn.Module,
    names: Patterns,
    example_inputs: Any,
    *,
    mode: str = "eval",
    tracer_kwargs: Optional[dict[str, Any]] = None,
) -> list[dict[str, Any]]:
    """Channels and reduction of chosen nodes, like timm's ``model.feature_info``.

    For each node: ``{"name", "num_chs", "reduction", "shape"}``, from the first tensor
    the node outputs (shapes from :func:`describe`, no real forward). The input's
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
        tracer_kwargs: options for the tracer.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU())
        >>> feature_info(m, ["1"], torch.zeros(1, 3, 64, 64))
        [{'name': '1', 'num_chs': 8, 'reduction': 2, 'shape': (1, 8, 32, 32)}]
    """
    if mode not in ("train", "eval"):
        raise FxtractValueError(f"mode must be 'train' or 'eval', got {mode!r}.")
    args, kwargs = normalize_inputs(example_inputs)
    images = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) and t.dim() >= 3]
    spatial = tuple(images[0].shape[-2:]) if images else None
    out = []
    for info in describe(model, example_inputs, nodes=names, mode=mode, tracer_kwargs=tracer_kwargs):
        shape = info.shapes[0] if info.shapes else ()
        num_chs, reduction = _channels_and_reduction(shape, spatial)
        out.append({"name": info.name, "num_chs": num_chs, "reduction": reduction, "shape": shape})
    return out


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
