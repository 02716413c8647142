"""Stage 3, rewrite: turn a traced graph into one that returns the requested values.

Three passes over one ``fx.Graph``, each linear in its size:

* :func:`resolve` maps each query to a value: a node by exact name, or the very
  object a module call returned (a prefix), never "the last op inside it";
* :func:`protect_outputs` clones a returned value only where a later in-place op
  would change it (a light alias analysis);
* :func:`prune` keeps exactly what the outputs need, plus the side effects of the
  kept computation (buffer updates, grad-mode regions, checks on kept values).
"""

from __future__ import annotations

import bisect
import builtins
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, Optional

import torch
from torch import fx, nn

from .._errors import FxtractTypeError, NodeNotFoundError, did_you_mean
from .._naming import (
    _INPLACE_DUNDERS,
    ModuleCall,
    NodePathTracer,
    _out_of_place,
    is_inplace_name,
    last_call_under,
)
from .._runtime import clone_tree, set_grad_enabled

__all__ = ["PruneStats", "build_output", "protect_outputs", "prune", "resolve"]


# ---------------------------------------------------------------------------------------------
# resolve


def available_names(tracer: NodePathTracer) -> list[str]:
    """Node names, then the names of traced-through module calls (prefixes)."""
    names = list(tracer.node_to_qualname.values())
    names += [c.name for c in tracer.module_calls if not c.leaf]
    return names


def resolve(
    tracer: NodePathTracer, queries: Iterable[str], mode: str
) -> tuple[dict[str, Any], dict[str, fx.Node]]:
    """``{query: value}`` where value is an ``fx.Node`` or a structure of them, and where to read it.

    The second dict gives, for a query that names a module call, the node after which its
    value is read (the call's end: ``x.add_(pos)`` inside the module counts).

    A query is an exact node name, else the name of a module call (``layer1``, or
    ``layer1_1`` for its second call), which resolves to what that call returned, else
    the path of a module that is never called itself (a ``ModuleList`` that ``forward``
    iterates), which resolves to what the call that finished last inside it returned
    (:func:`~fxtract._naming.last_call_under`).
    """
    by_name = {name: node for node, name in tracer.node_to_qualname.items()}
    calls = {c.name: c for c in tracer.module_calls}
    out: dict[str, Any] = {}
    read_at: dict[str, fx.Node] = {}
    for query in queries:
        if query in by_name:
            out[query] = by_name[query]
            continue
        call = calls.get(query) or last_call_under(tracer.module_calls, query)
        if call is None:
            raise _not_found(tracer, query, mode)
        out[query] = _as_arg(call)
        if call.end is not None:
            read_at[query] = call.end
    return out, read_at


def _not_found(tracer: NodePathTracer, query: str, mode: str) -> NodeNotFoundError:
    leaf = _enclosing_leaf(tracer, query)
    if leaf is not None:
        return NodeNotFoundError(
            f"node {query!r} is inside {leaf.name!r}, a leaf module ({leaf.module_type.__name__}) "
            f"that FX records as one call in the {mode} graph. Ask for {leaf.name!r}, or use "
            "strategy='hooks' or 'export' (with example_inputs), which see the calls inside it."
        )
    return NodeNotFoundError(
        f"node {query!r} is not in the {mode} graph of the model.{did_you_mean(query, available_names(tracer))} "
        f"List the names with fxtract.get_graph_node_names(model) (or `fxtract nodes MODEL`); "
        "if the train and eval graphs differ, pass train_return_nodes and eval_return_nodes."
    )


def _enclosing_leaf(tracer: NodePathTracer, query: str) -> Optional[ModuleCall]:
    """The leaf module call whose module contains the module path ``query``, if any."""
    leaves = {c.path: c for c in tracer.module_calls if c.leaf}
    parts = query.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        call = leaves.get(".".join(parts[:depth]))
        if call is not None:
            return call
    return None


class _Rebuild(NamedTuple):
    """A dict subclass (``OrderedDict``, a ``ModelOutput``) in a graph's output, rebuilt by
    :func:`build_structures` (FX turns a dict argument into a plain ``immutable_dict``)."""

    cls: type
    items: dict


