"""Strategy "export", the trace: export a model in each mode and name the nodes of its graphs.

For models whose top-level ``forward`` FX cannot trace (a Python ``if`` on shapes, as in a
DINO ViT's ``interpolate_pos_encoding``; Hugging Face models), ``torch.export.export``
(non-strict) runs the real Python code on fake tensors and records the ATen ops that ran.
The names follow the FX strategy's rules (see :mod:`fxtract._naming`), so a model FX can
trace gets the same names from both:

- every op node is ``<innermost module path>.<aten op>`` (``layer1.0.add``; in-place ops
  lose their ``_`` as in FX), a top-level op just ``<aten op>``; repeats within the same
  module get ``_1``, ``_2``... The innermost module comes from the node's
  ``meta["nn_module_stack"]``, whose keys tell repeated calls apart: ``L__self__relu`` is
  the first call of ``relu``, ``L__self__relu@1`` the second;
- the value a leaf module call returned (``torch.nn`` modules, torchvision ops: the modules
  FX does not trace through) is named by the call: the module's path for its first call,
  ``path_1``, ``path_2``... for later ones;
- every module call, leaf or not, is addressable by that call name and resolves to the
  value the call returned. Global module hooks, active while exporting, see each call's
  (fake) result; export's proxy tracer maps it to the graph node that produced it.

The model is exported once in train and once in eval mode; each mode has its own graph.

Limits: sizes other than the batch dim, Python values and the device are fixed at export
(an extractor built on CPU computes some constants on CPU); ops inside a
``torch.no_grad()`` block are one higher-order op (its outputs are addressable, not its
ops); the recording hooks are global while exporting (do not export from two threads).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import io
import keyword
import logging
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import fx, nn
from torch.utils import _pytree as pytree

from .._errors import (
    FxtractTypeError,
    NodeNotFoundError,
    StrategyError,
    TraceError,
    did_you_mean,
)
from .._inputs import normalize_inputs
from .._model_state import ModelSnapshot, training_mode
from .._naming import (
    LeafModuleAwareTracer,
    ModuleCall,
    UniqueNamer,
    default_tracer_kwargs,
    last_call_under,
)

__all__ = [
    "ExportTrace",
    "export_module_calls",
    "export_node_names",
    "trace_export",
]

MODES = ("train", "eval")
# What a requested name resolves to: one node, or the nodes a module call returned.
Target = Union[fx.Node, tuple[fx.Node, ...]]

try:  # the proxy tracer's map from tensors to graph nodes (private; absent -> escape analysis)
    from torch.fx.experimental.proxy_tensor import get_proxy_mode, get_proxy_slot
except ImportError:  # pragma: no cover
    get_proxy_mode = get_proxy_slot = None  # type: ignore[assignment]

_TOKENS = "fxtract_returned"
# Values a graph can return as they are (a module's or the model's output).
_CONSTANTS = (int, float, bool, str, type(None))
_ILLEGAL = re.compile(r"[^0-9a-zA-Z_]+")
# Ops that only check values (no result anyone reads); kept only when what they check is kept.
_ASSERTS = {
    torch.ops.aten._assert_async.msg,
    torch.ops.aten._assert_scalar.default,
    torch.ops.aten._assert_tensor_metadata.default,
    torch.ops.aten.sym_constrain_range.default,
    torch.ops.aten.sym_constrain_range_for_size.default,
}


# ---------------------------------------------------------------------------------------------
# Export


def _batch_dynamic_shapes(model: nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    """``dynamic_shapes`` marking dim 0 of every tensor input with ``Dim.AUTO``.

    ``Dim.AUTO`` (not a named ``Dim("batch")``) never makes export refuse: a dim the code
    specialises (``x.view(2, -1)``) silently stays static, and inputs need not share one
    batch size. Dims of size 0 or 1 always specialise (with a warning), so they are left
    static up front.
    """

    def spec(x: Any) -> Optional[dict[int, Any]]:
        if isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] >= 2:
            return {0: torch.export.Dim.AUTO}
        return None

    # Keyed by forward's parameter names: export matches keyword arguments by name.
    bound = inspect.signature(model.forward).bind(*args, **kwargs)
    return {name: pytree.tree_map(spec, value) for name, value in bound.arguments.items()}


class _CallRecorder:
    """Global module hooks, active during export, that record every module call.

    For each call of a submodule: its path, parent, and what it returned. Non-strict export
    runs the real modules, so a forward hook sees the returned (fake) tensors; the proxy
    tracer maps each to the graph node that produced it, which gets a token in its
    ``meta`` (meta survives export's graph copies). This finds what a call returned even
    when no node inside it computed it (``nn.Identity`` returns its input).
    """

    def __init__(self, model: nn.Module, leaf: LeafModuleAwareTracer) -> None:
        self.paths = {id(m): p for p, m in model.named_modules() if p}
        self.modules = dict(model.named_modules())
        # Every path to a module, to the one path the hooks record (a module shared by two parents).
        self.canonical = {p: self.paths[id(m)] for p, m in model.named_modules(remove_duplicate=False) if p}
        self.leaf = leaf
        self.calls: list[ModuleCall] = []
        self.by_key: dict[tuple[str, int], ModuleCall] = {}
        # id(call) -> what it returned: (structure, leaves with a _Token per tensor), or None
        self.returned: dict[int, Optional[tuple[pytree.TreeSpec, list[Any]]]] = {}
        self._count: dict[str, int] = {}
        self._stack: list[ModuleCall] = []
        self._next_token = 0

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        pre = nn.modules.module.register_module_forward_pre_hook(self._pre)
        post = nn.modules.module.register_module_forward_hook(self._post)
        try:
            yield
        finally:
            pre.remove()
            post.remove()

    def _pre(self, module: nn.Module, args: Any) -> None:
        path = self.paths.get(id(_base_module(module)))
        if path is None:
            return
        k = self._count.get(path, 0)
        self._count[path] = k + 1
        parent = self._stack[-1] if self._stack else None
        call = ModuleCall(path, "", type(module), self.leaf.is_leaf_module(module, path), parent)
        self.calls.append(call)
        self.by_key[(path, k)] = call
        self._stack.append(call)

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        if id(_base_module(module)) not in self.paths or not self._stack:
            return
        call = self._stack.pop()
        try:
            self.returned[id(call)] = self._tag(output)
        except Exception:  # private torch API: never let it break the export
            self.returned[id(call)] = None

    def _tag(self, output: Any) -> Optional[tuple[pytree.TreeSpec, list[Any]]]:
        """``output``'s structure and leaves, a tensor leaf as a :class:`_Token` on its node.

        An object that is no tensor and no plain constant (a Hugging Face cache) is ``None``
        in the structure. ``None`` if a tensor's node is unknown (a parameter returned as is)
        or a leaf is a symbolic size: the call's tensors are then found from the graph
        (:func:`_call_output`).
        """
        mode = get_proxy_mode() if get_proxy_mode is not None else None
        if mode is None:
            return None
        leaves, spec = pytree.tree_flatten(output)
        tagged: list[Any] = []
        for leaf in leaves:
            if isinstance(leaf, torch.Tensor):
                slot = get_proxy_slot(leaf, mode.tracer, None)
                if slot is None:
                    return None
                self._next_token += 1
                slot.proxy.node.meta.setdefault(_TOKENS, []).append(self._next_token)
                tagged.append(_Token(self._next_token))
            elif type(leaf) in _CONSTANTS:
                tagged.append(leaf)
            elif isinstance(leaf, (torch.SymInt, torch.SymFloat, torch.SymBool)):
                return None
            else:
                tagged.append(None)  # an object a graph cannot return (a HF cache): None in its place
        return spec, tagged


def _base_module(module: nn.Module) -> nn.Module:
    """The model's own module behind export's stand-in (a model with a shared module runs on
    ``_AttrProxy`` objects, one per path)."""
    get_base = getattr(type(module), "get_base", None)
    return get_base(module) if get_base is not None else module


@dataclass(frozen=True)
class _Token:
    """Stands, in a recorded module output, for the tensor a graph node tagged ``n`` computed."""

    n: int


@contextlib.contextmanager
def _quiet_export() -> Iterator[io.StringIO]:
    """Hold back what a failing export prints (its partial graph, a symbolic-shapes warning).

    A failure is normal here (the next strategy is tried) and our error says why in a
    few lines; on success what was printed is passed on. The model's own warnings about
    attributes its forward assigns are dropped: the snapshot restores those attributes.
    """
    buffer = io.StringIO()
    shapes_log = logging.getLogger("torch.fx.experimental.symbolic_shapes")
    disabled = shapes_log.disabled
    shapes_log.disabled = True
    try:
        with contextlib.redirect_stderr(buffer), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"The tensor attributes .* were assigned during export")
            yield buffer
    finally:
        shapes_log.disabled = disabled


@contextlib.contextmanager
def _exportable_output(model: nn.Module) -> Iterator[None]:
    """While exporting, replace what the model returns that export cannot (a HF ``DynamicCache``) by None.

    Export refuses an output object it has no pytree for; the extractor never returns the
    model's own output, only what its modules returned, so nothing is lost.
    """

    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        return pytree.tree_map(
            lambda x: x if isinstance(x, torch.Tensor) or type(x) in _CONSTANTS else None, output
        )

    handle = model.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _export(
    model: nn.Module, args: tuple, kwargs: dict, mode: str, dynamic_batch: bool, leaf: LeafModuleAwareTracer
) -> tuple[Any, _CallRecorder]:
    """``torch.export.export`` in ``mode``, leaving ``model`` exactly as it was."""
    attempts = [True, False] if dynamic_batch else [False]
    errors = []
    for dynamic in attempts:
        recorder = _CallRecorder(model, leaf)
        # Non-strict export runs the real forward: attributes it assigns would keep fake tensors.
        snapshot = ModelSnapshot(model)
        stderr = io.StringIO()
        try:
            shapes = _batch_dynamic_shapes(model, args, kwargs) if dynamic else None
            # Two statements: one would not fit a line, and Python 3.9 has no parenthesised form.
            with training_mode(model, mode == "train"), recorder.recording(), _exportable_output(model):  # noqa: SIM117
                with _quiet_export() as stderr:
                    ep = torch.export.export(model, args, kwargs, dynamic_shapes=shapes, strict=False)
            sys.stderr.write(stderr.getvalue())
            return ep, recorder
        except Exception as e:  # torch's notes in stderr only repeat it: the TraceError chains it
            errors.append(e)
        finally:
            snapshot.restore()
    cause = errors[-1]
    text = str(cause)
    if len(text) > 2000:
        text = text[:2000] + " [...]"
    err = TraceError(
        f"torch.export could not export {type(model).__name__} in {mode} mode: "
        f"{type(cause).__name__}: {text}\n"
        "Remedies: check that example_inputs are what forward expects, make data-dependent "
        "control flow shape-only or use torch.cond, or use strategy='hooks'.",
        cause=cause,
    )
    raise err from cause


# ---------------------------------------------------------------------------------------------
# Naming


def _op_name(node: fx.Node) -> str:
    """The op part of a node name: the ATen op's short name (``add``, ``conv2d``, ``getitem``)."""
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        raw = target._opname
        if raw.endswith("_") and not raw.endswith("__") and target._schema.is_mutable:
            raw = raw[:-1]  # `out += x` is add_ here, add in FX (and F.relu(inplace=True) relu)
    elif isinstance(target, torch._ops.HigherOrderOperator):
        raw = target.name()
    else:
        raw = getattr(target, "__name__", str(target))
    if raw.startswith("__") and raw.endswith("__") and len(raw) > 4:
        raw = raw[2:-2]  # aten.__and__ -> and_, like FX's operator.and_
        raw = f"{raw}_" if keyword.iskeyword(raw) else raw
    raw = _ILLEGAL.sub("_", raw) or "_unnamed"
    return f"_{raw}" if raw[0].isdigit() else raw


def _is_tensor(node: fx.Node) -> bool:
    return isinstance(node.meta.get("val"), torch.Tensor)


def _is_assert(node: fx.Node) -> bool:
    return node.op == "call_function" and node.target in _ASSERTS


@dataclass(eq=False)
class ExportTrace:
    """One mode's export of a model, with fxtract's names for its nodes and module calls.

    Attributes:
        mode: ``"train"`` or ``"eval"``.
        graph_module: ``ExportedProgram.module()``: the graph with parameters and buffers as
            attributes shared with the model (not copies) and the user inputs as placeholders.
        node_to_qualname: every user-visible node and its name, in execution order.
        node_to_call: the innermost module call each node ran in (top-level nodes: none).
        module_calls: every module call (leaf or not) that returned tensors, in the order
            the calls started; ``output`` is what it returned (a node or a tuple of nodes).
        range_constraints: ``ExportedProgram.range_constraints`` (the dynamic dims' ranges).
        returns: for a module call, by name, the structure of what it returned (a tuple, a
            dict, a Hugging Face ``ModelOutput``...) and its leaves: nodes for the tensors,
            the plain constants (``None``, ints) as they were.
        listed_calls: leaf calls that computed nothing (``nn.Identity``), listed in
            :attr:`node_names` after the node whose value they returned.
    """

    mode: str
    graph_module: fx.GraphModule
    node_to_qualname: dict[fx.Node, str]
    node_to_call: dict[fx.Node, ModuleCall]
    module_calls: list[ModuleCall]
    range_constraints: dict[Any, Any]
    returns: dict[str, tuple[pytree.TreeSpec, list[Any]]] = dataclasses.field(default_factory=dict)
    listed_calls: dict[fx.Node, list[str]] = dataclasses.field(default_factory=dict)

    @property
    def node_names(self) -> list[str]:
        """Every node's name, and after a node the leaf calls that returned it (an ``nn.Identity``)."""
        out = []
        for node, name in self.node_to_qualname.items():
            out.append(name)
            out.extend(self.listed_calls.get(node, ()))
        return out

    @property
    def call_names(self) -> list[str]:
        return [c.name for c in self.module_calls]

    @functools.cached_property
    def _lookup(self) -> dict[str, Target]:
        lookup: dict[str, Target] = {}
        for call in self.module_calls:
            lookup[call.name] = call.output
        for node, name in self.node_to_qualname.items():
            lookup[name] = node  # the same value when a leaf call named its node
        return lookup

    def resolve(self, name: str) -> Target:
        """What ``name`` returns: a node name, a module call name, or a path prefix.

        The path of a module that is never called itself (``encoder.layer``, a ModuleList)
        resolves to what the call that finished last inside it returned, as with FX
        (:func:`~fxtract._naming.last_call_under`).

        Raises:
            NodeNotFoundError: nothing has that name in this mode's graph.
        """
        lookup = self._lookup
        if name in lookup:
            return lookup[name]
        inner = last_call_under(self.module_calls, name)
        if inner is not None:
            return inner.output
        candidates = list(lookup)
        raise NodeNotFoundError(
            f"node {name!r} is not in the {self.mode}-mode graph (strategy='export')."
            f"{did_you_mean(name, candidates)} List the names with "
            "fxtract.get_graph_node_names(model, strategy='export', example_inputs=...) "
            "or fxtract.describe(model, example_inputs, strategy='export')."
        )

    def returned(self, name: str) -> tuple[pytree.TreeSpec, list[Any]]:
        """What ``name`` returns, as a structure and its leaves (nodes, or constants).

        A module call keeps the structure it returned (a ``(tensor, None)`` tuple, a
        ``ModelOutput``); a node, or a call whose structure was not recorded, is one node
        or a tuple of them, as :meth:`resolve` gives.
        """
        inner = last_call_under(self.module_calls, name) if name not in self._lookup else None
        call = inner.name if inner is not None else name
        if call in self.returns:
            return self.returns[call]
        target = self.resolve(name)
        leaves, spec = pytree.tree_flatten(target)
        return spec, leaves


@dataclass(eq=False)
class FailedTrace:
    """A mode that torch.export could not export: no names, and a clear error when used."""

    mode: str
    error: TraceError
    model_name: str
    node_names: list[str] = dataclasses.field(default_factory=list)
    call_names: list[str] = dataclasses.field(default_factory=list)

    @property
    def message(self) -> str:
        cause = getattr(self.error, "cause", None) or self.error
        text = (str(cause).strip().splitlines() or [""])[0][:300]
        return (
            f"{self.model_name} cannot be exported in {self.mode} mode on these example_inputs "
            f"({type(cause).__name__}: {text}); only the other mode has a graph (strategy='export'). "
            f"Give example_inputs that the {self.mode}-mode forward accepts, or use strategy='hooks'."
        )

    def resolve(self, name: str) -> Target:
        raise StrategyError(f"node {name!r} cannot be extracted: {self.message}") from self.error

    def returned(self, name: str) -> tuple[pytree.TreeSpec, list[Any]]:
        self.resolve(name)
        raise AssertionError("unreachable")  # pragma: no cover


def _failed_graph(message: str, like: fx.Graph) -> fx.Graph:
    graph = fx.Graph()
    graph.set_codegen(like._codegen)
    for p in like.find_nodes(op="placeholder"):
        graph.node_copy(p)
    graph.output([graph.call_function(mode_unavailable, (message,))])
    return graph


def mode_unavailable(message: str) -> None:
    """The body of a failed mode's extractor graph (a module-level function, so it pickles)."""
    raise StrategyError(message)


def _call_index(key: str) -> int:
    """The k in an ``nn_module_stack`` key: ``"L__self__relu@1"`` is the second call of ``relu``."""
    match = re.search(r"@(\d+)$", key)
    return int(match.group(1)) if match else 0


def _trace_mode(
    model: nn.Module, args: tuple, kwargs: dict, mode: str, dynamic_batch: bool, leaf: LeafModuleAwareTracer
) -> ExportTrace:
    ep, recorder = _export(model, args, kwargs, mode, dynamic_batch, leaf)
    # Our own input check replaces torch's guard function (that one does not pickle).
    try:
        gm = ep.module(check_guards=False)
    except TypeError:  # torch < 2.9: no guard function
        gm = ep.module()
    gm._forward_pre_hooks.clear()
    gm._forward_hooks.clear()
    graph = gm.graph

    # Each node's chain of calls, outermost first, from meta["nn_module_stack"]: the key
    # names one call (with "@k" for the k-th repeat), the value is (path, type). Entries that
    # are no submodule (the root, "_empty_nn_module_stack_from_metadata_hook") are skipped.
    calls = list(recorder.calls)
    start = {id(c): i for i, c in enumerate(calls)}
    node_calls: dict[fx.Node, list[ModuleCall]] = {}
    # A module shared by two parents is reached by two paths; the hooks record its one path.
    canonical = recorder.canonical
    by_alias: dict[tuple[str, int], ModuleCall] = {}
    shared = {c for p, c in canonical.items() if p != c}  # its "@k" counts one path's calls only
    for node in graph.nodes:
        chain: list[ModuleCall] = []
        for key, value in (node.meta.get("nn_module_stack") or {}).items():
            path = value[0] if isinstance(value, tuple) else None
            if not path or path not in canonical:
                continue
            if canonical[path] in shared:
                call = _shared_call(recorder, canonical[path], key, chain[-1] if chain else None, by_alias)
                if call is not None:
                    call.nodes.append(node)
                    chain.append(call)
                continue
            call = recorder.by_key.get((path, _call_index(key)))
            if call is None:  # a call the hooks did not see (forward called directly)
                module = recorder.modules[path]
                parent = chain[-1] if chain else None
                call = ModuleCall(path, "", type(module), leaf.is_leaf_module(module, path), parent)
                recorder.by_key[(path, _call_index(key))] = call
                start[id(call)] = len(calls)
                calls.append(call)
            call.nodes.append(node)
            chain.append(call)
        node_calls[node] = chain

    by_token = {t: n for n in graph.nodes for t in n.meta.get(_TOKENS, ())}
    structures: dict[int, tuple[pytree.TreeSpec, list[Any]]] = {}
    for call in calls:
        recorded = recorder.returned.get(id(call))
        if recorded is not None and all(x.n in by_token for x in recorded[1] if isinstance(x, _Token)):
            spec, leaves = recorded
            leaves = [by_token[x.n] if isinstance(x, _Token) else x for x in leaves]
            structures[id(call)] = (spec, leaves)
            returned = [x for x in leaves if isinstance(x, fx.Node)]
            call.output = None if not returned else returned[0] if len(returned) == 1 else tuple(returned)
        else:
            call.output = _call_output(call)

    # A leaf call names the node it returned if it computed it; the outermost leaf wins (FX
    # shows only that one). An identity's output keeps its own name.
    owner: dict[fx.Node, ModuleCall] = {}
    for call in calls:
        if call.leaf and isinstance(call.output, fx.Node) and call.output in call.nodes:
            owner.setdefault(call.output, call)

    # Claim names in the order FX would: a call's name when it starts, an op's when it runs.
    namer = UniqueNamer(p for p, _ in model.named_modules())
    names: dict[fx.Node, str] = {}
    claimed = 0

    def claim_calls(upto: int) -> int:
        for call in calls[claimed : upto + 1]:
            call.name = namer.claim(call.path, owns_base=True)
        return max(claimed, upto + 1)

    for node in graph.nodes:
        if node.op == "placeholder":
            names[node] = namer.claim(str(node.target))
            continue
        if node.op != "call_function" or _is_assert(node):
            continue  # parameters (get_attr), the output, checks, a guard function
        chain = node_calls[node]
        if chain:
            claimed = claim_calls(max(start[id(c)] for c in chain))
        if node in owner:
            names[node] = owner[node].name
        else:
            scope = chain[-1].path if chain else ""
            op = _op_name(node)
            names[node] = namer.claim(f"{scope}.{op}" if scope else op)
    claim_calls(len(calls) - 1)

    module_calls = [c for c in calls if c.output is not None]
    innermost = {node: chain[-1] for node, chain in node_calls.items() if chain}
    returns = {c.name: structures[id(c)] for c in module_calls if id(c) in structures}
    # A leaf call with no op of its own (nn.Identity) is listed as FX lists it, after the
    # value it returned (#11.2).
    listed: dict[fx.Node, list[str]] = {}
    for call in module_calls:
        own = isinstance(call.output, fx.Node) and owner.get(call.output) is call
        if call.leaf and not own and isinstance(call.output, fx.Node) and call.output in names:
            listed.setdefault(call.output, []).append(call.name)
    return ExportTrace(mode, gm, names, innermost, module_calls, dict(ep.range_constraints), returns, listed)


def _shared_call(
    recorder: _CallRecorder,
    path: str,
    key: str,
    parent: Optional[ModuleCall],
    by_alias: dict[tuple[str, int], ModuleCall],
) -> Optional[ModuleCall]:
    """The recorded call of a shared module that ``nn_module_stack`` names by another path.

    The stack key (``L__self___q_act``) counts calls per path, the hooks per module: the
    call is the first one of ``path`` inside ``parent`` not yet taken by another key (#17.3).
    """
    memo = (key, id(parent))
    if memo not in by_alias:
        taken = {id(c) for c in by_alias.values()}
        by_alias[memo] = next(
            (
                c
                for c in recorder.calls
                if c.path == path and c.parent is parent and id(c) not in taken and not c.nodes
            ),
            None,
        )
    return by_alias[memo]


def _call_output(call: ModuleCall) -> Optional[Target]:
    """What a module call returned: its tensors that later nodes (or the output) use.

    Only tensors count: export shares size computations (``sym_size``) between modules,
    and assertion nodes read values without using them.
    """
    inside = set(call.nodes)
    escaping = [
        n for n in call.nodes if _is_tensor(n) and any(u not in inside and not _is_assert(u) for u in n.users)
    ]
    if not escaping:
        return None  # nothing computed inside is returned (an identity): not addressable
    return escaping[0] if len(escaping) == 1 else tuple(escaping)


def trace_export(
    model: nn.Module, example_inputs: Any, *, dynamic_batch: bool = True
) -> dict[str, ExportTrace]:
    """Export ``model`` in train and in eval mode and name the nodes of each graph.

    The model is left as it was: training flags, parameters, buffers (export runs on fake
    tensors, so batch-norm statistics do not move), hooks and attributes.

    Args:
        model: the model.
        example_inputs: a tensor, a tuple of positional arguments, a dict of keyword
            arguments or ``(args, kwargs)`` (see :func:`fxtract._inputs.normalize_inputs`).
        dynamic_batch: make dim 0 of tensor inputs dynamic where export allows.

    Returns:
        ``{"train": ExportTrace, "eval": ExportTrace}``.

    Raises:
        StrategyError: ``example_inputs`` is missing.
        TraceError: ``torch.export`` failed (the cause is chained and in ``.cause``).

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU())
        >>> trace = trace_export(m, torch.zeros(2, 3))["eval"]
        >>> trace.node_names, trace.call_names, trace.resolve("1").name
        (['input', '0', '1'], ['0', '1'], 'relu')
    """
    if not isinstance(model, nn.Module):
        raise FxtractTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if example_inputs is None:
        raise StrategyError(
            "strategy='export' needs example_inputs=... (a tensor, a tuple of arguments or a "
            "dict of keyword arguments) to run torch.export on."
        )
    args, kwargs = normalize_inputs(example_inputs, model)
    leaf = LeafModuleAwareTracer(leaf_modules=default_tracer_kwargs(None)["leaf_modules"])
    traces: dict[str, Any] = {}
    errors: dict[str, TraceError] = {}
    for mode in MODES:
        try:
            traces[mode] = _trace_mode(model, args, kwargs, mode, dynamic_batch, leaf)
        except TraceError as e:
            errors[mode] = e
    if len(errors) == len(MODES):
        raise errors["train" if model.training else "eval"]
    for mode, e in errors.items():
        # One mode that cannot run on these inputs (a detection model in train mode without
        # targets) does not take the other mode's graph with it (#11.3).
        traces[mode] = FailedTrace(mode, e, type(model).__name__)
        warnings.warn(traces[mode].message, stacklevel=3)
    return traces


def export_node_names(
    model: nn.Module, example_inputs: Any, *, dynamic_batch: bool = True
) -> tuple[list[str], list[str]]:
    """Node names of the exported train and eval graphs, in execution order.

    The user inputs come first (named after ``forward``'s arguments), then every op:
    a leaf module's result named by the module call (``conv1``, ``relu_1`` for the second
    call of ``relu``), any other op ``<module path>.<aten op>``. For a model FX can trace
    these are FX's names, plus the ops that run inside leaf modules (FX shows a leaf as one
    node): train-mode batch norm's ``bn1.add`` (``num_batches_tracked += 1``), the ops of
    ``nn.MultiheadAttention``. Parameters, buffers and assertion nodes are not listed, nor
    are module calls that are not leaves: :func:`export_module_calls` lists every call.

    Args:
        model: the model (left unchanged).
        example_inputs: inputs to export with (see :func:`trace_export`).
        dynamic_batch: see :func:`trace_export`.

    Returns:
        ``(train_names, eval_names)``.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU())
        >>> export_node_names(m, torch.zeros(2, 3))[1]
        ['input', '0', '1']
    """
    traces = trace_export(model, example_inputs, dynamic_batch=dynamic_batch)
    return traces["train"].node_names, traces["eval"].node_names


def export_module_calls(
    model: nn.Module, example_inputs: Any, *, dynamic_batch: bool = True
) -> tuple[list[str], list[str]]:
    """Every module call's name (leaf or not), in the order the calls started.

    Each name resolves, in :func:`create_export_extractor`, to what the call returned: the
    node of its one tensor, or a tuple of nodes if it returned several (in return order).
    An ``nn.Identity`` resolves to the value it was given. Calls that returned no tensor
    are not listed.

    Returns:
        ``(train_calls, eval_calls)``.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(3, 3)), torch.nn.ReLU())
        >>> export_module_calls(m, torch.zeros(2, 3))[1]
        ['0', '0.0', '1']
    """
    traces = trace_export(model, example_inputs, dynamic_batch=dynamic_batch)
    return traces["train"].call_names, traces["eval"].call_names
