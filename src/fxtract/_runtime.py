"""Functions that extractor graphs call at run time (importable, so extractors pickle)."""

from __future__ import annotations

import torch

__all__ = ["set_grad_enabled"]


@torch.jit.ignore
def set_grad_enabled(mode: bool) -> bool:
    """Set autograd's grad mode and return the previous one.

    FX drops ``with torch.no_grad():`` blocks; fxtract records them as a pair of
    these calls, the second restoring what the first returned.
    """
    prev = torch.is_grad_enabled()
    torch._C._set_grad_enabled(mode)
    return prev
