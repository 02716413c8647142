"""Strategy "export", the extractor: a two-graph module built from named export traces.

The graph of each mode keeps only the nodes its outputs need (the training IR of
``torch.export`` is not functional: in-place ops stay, so values are cloned where later
in-place ops would change them), checks its inputs against the shapes export fixed, and
pickles as node lists (see :class:`ExportFeatureExtractor`).
"""

from __future__ import annotations

import copy
import functools
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import fx, nn
from torch.fx.graph import _PyTreeCodeGen
from torch.utils import _pytree as pytree

from .._checks import check_extractor_call, check_input_dtype, not_scriptable
from .._errors import FxtractValueError, TraceError
from .._naming import last_call_under
from .export_trace import (
    _ILLEGAL,
    MODES,
    ExportTrace,
    FailedTrace,
    _failed_graph,
    _is_assert,
    _is_tensor,
    trace_export,
)

__all__ = ["ExportFeatureExtractor", "create_export_extractor"]

# ---------------------------------------------------------------------------------------------
# Aliasing: the training IR of torch.export is not functional (relu_, add_ stay in-place).


# Composite ops whose schema shows no alias but whose Python-level code may return the input
# itself (``dropout`` in eval or with p=0, ``type_as`` to the same type, a permuting ``einsum``)
# are assumed to alias it, except these, known to build a new tensor.
_FRESH_COMPOSITE = {
    "linear",
    "bilinear",
    "matmul",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "layer_norm",
    "group_norm",
    "batch_norm",
    "instance_norm",
    "rms_norm",
    "softmax",
    "log_softmax",
    "scaled_dot_product_attention",
    "pad",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "embedding_bag",
}


@functools.cache
def _may_return_input(op: Any) -> bool:
    if not isinstance(op, torch._ops.OpOverload) or op._schema.name.split("::")[-1] in _FRESH_COMPOSITE:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "CompositeImplicitAutograd")


def _alias_info(graph: fx.Graph) -> tuple[dict[fx.Node, fx.Node], dict[fx.Node, list[fx.Node]]]:
    """For every node, the node whose storage it shares (its root), and the roots it writes.

    Read from the ops' schemas: ``view(Tensor(a) self) -> Tensor(a)`` aliases its input,
    ``relu_(Tensor(a!) self)`` writes it.
    """
    roots: dict[fx.Node, fx.Node] = {}
    writes: dict[fx.Node, list[fx.Node]] = {}
    for node in graph.nodes:
        root, written = node, []
        target = node.target
        if node.op == "call_function" and isinstance(target, torch._ops.OpOverload):
            schema = target._schema
            ret_sets = {s for r in schema.returns if r.alias_info for s in r.alias_info.before_set}
            for i, arg in enumerate(schema.arguments):
                value = node.args[i] if i < len(node.args) else node.kwargs.get(arg.name)
                if arg.alias_info is None or not isinstance(value, fx.Node):
                    continue
                if arg.alias_info.is_write:
                    written.append(roots.get(value, value))
                if ret_sets & set(arg.alias_info.before_set) and root is node:
                    root = roots.get(value, value)
            if root is node and not ret_sets and _may_return_input(target):
                inputs = node.all_input_nodes  # einsum takes a list
                if inputs:
                    root = roots.get(inputs[0], inputs[0])
        elif node.op == "call_function" and target is operator.getitem:
            source = node.args[0]
            if isinstance(source, fx.Node) and roots.get(source, source) is not source:
                root = roots[source]  # an element of split()/unbind(): a view of the input
        roots[node] = root
        if written:
            writes[node] = written
    return roots, writes


def _tensor_sources(node: fx.Node) -> tuple[list[fx.Node], list[fx.Node]]:
    """For an assertion: the tensors it checks and the size computations in between."""
    tensors, chain, todo, seen = [], [], list(node.all_input_nodes), set()
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        if _is_tensor(n) or n.op in ("placeholder", "get_attr"):
            tensors.append(n)
        else:
            chain.append(n)
            todo.extend(n.all_input_nodes)
    return tensors, chain