def _as_arg(call: ModuleCall) -> Any:
    def unwrap(x: Any) -> Any:
        if isinstance(x, fx.Proxy):
            return x.node
        if isinstance(x, dict) and type(x) is not dict and all(isinstance(k, str) for k in x):
            return _Rebuild(type(x), {k: unwrap(v) for k, v in x.items()})
        if isinstance(x, tuple) and hasattr(x, "_fields"):
            return type(x)(*(unwrap(v) for v in x))
        if isinstance(x, (tuple, list)):
            return type(x)(unwrap(v) for v in x)
        if isinstance(x, dict):
            return {k: unwrap(v) for k, v in x.items()}
        return x

    try:
        return unwrap(call.output)
    except Exception as e:  # pragma: no cover - exotic containers
        raise FxtractTypeError(
            f"module call {call.name!r} returned a {type(call.output).__name__}, which an FX graph cannot "
            "return; request the nodes inside it instead, or use strategy='hooks'."
        ) from e


def build_output(graph: fx.Graph, outputs: Mapping[str, Any]) -> fx.Node:
    """Replace the graph's output with ``{key: value}`` (insertion order kept)."""
    old = [n for n in graph.nodes if n.op == "output"]
    for n in old:
        graph.erase_node(n)
    return graph.output(dict(outputs))


def build_structures(graph: fx.Graph) -> int:
    """Make each namedtuple or dict subclass in the output a node that builds it; return how many.

    FX writes a structure nested in the output dict as its ``repr`` (``Pair(a=x, b=y)``), a
    name the generated code does not know when the type is not defined where the model is
    (#17.4); a ``call_function`` node registers the type itself. Runs last: the clones and
    the pruning see the tensors inside the structures.
    """
    output = next(n for n in reversed(graph.nodes) if n.op == "output")
    built = 0

    def visit(v: Any) -> Any:
        nonlocal built
        if isinstance(v, _Rebuild):
            built += 1
            return graph.call_function(v.cls, (), {k: visit(x) for k, x in v.items.items()})
        if isinstance(v, tuple) and hasattr(v, "_fields"):
            built += 1
            return graph.call_function(type(v), tuple(visit(x) for x in v))
        if isinstance(v, (tuple, list)):
            return type(v)(visit(x) for x in v)
        if isinstance(v, dict):
            return {k: visit(x) for k, x in v.items()}
        return v

    with graph.inserting_before(output):
        output.args = tuple(visit(a) for a in output.args)
    return built


# ---------------------------------------------------------------------------------------------
# alias analysis (shared by protect_outputs and prune)

# Ops whose result never shares memory with an input.
_FRESH = {
    "add",
    "sub",
    "mul",
    "truediv",
    "div",
    "floordiv",
    "mod",
    "matmul",
    "mm",
    "bmm",
    "pow",
    "neg",
    "abs",
    "exp",
    "log",
    "sqrt",
    "rsqrt",
    "sigmoid",
    "tanh",
    "relu",
    "relu6",
    "gelu",
    "silu",
    "hardswish",
    "hardsigmoid",
    "hardtanh",
    "leaky_relu",
    "elu",
    "mish",
    "softmax",
    "log_softmax",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose2d",
    "linear",
    "layer_norm",
    "batch_norm",
    "group_norm",
    "instance_norm",
    "cat",
    "concat",
    "stack",
    "mean",
    "sum",
    "amax",
    "amin",
    "std",
    "var",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "interpolate",
    "clone",
    "scaled_dot_product_attention",
    "baddbmm",
    "addmm",
    "cumsum",
    "normalize",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "where",
    "zeros_like",
    "ones_like",
    "randn_like",
    "arange",
    "zeros",
    "ones",
    "full",
    "empty",
    "rand",
    "randn",
    "tensor",
    "softplus",
    "erf",
    "cos",
    "sin",
    "sign",
    "round",
    "floor",
    "ceil",
    "clamp",
    "pad",
    "roll",
    "embedding",
}

