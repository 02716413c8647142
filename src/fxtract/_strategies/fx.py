"""Strategy "fx": fxtract's FX tracer names every op; graphs are rewritten into the extractor.

Names: :mod:`fxtract._naming` (two traces, train and eval). Extractor: each mode's graph
returns the requested values, passes in :mod:`.fx_passes` protect and prune it, and a
:class:`~fxtract._graph_module.DualGraphModule` holds both. Views (``describe``): the
graph runs on fake (or meta) tensors through :class:`_ShapeInterpreter`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, Optional

import torch
from torch import fx, nn
from torch.utils import _pytree as pytree

from .._errors import FxtractError, FxtractValueError, ShapeInferenceError
from .._fake import (
    dtype_name,
    model_placement,
    needs_values,
    param_count,
    qualified_name,
    quiet_fake_tensor_log,
    tensors,
    to_meta,
)
from .._graph_module import DualGraphModule
from .._info import NodeInfo
from .._model_state import ModelSnapshot, stand_ins, training_mode
from .._naming import ModuleCall, NodePathTracer, _warn_graph_differences, trace_modes
from .base import ModeViews, Request
from .fx_passes import (
    available_names,
    build_output,
    build_structures,
    demote_augmented,
    drop_needless_clones,
    is_compute,
    protect_outputs,
    prune,
    resolve,
)

__all__ = ["FxStrategy", "names_in_order"]

_KINDS = {
    "placeholder": "input",
    "call_module": "module",
    "call_function": "function",
    "call_method": "method",
    "get_attr": "attribute",
    "output": "output",
}

Traced = dict[str, tuple[NodePathTracer, fx.Graph]]


def _trace(req: Request) -> Traced:
    return trace_modes(
        req.model,
        req.tracer_kwargs,
        naming=req.naming,
        concrete_args=req.concrete_args,
        leaf_paths=req.leaf_paths,
    )


class FxStrategy:
    """Names and extractors from FX graphs; no task runs the model for real."""

    name: ClassVar[str] = "fx"
    needs_inputs: ClassVar[frozenset[str]] = frozenset()

    def node_names(self, req: Request) -> tuple[list[str], list[str]]:
        traced = _trace(req)
        return list(traced["train"][0].node_to_qualname.values()), list(
            traced["eval"][0].node_to_qualname.values()
        )

    def extractor(self, req: Request) -> _FxBuilder:
        return _FxBuilder(req, _trace(req))

    def views(self, req: Request) -> ModeViews:
        traced = _trace(req)
        for tracer, graph in traced.values():  # the ops the extractor runs: ``out += x`` where safe
            demote_augmented(graph, req.model, tracer)
        views = {m: _GraphView(req.model, *traced[m]) for m in ("train", "eval")}
        if req.example_inputs is not None:
            args, kwargs = req.inputs()
            for m in req.modes:
                views[m].infer(args, kwargs, training=(m == "train"))
        return ModeViews(views)


class _FxBuilder:
    def __init__(self, req: Request, traced: Traced) -> None:
        self.req = req
        self.traced = traced

    def names(self, mode: str) -> tuple[list[str], dict[str, type]]:
        tracer = self.traced[mode][0]
        return available_names(tracer), {c.name: c.module_type for c in tracer.module_calls}

    def build(self, train_nodes: Mapping[str, str], eval_nodes: Mapping[str, str]) -> DualGraphModule:
        return _build(self.req, self.traced, train_nodes, eval_nodes)

    def feature_shapes(
        self, extractor: nn.Module, eval_nodes: Mapping[str, str]
    ) -> dict[str, tuple[Any, ...]]:
        """The extractor's own eval graph, run on fake tensors: no trace beyond the extractor's two."""
        assert isinstance(extractor, DualGraphModule)
        model = self.req.model
        args, kwargs = self.req.inputs()
        graph = extractor.eval_graph
        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        inputs = _bind_inputs(placeholders, args, kwargs)
        record: dict[fx.Node, Any] = {}
        snapshot = ModelSnapshot(model)
        try:  # the extractor's submodules are the model's own: the model's flags set their mode
            with training_mode(model, False):
                out = _ShapeInterpreter.run_on(extractor, graph, inputs, record, {})
        finally:
            snapshot.restore()
        shapes = {}
        for name, key in eval_nodes.items():
            found = tensors(out[key])
            shapes[name] = tuple(found[0].shape) if found else ()
        return shapes


def _rename_constants(graph: fx.Graph, constants: dict[str, Any]) -> dict[str, Any]:
    renamed = {}
    for node in graph.nodes:
        if node.op == "get_attr" and node.target in constants:
            new = f"{node.target}_eval"
            renamed[new] = constants[node.target]
            node.target = new
    return renamed


def _build(
    req: Request, traced: Traced, train_nodes: Mapping[str, str], eval_nodes: Mapping[str, str]
) -> DualGraphModule:
    """Rewrite each traced graph to return the requested values, prune, wrap."""
    model = req.model
    graphs: dict[str, fx.Graph] = {}
    stats: dict[str, Any] = {}
    clones: dict[str, int] = {}
    for mode, queries in (("train", train_nodes), ("eval", eval_nodes)):
        tracer, graph = traced[mode]
        demote_augmented(graph, model, tracer)
        concrete = dict(queries)
        values, read_at = resolve(tracer, concrete, mode)
        build_output(graph, {key: values[q] for q, key in concrete.items()})
        protect_outputs(graph, model, {concrete[q]: node for q, node in read_at.items()})
        stats[mode] = dict(prune(graph, model, tracer))
        clones[mode] = drop_needless_clones(graph, model)
        build_structures(graph)
        stats[mode].update(nodes_after=len(graph.nodes), compute_after=sum(map(is_compute, graph.nodes)))
        graphs[mode] = graph
    if not req.suppress_diff_warning:
        _warn_graph_differences(traced["train"][0], traced["eval"][0])
    skipped = sorted(set(traced["train"][0].skipped_hooks) | set(traced["eval"][0].skipped_hooks))
    if skipped:
        warnings.warn(
            "these hooks are on modules that FX traces through, so the extractor will not run them: "
            + "; ".join(skipped)
            + ". Make those modules leaves (tracer_kwargs={'leaf_modules': [...]}) to keep their hooks.",
            stacklevel=6,
        )
    # Both traces name their constants _tensor_constant0...: give the eval graph's their own names.
    train_constants = traced["train"][0].tensor_constants
    eval_constants = _rename_constants(graphs["eval"], traced["eval"][0].tensor_constants)
    constants = {**train_constants, **eval_constants}
    gm = DualGraphModule(
        model,
        graphs["train"],
        graphs["eval"],
        class_name=type(model).__name__,
        training=model.training,
        constants=constants,
    )
    gm.prune_stats = stats
    gm.num_clones = clones
    gm.skipped_hooks = skipped
    return gm


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
                params=param_count(self.model, node.target) if node.op == "call_module" else 0,
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
                dtypes_list.append(dtype_name(leaf.dtype))
        return NodeInfo(
            name=name,
            kind="module",
            target=call.module_type.__name__,
            shapes=tuple(shapes_list),
            dtypes=tuple(dtypes_list),
            params=param_count(self.model, call.path),
            modes=modes,
            parent=call.parent.name if call.parent is not None else "",
        )

    def _target(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return type(self.model.get_submodule(node.target)).__name__
        if node.op == "call_function":
            return qualified_name(node.target)
        return str(node.target)

    def infer(self, args: tuple[Any, ...], kwargs: dict[str, Any], training: bool) -> None:
        """Fill ``values`` with the output shapes of every node (fake or meta tensors)."""
        placeholders = [n for n in self.graph.nodes if n.op == "placeholder"]
        inputs = _bind_inputs(placeholders, args, kwargs)
        names = self.tracer.node_to_qualname
        # Leaf modules and their hooks may assign attributes (``self.cache = x``): restore them,
        # so that no fake tensor is left in the model.
        snapshot = ModelSnapshot(self.model)
        try:
            with training_mode(self.model, training), torch.set_grad_enabled(torch.is_grad_enabled()):
                _ShapeInterpreter.run_on(
                    self.model, self.graph, inputs, self.values, names, self.tracer.tensor_constants
                )
        finally:
            snapshot.restore()


def _unwrap(value: Any) -> Any:
    try:
        return fx.node.map_aggregate(value, lambda x: x.node if isinstance(x, fx.Proxy) else x)
    except Exception:  # an exotic container
        return None


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

    def __init__(
        self, model: nn.Module, graph: fx.Graph, record: dict, names: dict, constants: Optional[dict] = None
    ) -> None:
        super().__init__(model, garbage_collect_values=True, graph=graph)
        self.record = record
        self.names = names
        # The tracer keeps FX's tensor constants (``_tensor_constant0``) off the user's model.
        self.constants = dict(constants or {})

    def fetch_attr(self, target: str) -> Any:
        if target in self.constants:
            return self.constants[target]
        return super().fetch_attr(target)

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
            tuple(dtype_name(t.dtype) for t in tensors),
        )
        return out

    def _error(self, n: fx.Node, e: Exception) -> FxtractValueError:
        name = self.names.get(n, n.name)
        shapes = [list(s) for a in n.all_input_nodes if a in self.record for s in self.record[a][0]]
        detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
        hint = "check the shapes of example_inputs"
        data_dependent = needs_values(e)
        if data_dependent:
            hint = (
                "its output depends on tensor values, which describe() cannot know without running the model"
            )
        return ShapeInferenceError(
            f"cannot infer the shapes of node {name!r} ({_KINDS.get(n.op, n.op)} "
            f"{self._target(n)}) from input shapes {shapes}: {type(e).__name__}: {detail} ({hint}).",
            data_dependent=data_dependent,
        )

    def _target(self, n: fx.Node) -> str:
        if n.op == "call_module":
            return type(self.fetch_attr(n.target)).__name__
        return qualified_name(n.target) if n.op == "call_function" else str(n.target)

    @classmethod
    def run_on(
        cls,
        model: nn.Module,
        graph: fx.Graph,
        inputs: list[Any],
        record: dict,
        names: dict,
        constants: Optional[dict] = None,
    ) -> Any:
        interpreter = cls(model, graph, record, names, constants)
        interpreter.extra_traceback = False  # keep our one-line message as is
        on_meta, device = model_placement(model)
        if on_meta:
            # Everything on meta: shapes propagate without data and without a fake mode.
            inputs = pytree.tree_map_only(torch.Tensor, to_meta, inputs)
            interpreter.constants = {k: to_meta(v) for k, v in interpreter.constants.items()}
            with stand_ins(model, to_meta), quiet_fake_tensor_log():
                return interpreter.run(*inputs)
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode(allow_non_fake_inputs=True) as mode:

            def to_fake(t: torch.Tensor) -> torch.Tensor:
                if t.is_meta:  # a meta example input: stand-in on the model's device
                    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device)
                return mode.from_tensor(t)

            inputs = pytree.tree_map_only(torch.Tensor, to_fake, inputs)
            # The fake parameters stand in for the real ones: nothing the graph does
            # (``running_mean`` updates, ``self.count += 1``) reaches the user's model.
            with stand_ins(model, mode.from_tensor), quiet_fake_tensor_log():
                return interpreter.run(*inputs)