def _needed_nodes(
    trace: ExportTrace, seeds: list[fx.Node], reads: Optional[dict[fx.Node, list[fx.Node]]] = None
) -> set[fx.Node]:
    """The nodes the ``seeds`` need, in-place writes included (dead code elimination).

    A node is needed if a needed node reads its result, or if it writes in place to a
    tensor (or a view of it) that a later needed node reads. Writes to model state
    (buffers, e.g. batch-norm's ``num_batches_tracked``) are kept when their module call
    runs anyway, as it would in the model. Assertions are kept if what they check is kept.
    ``reads`` gives, per node, the seeds read there (a module call's value at its end): the
    writes before it count.
    """
    reads = reads or {}
    graph = trace.graph_module.graph
    nodes = list(graph.nodes)
    roots, writes = _alias_info(graph)
    state = {n for n in nodes if n.op in ("get_attr", "placeholder")}
    node_call = trace.node_to_call
    needed = {*seeds, *graph.find_nodes(op="placeholder")}  # the inputs stay, used or not
    while True:
        running = {id(c) for n in needed if n in node_call for c in node_call[n].ancestors()}
        live: set[fx.Node] = set()
        before = len(needed)
        for node in reversed(nodes):
            for seed in reads.get(node, ()):
                live.add(roots.get(seed, seed))
            if node not in needed:
                written = writes.get(node, ())
                if any(r in live for r in written):
                    needed.add(node)
                elif any(r in state for r in written):
                    call = node_call.get(node)
                    if call is None:
                        # A top-level state update: kept if it needs nothing not already needed.
                        keep = all(a in needed or a in state for a in node.all_input_nodes)
                    else:
                        keep = id(call) in running
                    if keep:
                        needed.add(node)
            if node in needed:
                for a in node.all_input_nodes:
                    needed.add(a)
                    live.add(roots.get(a, a))
        if len(needed) == before:
            break
    for node in nodes:
        if _is_assert(node):
            tensors, chain = _tensor_sources(node)
            if tensors and all(t in needed for t in tensors):
                needed.add(node)
                needed.update(chain)
    return needed


# ---------------------------------------------------------------------------------------------
# Input check


class _InputCheck(nn.Module):
    """Checks that inputs have the sizes the graph was exported for (export specialises).

    Replaces torch's guard function, which is built with ``exec`` and does not pickle.
    ``specs[i]`` describes the i-th flattened input: ``("tensor", dims)`` with an ``int``
    for a static dim and a symbol name for a dynamic one (``None``: not checked),
    ``("value", v)`` for a constant export specialised on, or ``None``.
    """

    def __init__(
        self, mode: str, names: list[str], specs: list[Any], ranges: dict[str, tuple], dtypes: Any = None
    ) -> None:
        super().__init__()
        self.mode = mode
        self.names = names
        self.specs = specs
        self.ranges = ranges
        self.dtypes = dtypes or {}  # input name -> the dtype exported with

    @staticmethod
    def from_trace(trace: ExportTrace) -> _InputCheck:
        names, specs, dtypes = [], [], {}
        ranges: dict[str, tuple[int, Optional[int]]] = {}
        for sym, vr in trace.range_constraints.items():
            upper = None if str(vr.upper) in ("int_oo", "oo") else int(vr.upper)
            ranges[str(sym)] = (int(vr.lower), upper)
        for node in trace.graph_module.graph.find_nodes(op="placeholder"):
            val = node.meta.get("val")
            names.append(str(node.target))
            if isinstance(val, torch.Tensor):
                dims = [
                    d if isinstance(d, int) else str(d.node.expr) if d.node.expr.is_Symbol else None
                    for d in val.shape
                ]
                specs.append(("tensor", tuple(dims)))
                dtypes[str(node.target)] = str(val.dtype)
            elif isinstance(val, (int, float, bool, str)):
                specs.append(("value", val))
            else:
                specs.append(None)
        return _InputCheck(trace.mode, names, specs, ranges, dtypes)

    def forward(self, *inputs: Any) -> None:
        sizes: dict[str, int] = {}
        for name, spec, value in zip(self.names, self.specs, inputs):
            if spec is None:
                continue
            kind, want = spec
            if kind == "value":
                if value != want:
                    self._fail(f"{name} == {want!r}", repr(value))
                continue
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else None
            if shape is not None:  # an _InputCheck pickled by 0.1 has no dtypes
                check_input_dtype(name, str(value.dtype), getattr(self, "dtypes", {}).get(name), self.mode)
            expected = f"{name} of shape ({', '.join(str(d) if isinstance(d, int) else '*' for d in want)})"
            if shape is None or len(shape) != len(want):
                self._fail(expected, str(shape) if shape is not None else type(value).__name__)
            for dim, got in zip(want, shape):
                if isinstance(dim, int):
                    ok = got == dim
                elif dim is not None:
                    lower, upper = self.ranges.get(dim, (0, None))
                    # Export reports dynamic dims as >= 2 (it specialises 0 and 1) but the graph
                    # runs for 1 too: like torch's own guards, only bounds above 2 are enforced.
                    ok = sizes.setdefault(dim, got) == got and (lower <= 2 or got >= lower)
                    ok = ok and (upper is None or got <= upper)
                else:
                    ok = True
                if not ok:
                    self._fail(expected, str(shape))

    def _fail(self, expected: str, got: str) -> None:
        raise FxtractValueError(
            f"the {self.mode}-mode graph was exported (strategy='export') for {expected}, got {got} "
            "(* = dynamic). Export fixes every size and Python value it is not told is dynamic; "
            "only the batch dim is, and only if example_inputs had batch >= 2. Create the "
            "extractor with example_inputs like the inputs you will use."
        )


