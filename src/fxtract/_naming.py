"""Stage 1, name: FX tracers that give every node a unique, hierarchical name.

The names follow torchvision's scheme (``layer1.0.relu_1``) with three fixes:
a leaf module is named by its exact path (torchvision strips a trailing
``_<int>``), every name is unique, and naming is linear in the graph size
(torchvision rescans every earlier name with a regex built from the new one).
``naming="torchvision"`` reproduces torchvision's names for code that migrates.
"""

from __future__ import annotations

import contextlib
import fnmatch
import keyword
import math
import operator
import re
import sys
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import fx, nn
from torch.overrides import TorchFunctionMode

from ._checks import check_trace_root, check_tracer_kwargs
from ._errors import FxtractTypeError, FxtractValueError, TraceError, did_you_mean
from ._model_state import ModelSnapshot, training_mode
from ._options import NAMINGS, check_choice

__all__ = [
    "LeafModuleAwareTracer",
    "ModuleCall",
    "NodePathTracer",
    "_is_subseq",
    "_warn_graph_differences",
    "last_call_under",
]


_ILLEGAL = re.compile(r"[^0-9a-zA-Z_]+")
_TV_SUFFIX = re.compile(r".+_[0-9]+$")
# Characters other than "." that make torchvision's regex-built lookup differ from a literal match.
_REGEX_SPECIAL = re.compile(r"[\\^$*+?{}\[\]|()]")


@dataclass(eq=False)
class ModuleCall:
    """One call of a module during tracing (a scope of the graph).

    Attributes:
        path: the module's qualified path (``""`` for the root).
        name: the call's unique name: ``path`` for the first call, ``path_1``... for later ones.
        module_type: the module's class.
        leaf: whether the call is a single ``call_module`` node.
        parent: the enclosing call (``None`` for the root).
        output: what the call returned while tracing (a Proxy or a structure of them).
        end: the last node of the graph when the call returned: its output is read there
            (an in-place op inside the call, after the op that made the value, counts).
    """

    path: str
    name: str
    module_type: type
    leaf: bool
    parent: Optional[ModuleCall] = None
    output: Any = None
    nodes: list[fx.Node] = field(default_factory=list)
    end: Optional[fx.Node] = None

    def ancestors(self) -> Iterator[ModuleCall]:
        call: Optional[ModuleCall] = self
        while call is not None:
            yield call
            call = call.parent


def last_call_under(calls: Iterable[Any], path: str) -> Any:
    """The call that stands for ``path`` when that module is never called itself.

    A ``ModuleList`` that ``forward`` iterates has no call of its own; as in torchvision
    (where any prefix of node names is accepted) it stands for what happened last inside
    it: the outermost call under ``path`` that finished last. ``calls`` are objects with
    ``.path``, ``.name`` and ``.parent`` (a call, a call's name, or ``None``); the outermost
    calls under one path run one after the other, so their order in ``calls`` (start or
    finish order) is their order in time. ``None`` if no call is under ``path``.
    """
    prefix = f"{path}."
    under = [c for c in calls if c.path.startswith(prefix)]
    inner = {id(c) for c in under} | {c.name for c in under}
    outermost = [
        c
        for c in under
        if c.parent is None or (c.parent if isinstance(c.parent, str) else id(c.parent)) not in inner
    ]
    return outermost[-1] if outermost else None


class UniqueNamer:
    """Hands out ``base``, ``base_1``, ``base_2``... in O(1) amortised per name.

    A suffixed name never takes a module's path (``reserved``): the exact path of a module
    always names that module.
    """

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self._next: dict[str, int] = {}
        self._used: set[str] = set()
        self._reserved = set(reserved)

    def claim(self, base: str, *, owns_base: bool = False) -> str:
        k = self._next.get(base, 0)
        while True:
            name = base if k == 0 else f"{base}_{k}"
            k += 1
            if name in self._used:
                continue
            if name in self._reserved and not (owns_base and name == base):
                continue
            break
        self._next[base] = k
        self._used.add(name)
        return name


