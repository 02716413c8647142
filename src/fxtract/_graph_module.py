"""Stage 4, run: the ``GraphModule`` that holds a train graph and an eval graph."""

from __future__ import annotations

import copy
import linecache
import operator
import sys
import typing
import warnings
from itertools import chain
from typing import Any, Optional

import torch
from torch import fx, nn
from torch.fx.graph_module import _copy_attr

from ._errors import FxtractTypeError

__all__ = ["DualGraphModule"]


class _Ref:
    """A node reference inside a pickled graph."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Ref, (self.name,))


_META_KEYS = ("fxtract_clone", "fxtract_state_update")


def _graph_state(graph: fx.Graph) -> dict[str, Any]:
    """A picklable description of ``graph``: its nodes and its code generator."""
    nodes = []
    for n in graph.nodes:
        nodes.append(
            (
                n.op,
                n.name,
                n.target,
                fx.node.map_arg(n.args, lambda a: _Ref(a.name)),
                fx.node.map_arg(n.kwargs, lambda a: _Ref(a.name)),
                n.type,
                {k: n.meta[k] for k in _META_KEYS if k in n.meta},
            )
        )
    return {"nodes": nodes, "codegen": graph._codegen}


def _graph_from_state(state: dict[str, Any]) -> fx.Graph:
    graph = fx.Graph()
    graph._codegen = state["codegen"]
    env: dict[str, fx.Node] = {}

    def load(x: Any) -> Any:
        return fx.node.map_aggregate(x, lambda a: env[a.name] if isinstance(a, _Ref) else a)

    for op, name, target, args, kwargs, type_, meta in state["nodes"]:
        node = graph.create_node(op, target, load(args), load(kwargs), name=name, type_expr=type_)
        node.meta.update(meta)
        env[name] = node
    return graph


class DualGraphModule(fx.GraphModule):
    """An ``fx.GraphModule`` with one graph for train mode and one for eval mode.

    ``train()`` / ``eval()`` switch ``self.graph``. Unlike torchvision's class of
    the same name, it keeps both graphs and the train/eval flag through ``pickle``,
    ``torch.save``, ``copy.deepcopy`` and ``torch.jit.script``.

    Parameters and buffers are shared with the model it was built from (as in
    torchvision); ``copy.deepcopy(extractor)`` gives an independent copy.

    Example:
        >>> import torch
        >>> from fxtract import create_feature_extractor
        >>> m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
        >>> ex = create_feature_extractor(m.eval(), ["1"])
        >>> ex.training, ex(torch.ones(1, 2))["1"].shape
        (False, torch.Size([1, 2]))
    """

    def __init__(
        self,
        root: nn.Module,
        train_graph: fx.Graph,
        eval_graph: fx.Graph,
        class_name: str = "GraphModule",
        *,
        training: bool = True,
        constants: Optional[dict[str, torch.Tensor]] = None,
    ) -> None:
        super(fx.GraphModule, self).__init__()
        self.__class__.__name__ = class_name
        self.train_graph = train_graph
        self.eval_graph = eval_graph
        constants = constants or {}
        for node in chain(train_graph.nodes, eval_graph.nodes):
            if node.op in ("get_attr", "call_module"):
                if not isinstance(node.target, str):
                    raise FxtractTypeError(f"node {node.name} has a non-string target {node.target!r}.")
                if node.target in constants:
                    self.register_buffer(node.target, constants[node.target])
                else:
                    _copy_attr(root, self, node.target)
        self._tracer_cls = None
        self.training = training
        self.graph = train_graph if training else eval_graph

    def train(self, mode: bool = True) -> DualGraphModule:
        wanted = self.train_graph if mode else self.eval_graph
        if self.graph is not wanted:
            self.graph = wanted
        return super().train(mode)

    # -- copies ---------------------------------------------------------------------------------
    def _extras(self) -> dict[str, Any]:
        skip = {"_graph", "train_graph", "eval_graph", "_code", "_in_spec", "_out_spec"}
        keep = {
            k: v
            for k, v in self.__dict__.items()
            if k not in skip and not k.startswith("_") and k not in ("training", "meta")
        }
        keep["meta"] = getattr(self, "meta", {})
        return keep

    def _state(self) -> tuple[Any, ...]:
        holder = nn.Module()
        holder._modules = dict(self._modules)  # type: ignore[assignment]
        holder._parameters = dict(self._parameters)  # type: ignore[assignment]
        holder._buffers = dict(self._buffers)  # type: ignore[assignment]
        return (
            holder,
            _graph_state(self.train_graph),
            _graph_state(self.eval_graph),
            type(self).__name__,
            self.training,
            self._extras(),
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, self._state())

    def __deepcopy__(self, memo: dict[int, Any]) -> DualGraphModule:
        return _rebuild(*copy.deepcopy(self._state(), memo))

    def __copy__(self) -> DualGraphModule:
        return _rebuild(*self._state())

    # -- TorchScript ----------------------------------------------------------------------------
    def __prepare_scriptable__(self) -> nn.Module:
        """Script a module that branches on ``self.training`` between the two graphs.

        Scripting a plain ``GraphModule`` freezes the graph current at scripting time.
        When the two graphs return different TorchScript types (train and eval return
        nodes of different kinds), no single ``forward`` can return both: the graph of
        the current mode is scripted alone, as torchvision does, with a warning.
        """
        # Each graph is compiled once, here; the wrapper holds the compiled modules.
        train_module = torch.jit.script(fx.GraphModule(self, self.train_graph, "TrainGraph"))
        eval_module = torch.jit.script(fx.GraphModule(self, self.eval_graph, "EvalGraph"))
        train_type = train_module.forward.schema.returns[0].type
        eval_type = eval_module.forward.schema.returns[0].type
        if train_type == eval_type:
            return _ScriptableDual(self, train_module, eval_module)
        mode = "train" if self.training else "eval"
        warnings.warn(
            f"the train graph returns {train_type} and the eval graph {eval_type}: TorchScript cannot "
            f"return both from one forward, so the scripted module runs the {mode} graph only, whatever "
            "its mode (torchvision's behaviour). Script after .train() / .eval() to get the other one.",
            stacklevel=4,
        )
        current = train_module if self.training else eval_module
        return _ScriptableDual(self, current, current)


def _rebuild(
    holder: nn.Module,
    train_state: dict[str, Any],
    eval_state: dict[str, Any],
    class_name: str,
    training: bool,
    extras: Optional[dict[str, Any]] = None,
) -> DualGraphModule:
    gm = DualGraphModule(
        holder, _graph_from_state(train_state), _graph_from_state(eval_state), class_name, training=training
    )
    for k, v in (extras or {}).items():
        setattr(gm, k, v)
    return gm


class _ScriptableDual(nn.Module):
    """What ``torch.jit.script`` compiles for a :class:`DualGraphModule`."""

    def __init__(self, dual: DualGraphModule, train_module: nn.Module, eval_module: nn.Module) -> None:
        super().__init__()
        self.train_module = train_module
        self.eval_module = eval_module
        self.training = dual.training
        params = []
        for node in dual.train_graph.nodes:
            if node.op != "placeholder":
                continue
            text = node.target
            if node.type is not None:
                text += f": {fx.node._type_repr(node.type)}"
            if node.args:
                text += f" = {node.args[0]!r}"
            params.append(text)
        names = ", ".join(str(n.target).lstrip("*") for n in dual.train_graph.nodes if n.op == "placeholder")
        src = (
            f"def forward(self, {', '.join(params)}):\n"
            f"    if self.training:\n"
            f"        return self.train_module({names})\n"
            f"    return self.eval_module({names})\n"
        )
        namespace: dict[str, Any] = {"torch": torch, "typing": typing}
        # TorchScript reads the source through linecache, as for FX's own generated code.
        filename = f"<fxtract-scriptable-{id(self)}>"
        linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
        exec(compile(src, filename, "exec"), namespace)
        # A per-instance class, so that TorchScript reads this forward's source.
        cls = type(f"Scriptable{type(dual).__name__}", (_ScriptableDual,), {"forward": namespace["forward"]})
        self.__class__ = cls


# ---------------------------------------------------------------------------------------------
# Inference: adds into temporaries.
#
# ``out += identity`` traces as an out-of-place ``add`` (a Proxy has no ``__iadd__``), so an FX
# graph of a ResNet allocates a fresh activation-sized tensor per residual block where eager
# PyTorch writes in place: ~8% of resnet50's forward on a CPU. Under no_grad, an add whose operand
# is a temporary nothing else can see (numpy's "temporary elision") can write into it instead;
# the values are bitwise those of the out-of-place add.


_use_count = getattr(torch._C, "_storage_Use_Count", None)  # private: without it, nothing is in place


def _storage_refs(t: torch.Tensor) -> int:
    return _use_count(t.untyped_storage()._cdata)


def _probe_refs() -> tuple[int, int]:
    def callee(x: torch.Tensor) -> tuple[int, int]:
        return sys.getrefcount(x), _storage_refs(x)

    t = torch.empty(1)  # a local of the caller, passed on: as generated FX code holds a node's value
    return callee(t)


_LONE_REFS, _LONE_STORAGE_REFS = _probe_refs() if _use_count is not None else (0, 0)
_SAME_LAYOUT = (torch.contiguous_format, torch.channels_last)


def _writable_temporary(x: Any, y: Any) -> bool:
    """Whether ``x + y`` may be computed into ``x``: a plain tensor that no other Python object,
    view or autograd graph holds, whose dtype, shape and layout the sum keeps."""
    if type(x) is not torch.Tensor or x.requires_grad or x._base is not None:
        return False
    if type(y) is torch.Tensor:
        if y.requires_grad or y.dim() > x.dim():
            return False
        layout_kept = any(
            x.is_contiguous(memory_format=f) and y.is_contiguous(memory_format=f)
            for f in _SAME_LAYOUT
            if y.dim() == x.dim() or f is torch.contiguous_format
        )
    elif type(y) in (int, float, bool):
        layout_kept = x.is_contiguous()
    else:
        return False
    return (
        layout_kept
        and torch.result_type(x, y) == x.dtype
        and (type(y) is not torch.Tensor or torch.broadcast_shapes(x.shape, y.shape) == x.shape)
        and _storage_refs(x) <= _LONE_STORAGE_REFS
    )


def add_into_temporary(x: Any, y: Any) -> Any:
    """``x + y``, written into ``x`` when it is a temporary (see above)."""
    if not torch.is_grad_enabled() and sys.getrefcount(x) <= _LONE_REFS and _writable_temporary(x, y):
        return x.add_(y)
    return x + y


def add_into_temporary_r(x: Any, y: Any) -> Any:
    """``x + y``, written into ``y`` when it is a temporary (addition commutes, bit for bit)."""
    if not torch.is_grad_enabled() and sys.getrefcount(y) <= _LONE_REFS and _writable_temporary(y, x):
        return y.add_(x)
    return x + y


def inference_module(module: nn.Module) -> nn.Module:
    """A module computing what ``module`` (in eval mode, under no_grad) computes, with each add whose
    operand is used by nothing else written into that operand; ``module`` itself when it is not an
    FX extractor, has hooks, or has no such add. It shares the parameters and buffers of ``module``.
    """
    if _use_count is None or not isinstance(module, DualGraphModule):
        return module
    if module._forward_hooks or module._forward_pre_hooks:
        return module
    graph = copy.deepcopy(module.eval_graph)
    changed = False
    for node in graph.nodes:
        if node.op != "call_function" or node.target not in (operator.add, torch.add):
            continue
        if len(node.args) != 2 or node.kwargs:
            continue
        for i, target in enumerate((add_into_temporary, add_into_temporary_r)):
            arg = node.args[i]
            if isinstance(arg, fx.Node) and arg.op not in ("placeholder", "get_attr") and len(arg.users) == 1:
                node.target = target
                changed = True
                break
    if not changed:
        return module
    return fx.GraphModule(module, graph, type(module).__name__).eval()