# Modules whose output is a new tensor.
_FRESH_MODULES: tuple[type, ...] = (
    nn.modules.conv._ConvNd,
    nn.Linear,
    nn.Bilinear,
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.Embedding,
    nn.EmbeddingBag,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.Upsample,
    nn.Softmax,
    nn.LogSoftmax,
    nn.GELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.PReLU,
    nn.Softplus,
)

# Modules whose output is a new tensor unless their `inplace` flag is set. Any other module with
# an `inplace` flag may still return its input itself (a Dropout in eval or with p=0).
_FRESH_UNLESS_INPLACE: tuple[type, ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Threshold,
    nn.RReLU,
)

# Queries whose result is no tensor (sizes, flags, Python numbers): they share no memory.
_NON_TENSOR_ATTRS = {"shape", "dtype", "device", "ndim", "layout", "is_cuda", "requires_grad", "names"}
_NON_TENSOR_METHODS = {"size", "dim", "ndimension", "numel", "nelement", "stride", "element_size", "item"}
_NON_TENSOR_METHODS |= {"tolist", "is_contiguous", "is_floating_point", "data_ptr", "storage_offset"}


def _no_tensor(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in _NON_TENSOR_METHODS
    if node.target is getattr:
        return len(node.args) >= 2 and node.args[1] in _NON_TENSOR_ATTRS
    return node.target is len


# Container-returning ops: clone their elements, not the container.
_CONTAINER_OPS = {
    "chunk",
    "split",
    "unbind",
    "tensor_split",
    "split_with_sizes",
    "topk",
    "sort",
    "max",
    "min",
}


def _op_name(node: fx.Node) -> str:
    if node.op == "call_method":
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))