class _TorchvisionNamer:
    """torchvision 0.29's ``_get_node_qualname``, linear-time.

    torchvision strips a trailing ``_<int>`` from the raw name, then scans every earlier
    name for the latest match of the regex ``{base}(_[0-9]+)?$``. Without regex
    metacharacters in ``base`` a name matches it only as ``base`` itself or ``base_<int>``,
    so a dict of the latest name per base it matches gives the same answer (that name may
    have been handed out for another base: ``fc_3`` for ``fc_3_1`` matches ``fc``). Bases
    with metacharacters take the original scan.
    """

    def __init__(self) -> None:
        self._latest: dict[str, str] = {}
        self._names: list[str] = []

    def claim(self, raw: str) -> str:
        base = raw.rsplit("_", 1)[0] if _TV_SUFFIX.match(raw) else raw
        if _REGEX_SPECIAL.search(base):
            name = self._scan(base)
        elif base in self._latest:
            postfix = self._latest[base].replace(base, "")
            name = f"{base}_{int(postfix[1:]) + 1 if postfix[1:].isdigit() else 1}"
        else:
            name = base
        self._names.append(name)
        self._latest[name] = name
        if _TV_SUFFIX.match(name):
            self._latest[name.rsplit("_", 1)[0]] = name
        return name

    def _scan(self, base: str) -> str:
        try:
            pattern = re.compile(rf"{base}(_[0-9]+)?$")
        except re.error:
            pattern = re.compile(rf"{re.escape(base)}(_[0-9]+)?$")
        for existing in reversed(self._names):
            if pattern.match(existing):
                postfix = existing.replace(base, "")
                index = int(postfix[1:]) + 1 if postfix[1:].isdigit() else 1
                return f"{base}_{index}"
        return base


def _op_name(graph: fx.Graph, kind: str, target: Any) -> str:
    """The op part of a node name, as FX would pick it before adding its own suffix."""
    if kind == "placeholder":
        raw = str(target).lstrip("*")
    else:
        raw = graph._target_to_str(target)
    raw = _ILLEGAL.sub("_", raw) or "_unnamed"
    return f"_{raw}" if raw[0].isdigit() else raw


# ---------------------------------------------------------------------------------------------
# Leaf modules


def _torchvision_defaults() -> tuple[list[type], tuple[Any, ...]]:
    """torchvision's default leaves and autowraps, only if torchvision is already imported."""
    tv = sys.modules.get("torchvision")
    if tv is None:
        return [], (math,)
    ops = sys.modules.get("torchvision.ops") or getattr(tv, "ops", None)
    if ops is None:
        return [], (math,)
    leaves = [obj for obj in vars(ops).values() if isinstance(obj, type) and issubclass(obj, nn.Module)]
    return leaves, (math, ops)