# ---------------------------------------------------------------------------------------------
# Extractor


def _extractor_graph(
    trace: ExportTrace, return_nodes: dict[str, str], model: nn.Module
) -> tuple[fx.Graph, dict[str, Any]]:
    """A graph computing only ``{output_key: value}`` for ``return_nodes`` ({name: key}).

    Also returns the attributes it reads, by target: the model's own parameters and
    buffers under their paths, anything export made (constants, the subgraphs of
    higher-order ops, the input check) under a name of this mode's own.
    """
    old = trace.graph_module.graph
    check = f"_fxtract_{trace.mode}_input_check"
    attrs: dict[str, Any] = {check: _InputCheck.from_trace(trace)}

    def target_of(node: fx.Node) -> Any:
        if node.op not in ("get_attr", "call_module"):
            return node.target
        obj = _get_attr(trace.graph_module, node.target)
        target = node.target
        if _get_attr(model, target) is not obj:
            # Both modes' graphs have a `submod_1` or `lifted_tensor_0`, not the same one.
            target = f"_fxtract_{trace.mode}_{_ILLEGAL.sub('_', target)}"
        attrs[target] = obj
        return target

    targets = [(key, *trace.returned(name)) for name, key in return_nodes.items()]
    wanted = [n for _, _, leaves in targets for n in leaves if isinstance(n, fx.Node)]

    # The training IR keeps in-place ops: a result that a later op overwrites (bn1 before
    # relu_(inplace=True)) is cloned where it is read: where it is computed, or for a module
    # call at the call's end (a module that edits its result through a view, #11.4).
    order = {n: i for i, n in enumerate(old.nodes)}
    roots, writes = _alias_info(old)
    last_write: dict[fx.Node, int] = {}
    for node, written in writes.items():
        for r in written:
            last_write[r] = order[node]
    points = [_read_point(trace, name, order) for name in return_nodes]
    reads: dict[fx.Node, list[fx.Node]] = {}  # read point -> the values read there
    read_at: list[dict[fx.Node, fx.Node]] = []  # per target: value -> its read point
    for (_, _, leaves), point in zip(targets, points):
        at = {}
        for n in leaves:
            if isinstance(n, fx.Node):
                at[n] = point if point is not None and order[point] > order[n] else n
                reads.setdefault(at[n], []).append(n)
        read_at.append(at)
    to_clone = {
        (n, p) for at in read_at for n, p in at.items() if last_write.get(roots.get(n, n), -1) > order[p]
    }

    needed = _needed_nodes(trace, wanted, reads)
    new = fx.Graph()
    codegen = old._codegen
    # The output is our dict of what each name returned, each value rebuilt in its own
    # structure (a tuple, a ModelOutput) from the graph's flat list of leaves.
    out_spec = pytree.TreeSpec(dict, [key for key, _, _ in targets], [spec for _, spec, _ in targets])
    if not isinstance(codegen, _PyTreeCodeGen):  # pragma: no cover - export always sets one
        raise TraceError("torch.export returned a graph without input/output pytree information.")
    # Same inputs (args and kwargs, by name) as the model.
    new.set_codegen(_PyTreeCodeGen(codegen.pytree_info._replace(out_spec=out_spec)))
    env: dict[fx.Node, fx.Node] = {}
    clones: dict[fx.Node, fx.Node] = {}
    placeholders = old.find_nodes(op="placeholder")
    for node in old.nodes:
        if node.op == "output" or (node.op != "placeholder" and node not in needed):
            _clone_read(new, node, reads, to_clone, env, clones)  # a read point that is pruned
            continue
        name = trace.node_to_qualname.get(node, node.name)
        copied = new.create_node(
            node.op,
            target_of(node),
            fx.map_arg(node.args, env.__getitem__),
            fx.map_arg(node.kwargs, env.__getitem__),
            name=node.name if node.op == "placeholder" else _ILLEGAL.sub("_", name),
            type_expr=node.type,
        )
        env[node] = copied
        if placeholders and node is placeholders[-1]:
            new.call_module(check, tuple(env[p] for p in placeholders))
        _clone_read(new, node, reads, to_clone, env, clones)

    new.output(
        [
            clones.get((x, at[x]), env[x]) if isinstance(x, fx.Node) else x
            for (_, _, leaves), at in zip(targets, read_at)
            for x in leaves
        ]
    )
    new.lint()
    return new, attrs