@functools.cache
def _inplace_position(target: Any) -> Optional[int]:
    try:
        params = list(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return None
    return params.index("inplace") if "inplace" in params else None


def _inplace_arg(node: fx.Node) -> bool:
    """``inplace=True`` given by keyword or by position (``F.relu(x, True)``)."""
    if node.kwargs.get("inplace") is True:
        return True
    if node.op != "call_function":
        return False
    try:
        i = _inplace_position(node.target)
    except TypeError:  # unhashable target
        return False
    return i is not None and i < len(node.args) and node.args[i] is True


_KNOWN_CODE = ("torch.nn.", "torchvision.ops.")


def _may_write_inputs(m: Optional[nn.Module]) -> bool:
    """A leaf with code fxtract does not know (not ``torch.nn`` or ``torchvision.ops`` throughout)."""
    return m is None or any(not type(c).__module__.startswith(_KNOWN_CODE) for c in m.modules())


def _first_leaf(m: nn.Module) -> Optional[nn.Module]:
    for child in m.modules():
        if child is not m and not any(True for _ in child.children()):
            return child
    return None


class _Aliases:
    """Which "storage roots" each node may share memory with, and which roots it mutates."""

    def __init__(self, graph: fx.Graph, root: nn.Module) -> None:
        self.roots: dict[fx.Node, frozenset[fx.Node]] = {}
        self.mutates: dict[fx.Node, frozenset[fx.Node]] = {}
        self.assumed: set[fx.Node] = set()  # writes assumed of opaque leaves, not known
        self.scalars: set[fx.Node] = set()  # nodes whose value is no tensor
        modules = dict(root.named_modules())
        for node in graph.nodes:
            self._visit(node, modules)

    def _on_numbers(self, node: fx.Node) -> bool:
        """Python arithmetic or indexing on values that are no tensors (sizes)."""
        inputs = node.all_input_nodes
        module = getattr(node.target, "__module__", None)
        return (
            bool(inputs)
            and all(n in self.scalars for n in inputs)
            and module in ("_operator", "builtins", "math")
        )

    def _inputs_roots(self, node: fx.Node) -> frozenset[fx.Node]:
        out: set[fx.Node] = set()
        for inp in node.all_input_nodes:
            out |= self.roots.get(inp, frozenset())
        return frozenset(out)

    def _visit(self, node: fx.Node, modules: dict[str, nn.Module]) -> None:
        first = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        first_roots = self.roots.get(first, frozenset()) if first is not None else frozenset()
        if node.op in ("placeholder", "get_attr"):
            self.roots[node] = frozenset((node,))
            return
        if node.op == "output":
            return
        if node.op == "call_module":
            m = modules.get(str(node.target))
            inplace = getattr(m, "inplace", None)
            if inplace is True or (inplace is None and getattr(_first_leaf(m), "inplace", False) is True):
                self.mutates[node] = first_roots
                self.roots[node] = first_roots | {node}
            elif isinstance(m, _FRESH_MODULES) or (inplace is False and isinstance(m, _FRESH_UNLESS_INPLACE)):
                self.roots[node] = frozenset((node,))
            else:
                self.roots[node] = self._inputs_roots(node) | {node}
                if _may_write_inputs(m):
                    # Opaque code (an automatic or user leaf) may write what it is given (#17.6).
                    self.mutates[node] = self._inputs_roots(node)
                    self.assumed.add(node)
            return
        name = _op_name(node)
        out_kw = node.kwargs.get("out")
        if _no_tensor(node) or self._on_numbers(node):  # x.shape, x.shape[0] * 2: no memory
            self.scalars.add(node)
            self.roots[node] = frozenset()
        elif node.meta.get("fxtract_effect"):
            # An opaque function called for its effect: it may write any tensor it is given.
            self.mutates[node] = self._inputs_roots(node)
            self.roots[node] = self.mutates[node] | {node}
        elif isinstance(out_kw, fx.Node):
            self.mutates[node] = self.roots.get(out_kw, frozenset())
            self.roots[node] = self.mutates[node]
        elif is_inplace_name(name) or node.target in _INPLACE_DUNDERS.values() or _inplace_arg(node):
            self.mutates[node] = first_roots
            self.roots[node] = first_roots | {node}
        elif name in _FRESH:
            self.roots[node] = frozenset((node,))
        else:
            self.roots[node] = self._inputs_roots(node) | {node}


# ---------------------------------------------------------------------------------------------
# augmented assignments


def demote_augmented(graph: fx.Graph, root: nn.Module, tracer: NodePathTracer) -> int:
    """Make ``out += x`` out of place where no one could tell; return how many.

    The tracer records augmented assignments in place, as Python runs them on tensors
    (``y = h; y += 1`` writes ``h``). That is needed only if the value written is seen
    under another name: it has users other than the assignment, it may share memory with
    another value (a view, an input), or a module call returns it after the write. Else
    the out-of-place op computes the same, and a requested value before it (ResNet's
    ``bn2`` before ``out += identity``) needs no clone.
    """
    aliases = _Aliases(graph, root)
    order = {n: i for i, n in enumerate(graph.nodes)}
    read_late: dict[fx.Node, int] = {}  # a node returned by a module call, and where the call ended
    for call in tracer.module_calls:
        if call.end is not None:
            for n in _nodes_in(_as_arg(call)):
                read_late[n] = max(read_late.get(n, -1), order.get(call.end, -1))
    demoted = 0
    for node in graph.nodes:
        target = node.args[0] if node.meta.get("fxtract_augmented") and node.args else None
        if (
            isinstance(target, fx.Node)
            and len(target.users) == 1
            and aliases.roots.get(target) == frozenset((target,))
            and read_late.get(target, -1) < order[node]
        ):
            node.target = _OUT_OF_PLACE[node.target]
            demoted += 1
    return demoted


_OUT_OF_PLACE = {op: _out_of_place(op) for name, op in _INPLACE_DUNDERS.items() if name != "__setitem__"}


def _nodes_in(value: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg(value, lambda n: out.append(n) or n)
    return out


# ---------------------------------------------------------------------------------------------
# protect_outputs


def _is_container(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    """Whether ``node`` may be a tuple / list / dict of tensors rather than one tensor."""
    if node.op == "call_module":
        return not _returns_tensor(modules.get(str(node.target)))
    return node.op in ("call_function", "call_method") and _op_name(node) in _CONTAINER_OPS


def _returns_tensor(m: Optional[nn.Module]) -> bool:
    """A leaf known to return one tensor: a ``torch.nn`` module other than the tuple-returning ones."""
    if m is None or not type(m).__module__.startswith("torch.nn."):
        return False  # a user's leaf may return anything
    tuples = (nn.RNNBase, nn.MultiheadAttention, nn.AdaptiveLogSoftmaxWithLoss, nn.Sequential)
    return not isinstance(m, tuples) and not getattr(m, "return_indices", False)


def _written_after(graph: fx.Graph, root: nn.Module) -> Callable[[fx.Node, fx.Node], bool]:
    """``f(value, point)``: does an in-place op after ``point`` change memory ``value`` may share?"""
    aliases = _Aliases(graph, root)
    order = {n: i for i, n in enumerate(graph.nodes)}
    last_write: dict[fx.Node, int] = {}  # per storage root, the position of its last in-place op
    for m, roots in aliases.mutates.items():
        for r in roots:
            last_write[r] = max(last_write.get(r, -1), order[m])

    def written_after(value: fx.Node, point: fx.Node) -> bool:
        return any(last_write.get(r, -1) > order[point] for r in aliases.roots.get(value, ()))

    return written_after


def protect_outputs(graph: fx.Graph, root: nn.Module, read_at: Optional[Mapping[str, fx.Node]] = None) -> int:
    """Clone each returned value that a later in-place op would change; return the clone count.

    A value is read where it is made, or, for an output key in ``read_at`` (a module call),
    after that node (the call's end); the clone goes there, only if an in-place op after it
    writes the value's memory.
    """
    read_at = read_at or {}
    output = next(n for n in reversed(graph.nodes) if n.op == "output")
    outputs = output.args[0]
    if not isinstance(outputs, Mapping) or not outputs:
        return 0
    written_after = _written_after(graph, root)
    order = {n: i for i, n in enumerate(graph.nodes)}
    clones: dict[tuple[fx.Node, fx.Node], fx.Node] = {}
    modules = dict(root.named_modules())

    def protect(node: fx.Node, point: fx.Node) -> fx.Node:
        if order[point] < order[node]:
            point = node
        if not written_after(node, point):
            return node
        if (node, point) not in clones:
            with graph.inserting_after(point):
                if _is_container(node, modules):
                    clone = graph.call_function(clone_tree, (node,))
                else:
                    clone = graph.call_method("clone", (node,))
            clone.meta["fxtract_clone"] = True
            clones[(node, point)] = clone
        return clones[(node, point)]

    new = {
        key: fx.node.map_arg(value, lambda n, key=key: protect(n, read_at.get(key, n)))
        for key, value in outputs.items()
    }
    output.args = (new,)
    return len(clones)


def drop_needless_clones(graph: fx.Graph, root: nn.Module) -> int:
    """Remove the clones whose in-place writer was pruned; return how many clones remain.

    ``protect_outputs`` runs before pruning (a clone is what lets the pruner drop the
    in-place op that follows a returned value), so some clones guard an op that is gone.
    """
    clones = [n for n in graph.nodes if n.meta.get("fxtract_clone")]
    if not clones:
        return 0
    written_after = _written_after(graph, root)
    remaining = 0
    for clone in clones:
        source = clone.args[0]
        if written_after(source, clone):
            remaining += 1
            continue
        clone.replace_all_uses_with(source)
        graph.erase_node(clone)
    return remaining


# ---------------------------------------------------------------------------------------------
# prune

_CHEAP_METHODS = {"dim", "size", "numel", "ndimension", "is_contiguous", "get_device", "nelement", "__len__"}
_CHEAP_ATTRS = {"shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "layout", "is_sparse"}
_CHECKS = {torch._assert}
for _name in ("_assert_async", "_check", "_check_is_size", "_check_index", "_check_value", "_check_type"):
    if hasattr(torch, _name):
        _CHECKS.add(getattr(torch, _name))


class PruneStats(dict):
    """``{"nodes_before", "nodes_after", "compute_before", "compute_after"}``."""


def is_compute(node: fx.Node) -> bool:
    return node.op in ("call_module", "call_function", "call_method") and node.target is not set_grad_enabled


def _is_cheap(node: fx.Node) -> bool:
    if node.op in ("placeholder", "get_attr"):
        return True
    if node.op == "call_method":
        return node.target in _CHEAP_METHODS
    if node.op == "call_function":
        if node.target is builtins.getattr:
            return len(node.args) > 1 and node.args[1] in _CHEAP_ATTRS
        mod = getattr(node.target, "__module__", None)
        return node.target is builtins.len or mod in ("_operator", "operator", "math", "builtins")
    return False


def prune(graph: fx.Graph, root: nn.Module, tracer: NodePathTracer) -> PruneStats:
    """Erase every node the outputs do not need, keeping the kept computation's side effects.

    * data dependencies of the output, and in-place ops whose effect a kept node reads;
    * checks (``torch._assert``...) that guard a module call with kept computation, when
      they need no computation beyond cheap shape/dtype glue;
    * state updates (in-place ops on buffers or inputs) of module calls with kept computation;
    * ``no_grad`` / ``enable_grad`` regions that contain a kept node.
    """
    nodes = list(graph.nodes)
    stats = PruneStats(nodes_before=len(nodes), compute_before=sum(is_compute(n) for n in nodes))
    aliases = _Aliases(graph, root)
    scope = tracer.node_to_call
    modules = dict(root.named_modules())

    kept: set[fx.Node] = set()
    needed: set[fx.Node] = set()
    live: set[fx.Node] = set()  # roots read by kept nodes later in the graph
    for node in reversed(nodes):
        if not (
            node.op in ("output", "placeholder")
            or node in needed
            or (node in aliases.mutates and aliases.mutates[node] & live)
        ):
            continue
        kept.add(node)
        for inp in node.all_input_nodes:
            needed.add(inp)
            live |= aliases.roots.get(inp, frozenset())

    def mark_scopes() -> set[int]:
        out: set[int] = set()
        for n in kept:
            if is_compute(n) and n in scope:
                out.update(id(c) for c in scope[n].ancestors())
        return out

    active = mark_scopes()

    def in_active_scope(n: fx.Node) -> bool:
        return id(scope.get(n, tracer._root_call)) in active

    def closure(n: fx.Node, cheap_only: bool) -> Optional[set[fx.Node]]:
        out, stack = set(), [n]
        while stack:
            cur = stack.pop()
            if cur in kept or cur in out:
                continue
            if cheap_only and cur is not n and not _is_cheap(cur):
                return None
            out.add(cur)
            stack.extend(cur.all_input_nodes)
        return out

    for node in nodes:
        if node in kept or node.op not in ("call_function", "call_method", "call_module"):
            continue
        external = node not in aliases.assumed and any(
            r.op in ("get_attr", "placeholder") for r in aliases.mutates.get(node, ())
        )
        if external or node.meta.get("fxtract_state_update"):
            add = closure(node, cheap_only=False) if in_active_scope(node) else None
        elif node.target in _CHECKS or _is_impure(node, modules):
            add = closure(node, cheap_only=True) if in_active_scope(node) else None
        else:
            add = None
        if add:
            kept.update(add)

    # Grad-mode regions: an enter node returns the previous mode, its exit node restores it.
    order = {n: i for i, n in enumerate(nodes)}
    kept_positions = sorted(order[n] for n in kept if is_compute(n))
    for node in nodes:
        if node.target is set_grad_enabled and node.args and isinstance(node.args[0], fx.Node):
            enter, exit_ = node.args[0], node
            lo, hi = order[enter], order[exit_]
            if any(lo < p < hi for p in _between(kept_positions, lo, hi)):
                kept.update((enter, exit_))

    for node in reversed(nodes):
        if node not in kept:
            graph.erase_node(node)
    remaining = list(graph.nodes)
    stats.update(nodes_after=len(remaining), compute_after=sum(is_compute(n) for n in remaining))
    return stats


def _is_impure(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.target is set_grad_enabled:
        return False
    if node.op == "call_module":
        return bool(getattr(modules.get(str(node.target)), "_is_impure", False))
    return node.is_impure()


def _between(sorted_positions: list[int], lo: int, hi: int) -> list[int]:
    i = bisect.bisect_right(sorted_positions, lo)
    return sorted_positions[i : i + 1] if i < len(sorted_positions) and sorted_positions[i] < hi else []
