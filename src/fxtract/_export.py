"""Strategy "export": name and extract the nodes of a ``torch.export`` graph.

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
import copy
import dataclasses
import functools
import inspect
import io
import keyword
import logging
import operator
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import fx, nn
from torch.fx.graph import _PyTreeCodeGen
from torch.utils import _pytree as pytree

from ._errors import (
    FxtractTypeError,
    FxtractValueError,
    NodeNotFoundError,
    StrategyError,
    TraceError,
    did_you_mean,
)
from ._inputs import normalize_inputs
from ._naming import (
    LeafModuleAwareTracer,
    ModuleCall,
    _ModelSnapshot,
    _UniqueNamer,
    default_tracer_kwargs,
    last_call_under,
    training_mode,
)

__all__ = [
    "ExportFeatureExtractor",
    "ExportTrace",
    "create_export_extractor",
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
        snapshot = _ModelSnapshot(model)
        stderr = io.StringIO()
        try:
            shapes = _batch_dynamic_shapes(model, args, kwargs) if dynamic else None
            # Two statements: one would not fit a line, and Python 3.9 has no parenthesised form.
            with training_mode(model, mode == "train"), recorder.recording(), _exportable_output(model):  # noqa: SIM117
                with _quiet_export() as stderr:
                    ep = torch.export.export(model, args, kwargs, dynamic_shapes=shapes, strict=False)
            sys.stderr.write(stderr.getvalue())
            return ep, recorder
        except Exception as e:
            e.fxtract_stderr = stderr.getvalue()  # type: ignore[attr-defined]
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
        "control flow shape-only or use torch.cond, or use strategy='hooks'."
    )
    err.cause = cause  # type: ignore[attr-defined]
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
            "get_graph_node_names(model, strategy='export', example_inputs=...) "
            "or fxtract._export.export_module_calls(model, example_inputs)."
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
    for node in graph.nodes:
        chain: list[ModuleCall] = []
        for key, value in (node.meta.get("nn_module_stack") or {}).items():
            path = value[0] if isinstance(value, tuple) else None
            if not path or path not in canonical:
                continue
            if canonical[path] != path:
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
    namer = _UniqueNamer(p for p, _ in model.named_modules())
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
    args, kwargs = normalize_inputs(example_inputs)
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

    def __init__(self, mode: str, names: list[str], specs: list[Any], ranges: dict[str, tuple]) -> None:
        super().__init__()
        self.mode = mode
        self.names = names
        self.specs = specs
        self.ranges = ranges

    @staticmethod
    def from_trace(trace: ExportTrace) -> _InputCheck:
        names, specs = [], []
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
            elif isinstance(val, (int, float, bool, str)):
                specs.append(("value", val))
            else:
                specs.append(None)
        return _InputCheck(trace.mode, names, specs, ranges)

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