def _merge(first: Iterable[Any], second: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    seen: set[int] = set()
    for item in (*first, *second):
        if id(item) not in seen:
            seen.add(id(item))
            out.append(item)
    return out


def default_tracer_kwargs(tracer_kwargs: Optional[dict[str, Any]]) -> dict[str, Any]:
    """A new dict: the caller's tracer kwargs plus torchvision's default leaves and autowraps.

    The caller's dict is never modified. Any iterable is accepted for ``leaf_modules``,
    ``autowrap_modules`` and ``autowrap_functions``.
    """
    if tracer_kwargs is None:
        tracer_kwargs = {}
    if not isinstance(tracer_kwargs, dict):
        raise FxtractTypeError(
            f"tracer_kwargs must be a dict of torch.fx.Tracer options, got {type(tracer_kwargs).__name__}."
        )
    out = dict(tracer_kwargs)
    leaves, autowrap = _torchvision_defaults()
    for key in ("leaf_modules", "autowrap_modules", "autowrap_functions"):
        value = out.get(key)
        if value is not None and (isinstance(value, (str, type, nn.Module)) or not _iterable(value)):
            value = [value]
        out[key] = list(value) if value is not None else []
    out["leaf_modules"] = _merge(out["leaf_modules"], leaves)
    out["autowrap_modules"] = tuple(_merge(out["autowrap_modules"], autowrap))
    out["autowrap_functions"] = tuple(out["autowrap_functions"])
    return out


def _iterable(value: Any) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return True


class LeafModuleAwareTracer(fx.Tracer):
    """An ``fx.Tracer`` that does not trace through the modules given as leaves.

    Args:
        leaf_modules: module classes (as in torchvision), module instances, or glob
            patterns over qualified paths (``"blocks.*.attn"``).
        *args, **kwargs: passed to ``torch.fx.Tracer``.

    Example:
        >>> import torch
        >>> tracer = LeafModuleAwareTracer(leaf_modules=[torch.nn.Sequential])
        >>> graph = tracer.trace(torch.nn.Sequential(torch.nn.ReLU()))
        >>> [n.op for n in graph.nodes]
        ['placeholder', 'call_module', 'output']
    """

    def __init__(self, *args: Any, leaf_modules: Optional[Iterable[Any]] = None, **kwargs: Any) -> None:
        check_tracer_kwargs(type(self), leaf_modules, kwargs)
        self.leaf_modules = list(leaf_modules) if leaf_modules is not None else []
        types, ids, patterns = [], set(), []
        for item in self.leaf_modules:
            if isinstance(item, type) and issubclass(item, nn.Module):
                types.append(item)
            elif isinstance(item, nn.Module):
                ids.add(id(item))
            elif isinstance(item, str):
                patterns.append(item)
            else:
                raise FxtractTypeError(
                    f"leaf_modules entries must be nn.Module classes, module instances or path patterns "
                    f"like 'blocks.*.attn'; got {item!r} ({type(item).__name__})."
                )
        self._leaf_types = tuple(types)
        self._leaf_ids = ids
        self._leaf_patterns = patterns
        # Exact paths made leaves by fxtract itself (automatic leaves).
        self.leaf_paths: set[str] = set()
        super().__init__(*args, **kwargs)

    def is_leaf_module(self, m: nn.Module, module_qualname: str) -> bool:
        if self._leaf_types and isinstance(m, self._leaf_types):
            return True
        if id(m) in self._leaf_ids or module_qualname in self.leaf_paths:
            return True
        if any(fnmatch.fnmatchcase(module_qualname, p) for p in self._leaf_patterns):
            return True
        return super().is_leaf_module(m, module_qualname)

    def check_leaf_patterns(self, root: nn.Module) -> None:
        """Raise if a leaf pattern matches no submodule of ``root`` (a typo would pass silently)."""
        if not self._leaf_patterns:
            return
        paths = [name for name, _ in root.named_modules() if name]
        for pattern in self._leaf_patterns:
            if not any(fnmatch.fnmatchcase(p, pattern) for p in paths):
                raise FxtractValueError(
                    f"leaf_modules pattern {pattern!r} matches no submodule of {type(root).__name__}."
                    f"{did_you_mean(pattern, paths)} List paths with [n for n, _ in model.named_modules()]."
                )


# ---------------------------------------------------------------------------------------------
# Trace-time patches: keep the user's model untouched and the graph faithful.


def _has_hooks(m: nn.Module) -> bool:
    return bool(
        m._forward_hooks
        or m._forward_pre_hooks
        or m._backward_hooks
        or getattr(m, "_backward_pre_hooks", None)
    )


def _hook_names(m: nn.Module) -> list[str]:
    names = []
    for kind in ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks"):
        for hook in (getattr(m, kind, None) or {}).values():
            names.append(
                f"{kind.strip('_').replace('_hooks', '_hook')} {getattr(hook, '__qualname__', repr(hook))}"
            )
    return names


_INPLACE_DUNDERS = {
    "__iadd__": operator.iadd,
    "__isub__": operator.isub,
    "__imul__": operator.imul,
    "__itruediv__": operator.itruediv,
    "__ifloordiv__": operator.ifloordiv,
    "__imod__": operator.imod,
    "__ipow__": operator.ipow,
    "__iand__": operator.iand,
    "__ior__": operator.ior,
    "__ixor__": operator.ixor,
    "__ilshift__": operator.ilshift,
    "__irshift__": operator.irshift,
    "__setitem__": operator.setitem,
}


def is_inplace_name(name: str) -> bool:
    """Whether a torch function / Tensor method name denotes an in-place op."""
    return (name.endswith("_") and not name.endswith("__")) or name in _INPLACE_DUNDERS


def _augmented_assignments(tracer: NodePathTracer) -> dict[str, Callable[..., Any]]:
    """``fx.Proxy.__iadd__``... for the trace: ``y += 1`` is recorded as ``operator.iadd``.

    A Proxy has no ``__iadd__``, so Python records ``y = y + 1``: out of place, while on a
    tensor it writes ``y`` and every name or view of it (``y = h; y += 1``, ``s = t[:, 2:4];
    s *= 0``), and the extractor would compute another function than the model (#17.2).
    ``operator.iadd`` does what eager Python does for any value (in place on a tensor, a new
    int for an int); the node keeps the name FX gives the out-of-place op (``add``).
    """
    methods = {}
    for dunder, op in _INPLACE_DUNDERS.items():
        if dunder == "__setitem__" or dunder in vars(fx.Proxy):
            continue

        def method(self: fx.Proxy, other: Any, op: Callable[..., Any] = op) -> fx.Proxy:
            if self.tracer is not tracer:
                return NotImplemented
            name = _out_of_place(op).__name__  # iadd -> add, iand -> and_
            tracer._augmented = name
            try:
                proxy = tracer.create_proxy("call_function", op, (self, other), {}, name=name)
            finally:
                tracer._augmented = None
            proxy.node.meta["fxtract_augmented"] = True
            return proxy

        methods[dunder] = method
    return methods


def _out_of_place(op: Callable[..., Any]) -> Callable[..., Any]:
    name = op.__name__[1:]
    return getattr(operator, f"{name}_" if keyword.iskeyword(name) else name)


class _BufferWriteMode(TorchFunctionMode):
    """Sends in-place ops on the model's buffers to the graph instead of the real buffer.

    Buffers stay real tensors while tracing (as in torchvision, so reads are unchanged),
    but ``self.count += 1`` would otherwise update the user's buffer once, at trace time.
    """

    def __init__(self, tracer: NodePathTracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: Optional[dict] = None
    ) -> Any:
        kwargs = kwargs or {}
        if (
            args
            and isinstance(args[0], torch.Tensor)
            and id(args[0]) in self.tracer._buffer_names
            and is_inplace_name(getattr(func, "__name__", ""))
        ):
            return self.tracer._buffer_write(func, args, kwargs)
        return func(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# The naming tracer


# Modules whose functions are known by the rewrite (pure, or in-place by name).
_KNOWN_MODULES = {"torch", "_operator", "operator", "builtins", "math", "fxtract"}


def _mark_effects(graph: fx.Graph) -> None:
    """Mark calls of user functions whose result nothing uses: they run for what they change.

    A function FX does not trace into (``torch.fx.wrap``, ``autowrap_functions``) is opaque;
    called for its side effect (torchvision MViT's ``_add_shortcut(x, q)`` adds into ``x``
    in place), it has no users, and dead-code elimination would drop it (torchvision does).
    """
    for node in graph.nodes:
        if node.op == "call_function" and not node.users:
            module = getattr(node.target, "__module__", None) or ""
            if module.split(".")[0] not in _KNOWN_MODULES:
                node.meta["fxtract_effect"] = True


class NodePathTracer(LeafModuleAwareTracer):
    """A tracer that records a unique, hierarchical name for every node it creates.

    ``node_to_qualname`` maps each named ``fx.Node`` to its name, in execution order.
    Module calls (leaf or traced-through) are recorded in ``module_calls`` with what
    they returned, so a module path resolves to the module's return value.

    Args:
        naming: ``"fxtract"`` (exact module paths, unique names) or ``"torchvision"``
            (torchvision 0.29's names, quirks included).
        leaf_modules: see :class:`LeafModuleAwareTracer`.
        **kwargs: any ``torch.fx.Tracer`` option (``autowrap_functions``,
            ``param_shapes_constant``, ...).

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
        >>> tracer = NodePathTracer()
        >>> _ = tracer.trace(m)
        >>> list(tracer.node_to_qualname.values())
        ['input', '0', '1']
    """

    def __init__(self, *args: Any, naming: str = "fxtract", **kwargs: Any) -> None:
        check_choice("naming", naming, NAMINGS)
        self.naming = naming
        super().__init__(*args, **kwargs)
        self._reset()

    def _reset(self, root: Optional[nn.Module] = None) -> None:
        self.current_module_qualname = ""
        self.node_to_qualname: OrderedDict[fx.Node, str] = OrderedDict()
        self.node_to_call: dict[fx.Node, ModuleCall] = {}
        self.module_calls: list[ModuleCall] = []
        self.skipped_hooks: list[str] = []
        self.grad_mode_nodes: list[fx.Node] = []
        self.tensor_constants: dict[str, torch.Tensor] = {}
        paths = [name for name, _ in root.named_modules()] if root is not None else []
        self._call_namer = UniqueNamer(paths)
        self._tv_namer = _TorchvisionNamer() if self.naming == "torchvision" else None
        self._root_call = ModuleCall("", "", type(root) if root is not None else nn.Module, False)
        self._scope = self._root_call
        self._failure: Optional[tuple[str, type]] = None
        self._buffer_names = {id(b): n for n, b in root.named_buffers()} if root is not None else {}
        self._grad_stack: list[fx.Node] = []
        self._augmented: Optional[str] = None  # the op name of the augmented assignment being recorded

    # -- tracing ------------------------------------------------------------------------------
    def trace(self, root: Any, concrete_args: Optional[dict[str, Any]] = None) -> fx.Graph:
        check_trace_root(root, concrete_args)
        if not isinstance(root, nn.Module):
            return super().trace(root, concrete_args)
        self._reset(root)
        self.check_leaf_patterns(root)
        snapshot = ModelSnapshot(root)
        before = set(root.__dict__)
        try:
            with self._patches():
                graph = super().trace(root, concrete_args)
            # FX stores tensor constants on the root; keep them here, off the user's model.
            self.tensor_constants = {
                k: v for k, v in root.__dict__.items() if k not in before and isinstance(v, torch.Tensor)
            }
        except TraceError:
            raise
        except Exception as e:
            raise self._trace_error(root, e) from e
        finally:
            snapshot.restore()
        self._root_call.output = None
        _mark_effects(graph)
        return graph

    def _trace_error(self, root: nn.Module, e: Exception) -> TraceError:
        path, cls = self._failure or ("", type(root))
        where = f"module '{path}' ({cls.__name__})" if path else f"the top-level forward of {cls.__name__}"
        msg = (
            f"torch.fx could not trace {where}: {type(e).__name__}: {e}\n"
            "Remedies: make that module a leaf (tracer_kwargs={'leaf_modules': [...]}, by class, instance "
            "or path pattern), wrap the offending function (tracer_kwargs={'autowrap_functions': [...]}), "
            "pass concrete_args for Python-level arguments, or use strategy='auto' (the default), which "
            "falls back to automatic leaves, torch.export or hooks."
        )
        return TraceError(msg, module_path=path, module_type=cls, cause=e)

    @contextlib.contextmanager
    def _patches(self) -> Iterator[None]:
        tracer = self
        grad_mode = torch.autograd.grad_mode
        classes = [grad_mode.no_grad, grad_mode.enable_grad, grad_mode.set_grad_enabled]
        saved = [(c, c.__enter__, c.__exit__) for c in classes]
        orig_setattr = nn.Module.__setattr__

        def setattr_(mod: nn.Module, name: str, value: Any) -> None:
            if isinstance(value, fx.Proxy) and value.node.meta.get("fxtract_state_update"):
                return  # `self.count += 1`: the in-place op is in the graph; keep the real buffer
            orig_setattr(mod, name, value)

        def wrap(cls: type, enter: Callable, exit_: Callable) -> None:
            def __enter__(self: Any) -> Any:
                result = enter(self)
                tracer._grad_enter(torch.is_grad_enabled())
                return result

            def __exit__(self: Any, *exc: Any) -> Any:
                tracer._grad_exit()
                return exit_(self, *exc)

            cls.__enter__ = __enter__  # type: ignore[method-assign]
            cls.__exit__ = __exit__  # type: ignore[method-assign]

        for c, enter, exit_ in saved:
            wrap(c, enter, exit_)
        nn.Module.__setattr__ = setattr_  # type: ignore[method-assign]
        augmented = _augmented_assignments(self)
        for dunder, method in augmented.items():
            setattr(fx.Proxy, dunder, method)
        try:
            with _BufferWriteMode(self):
                yield
        finally:
            nn.Module.__setattr__ = orig_setattr  # type: ignore[method-assign]
            for dunder in augmented:
                delattr(fx.Proxy, dunder)
            for c, enter, exit_ in saved:
                c.__enter__ = enter  # type: ignore[method-assign]
                c.__exit__ = exit_  # type: ignore[method-assign]

    def _grad_enter(self, mode: bool) -> None:
        from ._runtime import set_grad_enabled

        node = self.graph.create_node("call_function", set_grad_enabled, (mode,), {})
        self._grad_stack.append(node)
        self.grad_mode_nodes.append(node)
        self.node_to_call[node] = self._scope

    def _grad_exit(self) -> None:
        from ._runtime import set_grad_enabled

        if not self._grad_stack:
            return
        prev = self._grad_stack.pop()
        node = self.graph.create_node("call_function", set_grad_enabled, (prev,), {})
        self.grad_mode_nodes.append(node)
        self.node_to_call[node] = self._scope

    def _buffer_write(self, func: Callable[..., Any], args: tuple, kwargs: dict) -> fx.Proxy:
        """Record an in-place op on a buffer (``self.count += 1``) instead of running it now."""
        name = func.__name__
        node = self.graph.create_node("get_attr", self._buffer_names[id(args[0])], (), {})
        self.node_to_call[node] = self._scope
        attr = self.proxy(node)
        rest = tuple(args[1:])
        if name in _INPLACE_DUNDERS:
            proxy = self.create_proxy("call_function", _INPLACE_DUNDERS[name], (attr, *rest), kwargs)
        elif getattr(torch.Tensor, name, None) is func:
            proxy = self.create_proxy("call_method", name, (attr, *rest), kwargs)
        else:
            proxy = self.create_proxy("call_function", func, (attr, *rest), kwargs)
        proxy.node.meta["fxtract_state_update"] = node.target
        return proxy

    def call_module(self, m: nn.Module, forward: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        path = self.path_of_module(m)
        leaf = self.is_leaf_module(m, path)
        parent = self._scope
        if self._tv_namer is None or not leaf:
            name = self._call_namer.claim(path, owns_base=True)
        else:
            name = ""  # torchvision naming: given to the call_module node in create_proxy
        call = ModuleCall(path, name, type(m), leaf, parent)
        old_qualname = self.current_module_qualname
        self._scope = call
        self.current_module_qualname = path
        try:
            if leaf:
                out = self.create_proxy("call_module", path, args, kwargs)
            else:
                if _has_hooks(m):
                    # Hooks would see Proxies (a hook calling .numpy() breaks the trace).
                    self.skipped_hooks.extend(f"{path or '<root>'}: {h}" for h in _hook_names(m))
                    forward = m.forward
                out = forward(*args, **kwargs)
        except Exception:
            if self._failure is None:
                self._failure = (path, type(m))
            raise
        finally:
            self._scope = parent
            self.current_module_qualname = old_qualname
        call.output = out
        call.end = next(iter(reversed(self.graph.nodes)), None)
        self.module_calls.append(call)
        return out

    def create_proxy(
        self,
        kind: str,
        target: Any,
        args: tuple,
        kwargs: dict,
        name: Optional[str] = None,
        type_expr: Optional[Any] = None,
        *rest: Any,
    ) -> fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, *rest)
        node = proxy.node
        self.node_to_qualname[node] = self._qualname(node, kind, target)
        self.node_to_call[node] = self._scope
        self._scope.nodes.append(node)
        return proxy

    def _qualname(self, node: fx.Node, kind: str, target: Any) -> str:
        scope = self.current_module_qualname
        if self._tv_namer is not None:
            raw = scope if kind == "call_module" else (f"{scope}.{node}" if scope else str(node))
            name = self._tv_namer.claim(raw)
            if kind == "call_module":
                self._scope.name = name
            return name
        if kind == "call_module":
            return self._scope.name
        op = self._augmented or _op_name(self.graph, kind, target)
        return self._call_namer.claim(f"{scope}.{op}" if scope else op)


# ---------------------------------------------------------------------------------------------
# Train / eval


def _is_subseq(x: Iterable[Any], y: Iterable[Any]) -> bool:
    """Whether ``y`` is a subsequence of ``x`` (torchvision's helper, same semantics)."""
    it = iter(x)
    return all(any(a == b for a in it) for b in y)


def _warn_graph_differences(train_tracer: Any, eval_tracer: Any) -> None:
    """Warn, with torchvision's messages, when the train and eval graphs have different nodes.

    Accepts tracers (with ``node_to_qualname``) or plain lists of names.
    """
    train_nodes = _names_of(train_tracer)
    eval_nodes = _names_of(eval_tracer)
    if train_nodes == eval_nodes:
        return
    suggestion = (
        "When choosing nodes for feature extraction, you may need to specify "
        "output nodes for train and eval mode separately."
    )
    if _is_subseq(train_nodes, eval_nodes):
        msg = (
            "NOTE: The nodes obtained by tracing the model in eval mode "
            "are a subsequence of those obtained in train mode. "
        )
    elif _is_subseq(eval_nodes, train_nodes):
        msg = (
            "NOTE: The nodes obtained by tracing the model in train mode "
            "are a subsequence of those obtained in eval mode. "
        )
    else:
        msg = "The nodes obtained by tracing the model in train mode are different to those obtained in eval mode. "
    warnings.warn(msg + suggestion, stacklevel=3)


def _names_of(obj: Any) -> list[str]:
    if hasattr(obj, "node_to_qualname"):
        return list(obj.node_to_qualname.values())
    return list(obj)


def trace_modes(
    model: nn.Module,
    tracer_kwargs: Optional[dict[str, Any]] = None,
    *,
    naming: str = "fxtract",
    concrete_args: Optional[dict[str, Any]] = None,
    leaf_paths: Iterable[str] = (),
) -> dict[str, tuple[NodePathTracer, fx.Graph]]:
    """Trace ``model`` in train and in eval mode; ``{"train": (tracer, graph), "eval": ...}``."""
    if not isinstance(model, nn.Module):
        raise FxtractTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    kwargs = default_tracer_kwargs(tracer_kwargs)
    out = {}
    for mode in ("train", "eval"):
        tracer = NodePathTracer(naming=naming, **kwargs)
        tracer.leaf_paths.update(leaf_paths)
        # Before train(): a model's own train() may reset attributes (timm levit's bias cache).
        snapshot = ModelSnapshot(model)
        try:
            with training_mode(model, mode == "train"):
                graph = tracer.trace(model, concrete_args=concrete_args)
        finally:
            snapshot.restore()
        out[mode] = (tracer, graph)
    return out