def _read_point(trace: ExportTrace, name: str, order: dict[fx.Node, int]) -> Optional[fx.Node]:
    """Where a module call's value is read: its last node (``None``: not a call, or no node)."""
    calls = {c.name: c for c in trace.module_calls}
    call = calls.get(name)
    if call is None and name not in trace._lookup:
        call = last_call_under(trace.module_calls, name)
    if call is None or not call.nodes:
        return None
    return max(call.nodes, key=order.__getitem__)


def _clone_read(
    new: fx.Graph,
    node: fx.Node,
    reads: dict[fx.Node, list[fx.Node]],
    to_clone: set[tuple[fx.Node, fx.Node]],
    env: dict[fx.Node, fx.Node],
    clones: dict[tuple[fx.Node, fx.Node], fx.Node],
) -> None:
    """Clone, after ``node``, each value read there that a later in-place op changes."""
    for value in reads.get(node, ()):
        if (value, node) in to_clone and (value, node) not in clones:
            copied = env[value]
            clones[(value, node)] = new.create_node(
                "call_function", torch.ops.aten.clone.default, (copied,), name=f"{copied.name}_clone"
            )


class ExportFeatureExtractor(fx.GraphModule):
    """A feature extractor over exported graphs: ``forward`` returns ``{key: activation}``.

    It holds one graph per mode; ``.train()`` / ``.eval()`` switch between them (as
    torchvision's ``DualGraphModule``). Parameters and buffers are the model's own objects,
    registered under their original paths, so ``state_dict()`` keys match the model's.
    ``deepcopy`` and ``pickle`` keep both graphs, the mode and :attr:`strategy`.

    Attributes:
        strategy: ``"export"``.
        train_graph: the graph run in train mode.
        eval_graph: the graph run in eval mode.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.5))
        >>> ex = create_export_extractor(m, {"1": "dropped"}, {"0": "linear"}, torch.zeros(2, 3))
        >>> ex.training, list(ex(torch.ones(2, 3)))
        (True, ['dropped'])
        >>> list(ex.eval()(torch.ones(2, 3)))
        ['linear']
    """

    strategy = "export"

    def __init__(
        self,
        root: dict[str, Any],
        train_graph: fx.Graph,
        eval_graph: fx.Graph,
        class_name: str = "ExportFeatureExtractor",
    ) -> None:
        super().__init__(root, train_graph, class_name)
        for target in _attr_targets(eval_graph):
            if _get_attr(self, target) is None:
                fx.graph_module._assign_attr(root[target], self, target)
        # Export's constants move with .to() but stay out of state_dict(), as in the model.
        self._non_persistent_buffers_set.update(k for k in self._buffers if k.startswith("_fxtract_"))
        self.train_graph = train_graph
        self.eval_graph = eval_graph
        self.register_forward_pre_hook(check_extractor_call, with_kwargs=True)

    def __prepare_scriptable__(self) -> None:  # torch.jit.script calls it first
        not_scriptable("export")

    def train(self, mode: bool = True) -> ExportFeatureExtractor:
        graph = self.train_graph if mode else self.eval_graph
        if self.graph is not graph:
            self.graph = graph  # the property recompiles forward
        return super().train(mode)

    def _root(self) -> dict[str, Any]:
        targets = dict.fromkeys([*_attr_targets(self.train_graph), *_attr_targets(self.eval_graph)])
        return {t: _get_attr(self, t) for t in targets}

    def _state(self) -> dict[str, Any]:
        skip = {"training", "train_graph", "eval_graph", "meta"}
        return {
            "root": self._root(),
            "train_graph": self.train_graph,
            "eval_graph": self.eval_graph,
            "training": self.training,
            "class_name": type(self).__name__,
            # attributes set on the extractor (feature_info...), not the module's internals
            "extras": {k: v for k, v in self.__dict__.items() if not k.startswith("_") and k not in skip},
        }

    def __deepcopy__(self, memo: dict[int, Any]) -> ExportFeatureExtractor:
        state = copy.deepcopy(self._state(), memo)
        res = _rebuild(state)
        memo[id(self)] = res
        return res

    def __reduce__(self) -> tuple[Any, ...]:
        # fx.Graph does not pickle and GraphModule pickles as code re-traced on load (losing
        # the input pytree, node names, higher-order ops): the graphs go as node lists.
        state = self._state()
        state["train_graph"] = _graph_state(self.train_graph)
        state["eval_graph"] = _graph_state(self.eval_graph)
        return (_unpickle, (state,))


