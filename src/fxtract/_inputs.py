"""Normalising ``example_inputs`` (shared by the strategies that run the model)."""

from __future__ import annotations

from typing import Any

import torch

from ._errors import FxtractTypeError

__all__ = ["normalize_inputs"]


def normalize_inputs(example_inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` from the forms users pass.

    Accepted: a tensor (one positional argument); a tuple or list of positional
    arguments; a dict of keyword arguments; or ``(args_tuple, kwargs_dict)``.

    Example:
        >>> import torch
        >>> args, kwargs = normalize_inputs(torch.zeros(1))
        >>> len(args), kwargs
        (1, {})
    """
    if example_inputs is None:
        raise FxtractTypeError(
            "example_inputs is None; pass a tensor, a tuple of arguments or a dict of keyword arguments."
        )
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, dict):
        return (), dict(example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        if (
            len(example_inputs) == 2
            and isinstance(example_inputs[0], (tuple, list))
            and isinstance(example_inputs[1], dict)
        ):
            return tuple(example_inputs[0]), dict(example_inputs[1])
        return tuple(example_inputs), {}
    # Any other single object (a list of images is a list, handled above as one arg each).
    return (example_inputs,), {}
