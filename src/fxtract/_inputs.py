"""Normalising ``example_inputs`` (shared by the strategies that run the model)."""

from __future__ import annotations

from typing import Any

import torch

from ._checks import check_forward_inputs
from ._errors import FxtractTypeError, StrategyError

__all__ = ["check_model", "normalize_inputs", "require_inputs"]


def normalize_inputs(example_inputs: Any, model: Any = None) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` from the forms users pass.

    Accepted, as in ``torch.export``: a tuple of positional arguments; a dict of
    keyword arguments; ``(args_tuple, kwargs_dict)``; or any other object (a
    tensor, a list of images) as the one positional argument. With ``model``, the
    inputs must bind to ``model.forward`` (no extra positional input, no unknown keyword).

    Example:
        >>> import torch
        >>> args, kwargs = normalize_inputs(torch.zeros(1))
        >>> len(args), kwargs
        (1, {})
    """
    args, kwargs = _split(example_inputs)
    if model is not None:
        check_forward_inputs(model, args, kwargs)
    return args, kwargs


def _split(example_inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if example_inputs is None:
        raise FxtractTypeError(
            "example_inputs is None; pass a tensor, a tuple of arguments or a dict of keyword arguments."
        )
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, dict):
        return (), dict(example_inputs)
    if isinstance(example_inputs, tuple) and not hasattr(example_inputs, "_fields"):
        if (
            len(example_inputs) == 2
            and isinstance(example_inputs[0], tuple)
            and isinstance(example_inputs[1], dict)
        ):
            return example_inputs[0], dict(example_inputs[1])
        return example_inputs, {}
    return (example_inputs,), {}


def require_inputs(strategy: str, example_inputs: Any) -> None:
    """The one "this strategy runs the model" error: raise :class:`StrategyError` without inputs."""
    if example_inputs is None:
        raise StrategyError(
            f"strategy={strategy!r} runs the model, so it needs example_inputs=... (a tensor, a tuple of "
            "positional arguments, or a dict of keyword arguments).",
            needs_inputs=True,
        )


def check_model(model: Any) -> None:
    """The one model check of the public calls: raise :class:`FxtractTypeError` unless an ``nn.Module``."""
    if not isinstance(model, torch.nn.Module):
        raise FxtractTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
