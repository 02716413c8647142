"""The one strategy interface: a :class:`Request` in, names / an extractor / per-mode views out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Protocol

from torch import nn

from .._info import NodeInfo
from .._inputs import normalize_inputs

__all__ = ["TASKS", "Builder", "ModeView", "ModeViews", "NoGraph", "Request", "Strategy", "other_modes"]

# The public tasks a strategy does: get_graph_node_names, create_feature_extractor, describe.
TASKS = ("node_names", "extractor", "views")


@dataclass(frozen=True, eq=False)
class Request:
    """What a public call asked for, handed to a strategy as one object (never modified).

    Attributes:
        model: the user's model (left exactly as it was).
        train_nodes: ``{query: output key}`` for train mode (patterns already expanded when
            it reaches :meth:`Builder.build`).
        eval_nodes: the same for eval mode.
        example_inputs: what ``forward`` takes, or ``None``.
        tracer_kwargs: FX tracer options (``leaf_modules``...).
        concrete_args: ``forward`` arguments FX fixes while tracing.
        naming: ``"fxtract"`` or ``"torchvision"`` (FX names).
        suppress_diff_warning: do not warn when the train and eval graphs differ.
        modes: the modes :meth:`Strategy.views` must describe (the others only tell
            ``NodeInfo.modes``).
        leaf_paths: modules the chain made leaves (automatic leaves; FX only).
        auto: the chain is choosing the strategy (``strategy="auto"``): a strategy that
            cannot serve the mode the extractor starts in fails rather than half-works.
    """

    model: nn.Module
    train_nodes: Mapping[str, str] = field(default_factory=dict)
    eval_nodes: Mapping[str, str] = field(default_factory=dict)
    example_inputs: Any = None
    tracer_kwargs: Optional[dict[str, Any]] = None
    concrete_args: Optional[dict[str, Any]] = None
    naming: str = "fxtract"
    suppress_diff_warning: bool = False
    modes: tuple[str, ...] = ("eval",)
    leaf_paths: frozenset[str] = frozenset()
    auto: bool = False

    def inputs(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``(args, kwargs)`` of ``example_inputs`` (which must be given)."""
        return normalize_inputs(self.example_inputs, self.model)


class ModeView(Protocol):
    """The nodes and module calls of one mode's graph (or forward), by name."""

    model: nn.Module
    names: list[str]  # selectable names, in execution order
    node_names: set[str]  # the graph's own nodes (not the traced-through module calls)
    types: dict[str, type]  # module-call name -> module class
    calls: Mapping[str, Any]  # module-call name -> call (``.path``, ``.name``, ``.parent``)

    def info(self, name: str, modes: str) -> NodeInfo: ...


class NoGraph:
    """A mode whose graph could not be built: present only so that ``NodeInfo.modes`` can be told."""

    names: list[str] = []
    node_names: set[str] = set()
    types: dict[str, type] = {}
    calls: dict[str, Any] = {}


@dataclass
class ModeViews:
    """What :meth:`Strategy.views` returns.

    Attributes:
        views: ``{"train": view, "eval": view}`` (a :class:`NoGraph` for a mode outside
            ``Request.modes`` that failed).
        skipped: ``{mode: why it failed}`` for those modes (``NodeInfo.modes`` is partial).
        real_forward: ``{mode: why}`` where strategy hooks had to run a real forward.
    """

    views: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)
    real_forward: dict[str, str] = field(default_factory=dict)


class Builder(Protocol):
    """A model traced for an extractor: the names it offers, then the extractor itself."""

    def names(self, mode: str) -> tuple[list[str], dict[str, type]]:
        """Selectable names of ``mode`` in execution order, and the module-call types (for patterns)."""
        ...

    def build(self, train_nodes: Mapping[str, str], eval_nodes: Mapping[str, str]) -> nn.Module:
        """The extractor returning ``{key: value}`` for these exact names."""
        ...

    def feature_shapes(
        self, extractor: nn.Module, eval_nodes: Mapping[str, str]
    ) -> dict[str, tuple[Any, ...]]:
        """``{name: shape of its first output tensor}`` in eval mode, without a real forward."""
        ...


class Strategy(Protocol):
    """One way to name and extract nodes: ``fx``, ``export`` or ``hooks``."""

    name: ClassVar[str]
    # The tasks (see TASKS) for which this strategy runs the model, so needs example_inputs.
    needs_inputs: ClassVar[frozenset[str]]

    def node_names(self, req: Request) -> tuple[list[str], list[str]]:
        """``(train_names, eval_names)``, as ``get_graph_node_names`` returns them."""
        ...

    def extractor(self, req: Request) -> Builder:
        """Trace ``req.model`` in both modes for ``create_feature_extractor``."""
        ...

    def views(self, req: Request) -> ModeViews:
        """Both modes' views for ``describe``, with shapes for ``req.modes`` when inputs are given."""
        ...


def other_modes(used: tuple[str, ...]) -> tuple[str, ...]:
    """Modes needed only to tell ``NodeInfo.modes``; a failure there is a warning, not an error."""
    return tuple(m for m in ("train", "eval") if m not in used)