@dataclass(frozen=True)
class _Ref:
    """A reference to the i-th node, in a pickled graph."""

    index: int


@dataclass(frozen=True)
class _Op:
    """An ``OpOverload`` (``torch.ops.<namespace>.<name>.<overload>``) or a higher-order op."""

    namespace: str
    name: str
    overload: Optional[str]

    def resolve(self) -> Any:
        packet = getattr(getattr(torch.ops, self.namespace), self.name)
        return packet if self.overload is None else getattr(packet, self.overload)


def _encode_target(target: Any) -> Any:
    if isinstance(target, torch._ops.OpOverload):
        return _Op(target.namespace, target._opname, target._overloadname)
    if isinstance(target, torch._ops.HigherOrderOperator):
        return _Op("higher_order", target.name(), None)
    return target  # strings, operator.*, plain functions: pickled by reference


def _graph_state(graph: fx.Graph) -> dict[str, Any]:
    index: dict[fx.Node, int] = {}
    nodes = []
    for i, node in enumerate(graph.nodes):
        index[node] = i
        args = fx.map_arg(node.args, lambda n: _Ref(index[n]))
        kwargs = fx.map_arg(node.kwargs, lambda n: _Ref(index[n]))
        nodes.append((node.op, _encode_target(node.target), tuple(args), dict(kwargs), node.name))
    return {"nodes": nodes, "codegen": graph._codegen}


def _graph_from_state(state: dict[str, Any]) -> fx.Graph:
    graph = fx.Graph()
    graph.set_codegen(state["codegen"])
    nodes: list[fx.Node] = []

    def load(a: Any) -> Any:
        return nodes[a.index] if isinstance(a, _Ref) else a

    for op, target, args, kwargs, name in state["nodes"]:
        if isinstance(target, _Op):
            target = target.resolve()
        args = fx.node.map_aggregate(args, load)
        kwargs = fx.node.map_aggregate(kwargs, load)
        nodes.append(graph.create_node(op, target, args, kwargs, name=name))
    return graph


