"""Strategy "export": ``torch.export`` (non-strict) names every ATen op; needs ``example_inputs``.

:mod:`.export_trace` exports and names (one :class:`~.export_trace.ExportTrace` per mode),
:mod:`.export_graph` builds the extractor from the traces; this module is the strategy and
its ``describe`` views, which read the fake values export recorded on every node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils import _pytree as pytree

from .._errors import TraceError, summarize
from .._fake import (
    has_meta,
    model_placement,
    param_count,
    qualified_name,
    quiet_fake_tensor_log,
    shapes_dtypes,
    to_meta,
)
from .._info import NodeInfo
from .._naming import LeafModuleAwareTracer, default_tracer_kwargs
from .base import ModeViews, NoGraph, Request, other_modes
from .export_graph import ExportFeatureExtractor, create_export_extractor
from .export_trace import ExportTrace, FailedTrace, _trace_mode, trace_export

__all__ = ["ExportStrategy"]


class ExportStrategy:
    """Every task exports the model (in each mode), so every task needs ``example_inputs``."""

    name: ClassVar[str] = "export"
    needs_inputs: ClassVar[frozenset[str]] = frozenset({"node_names", "extractor", "views"})

    def node_names(self, req: Request) -> tuple[list[str], list[str]]:
        traces = trace_export(req.model, req.example_inputs)
        return traces["train"].node_names, traces["eval"].node_names

    def extractor(self, req: Request) -> _ExportBuilder:
        traces = trace_export(req.model, req.example_inputs)
        current = traces["train" if req.model.training else "eval"]
        if req.auto and isinstance(current, FailedTrace):
            raise current.error  # under auto, hooks serve the mode the extractor starts in
        return _ExportBuilder(req, traces)

    def views(self, req: Request) -> ModeViews:
        views, skipped = _export_views(req.model, *req.inputs(), req.modes)
        return ModeViews(views, skipped)


class _ExportBuilder:
    def __init__(self, req: Request, traces: dict[str, ExportTrace]) -> None:
        self.req = req
        self.traces = traces

    def names(self, mode: str) -> tuple[list[str], dict[str, type]]:
        if isinstance(self.traces[mode], FailedTrace):
            return [], {}  # using that mode raises a StrategyError that says why
        view = _ExportView(self.req.model, self.traces[mode])
        return view.names, view.types

    def build(self, train_nodes: Mapping[str, str], eval_nodes: Mapping[str, str]) -> ExportFeatureExtractor:
        req = self.req
        return create_export_extractor(
            req.model, dict(train_nodes), dict(eval_nodes), req.example_inputs, traces=self.traces
        )

    def feature_shapes(
        self, extractor: nn.Module, eval_nodes: Mapping[str, str]
    ) -> dict[str, tuple[Any, ...]]:
        """From the fake values export recorded: no second export."""
        shapes = {}
        for name in eval_nodes:
            target = self.traces["eval"].resolve(name)
            first = target[0] if isinstance(target, tuple) else target
            tensor_shapes = shapes_dtypes(first.meta.get("val"))[0]
            shapes[name] = tensor_shapes[0] if tensor_shapes else ()
        return shapes


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
            shapes, dtypes = shapes_dtypes(node.meta.get("val"))
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
        shapes, dtypes = shapes_dtypes([n.meta.get("val") for n in outputs])
        return NodeInfo(
            name=name,
            kind="module",
            target=call.module_type.__name__,
            shapes=shapes,
            dtypes=dtypes,
            params=param_count(self.model, call.path),
            modes=modes,
            parent=call.parent.name if call.parent is not None else "",
        )


def _aten_name(target: Any) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return str(target)  # aten.conv2d.default
    if isinstance(target, torch._ops.HigherOrderOperator):
        return f"higher_order.{target.name()}"
    return qualified_name(target)


def _export_views(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], used: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Export ``model`` in each mode (static shapes) on inputs that match its device.

    Returns the views and ``{mode: why}`` for a mode outside ``used`` that failed.
    """

    on_meta, device = model_placement(model)
    if on_meta:
        # Everything on meta: export fakes meta tensors as they are, no data is read.
        args, kwargs = pytree.tree_map_only(torch.Tensor, to_meta, (args, kwargs))
    elif has_meta((args, kwargs)):
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
    for m in (*used, *other_modes(used)):
        try:
            # A failure is a TraceError with the cause; torch's own log of it would only repeat it.
            with quiet_fake_tensor_log("torch.fx.experimental.symbolic_shapes"):
                views[m] = _ExportView(model, _trace_mode(model, args, kwargs, m, False, leaf))
        except TraceError as e:
            if m in used:
                raise
            views[m], skipped[m] = NoGraph(), summarize(e)
    return views, skipped
