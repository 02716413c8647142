"""Stage 3b, fall back: pick a strategy for models FX cannot trace whole."""

from __future__ import annotations

from typing import Any, Optional

from torch import nn

from ._errors import FxtractValueError
from ._naming import _warn_graph_differences, trace_modes

STRATEGIES = ("auto", "fx", "export", "hooks")


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise FxtractValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")


def graph_node_names(
    model: nn.Module,
    tracer_kwargs: Optional[dict[str, Any]],
    suppress_diff_warning: bool,
    concrete_args: Optional[dict[str, Any]],
    *,
    naming: str,
    strategy: str,
    example_inputs: Any,
) -> tuple[list[str], list[str]]:
    check_strategy(strategy)
    traced = trace_modes(model, tracer_kwargs, naming=naming, concrete_args=concrete_args)
    train = list(traced["train"][0].node_to_qualname.values())
    eval_ = list(traced["eval"][0].node_to_qualname.values())
    if not suppress_diff_warning:
        _warn_graph_differences(train, eval_)
    return train, eval_