def _attr_targets(graph: fx.Graph) -> Iterator[str]:
    for node in graph.nodes:
        if node.op in ("get_attr", "call_module"):
            yield str(node.target)


def _get_attr(module: nn.Module, target: str) -> Any:
    """``module``'s attribute at dotted path ``target``, or ``None``."""
    obj: Any = module
    for name in target.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def _rebuild(state: dict[str, Any]) -> ExportFeatureExtractor:
    res = ExportFeatureExtractor(
        state["root"], state["train_graph"], state["eval_graph"], state["class_name"]
    )
    for key, value in state.get("extras", {}).items():
        setattr(res, key, value)
    return res.train(state["training"])


def _unpickle(state: dict[str, Any]) -> ExportFeatureExtractor:
    state["train_graph"] = _graph_from_state(state["train_graph"])
    state["eval_graph"] = _graph_from_state(state["eval_graph"])
    return _rebuild(state)


def create_export_extractor(
    model: nn.Module,
    train_return_nodes: dict[str, str],
    eval_return_nodes: dict[str, str],
    example_inputs: Any,
    *,
    dynamic_batch: bool = True,
    traces: Optional[dict[str, ExportTrace]] = None,
) -> ExportFeatureExtractor:
    """A module returning the activations of the named nodes, built with ``torch.export``.

    The model is exported (non-strict) in train and in eval mode; each mode keeps only the
    nodes its outputs need. A requested name is a node name (:func:`export_node_names`),
    a module call name (:func:`export_module_calls`: the value the call returned, a tuple
    if it returned several tensors), or a path prefix that names no call (the last node
    under it, as in torchvision).

    Shapes: export specialises every input size to the example inputs except, with
    ``dynamic_batch=True``, dim 0 of tensor inputs, which is marked ``Dim.AUTO``: dynamic
    unless the model's code fixes it. A batch of 1 always specialises, so pass examples
    with batch >= 2. If export refuses the dynamic batch it is retried with static shapes.
    Calling the extractor with other static sizes raises an error naming the input.

    Returned activations are never changed by later in-place ops (the export graph keeps
    ``relu_``-style ops; such values are cloned where computed). In train mode the
    extractor updates batch-norm statistics of the modules it runs, as the model would.

    Args:
        model: the model; left unchanged; the extractor shares its parameters and buffers.
        train_return_nodes: ``{node_name: output_key}`` for train mode.
        eval_return_nodes: ``{node_name: output_key}`` for eval mode.
        example_inputs: inputs to export with (see :func:`trace_export`).
        dynamic_batch: make the batch dimension dynamic where export allows.
        traces: the result of :func:`trace_export` for these inputs, to skip exporting again.

    Returns:
        An :class:`ExportFeatureExtractor` in the model's current mode.

    Raises:
        StrategyError: ``example_inputs`` is missing.
        TraceError: ``torch.export`` failed.
        NodeNotFoundError: a name is in neither graph of that mode.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        >>> nodes = {"1": "hidden"}
        >>> ex = create_export_extractor(m, nodes, nodes, torch.zeros(2, 3))
        >>> out = ex(torch.ones(5, 3))
        >>> list(out), tuple(out["hidden"].shape), ex.strategy
        (['hidden'], (5, 4), 'export')
    """
    if traces is None:
        traces = trace_export(model, example_inputs, dynamic_batch=dynamic_batch)
    graphs, root = {}, {}
    failed = [m for m in MODES if isinstance(traces[m], FailedTrace)]
    for mode, return_nodes in (("train", train_return_nodes), ("eval", eval_return_nodes)):
        if mode not in failed:
            graphs[mode], attrs = _extractor_graph(traces[mode], dict(return_nodes), model)
            root.update(attrs)
    for mode in failed:  # the same inputs as the other mode's graph, and a clear error
        graphs[mode] = _failed_graph(traces[mode].message, next(iter(graphs.values())))
    extractor = ExportFeatureExtractor(root, graphs["train"], graphs["eval"])
    return extractor.train(model.training)
