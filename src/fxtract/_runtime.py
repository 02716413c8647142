"""Functions that extractor graphs call at run time (importable, so extractors pickle)."""

from __future__ import annotations

import torch

__all__ = ["clone_tree", "set_grad_enabled"]


@torch.jit.ignore
def set_grad_enabled(mode: bool) -> bool:
    """Set autograd's grad mode and return the previous one.

    FX drops ``with torch.no_grad():`` blocks; fxtract records them as a pair of
    these calls, the second restoring what the first returned.
    """
    prev = torch.is_grad_enabled()
    torch._C._set_grad_enabled(mode)
    return prev


@torch.jit.ignore
def clone_tree(value):  # type: ignore[no-untyped-def]
    """Clone every tensor in a (nested) tuple / list / dict, keeping the structure."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(clone_tree(v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(clone_tree(v) for v in value)
    if isinstance(value, dict):
        return type(value)((k, clone_tree(v)) for k, v in value.items())
    return value
