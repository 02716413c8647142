"""timm-style ``feature_info`` rows (channels, reduction) from output shapes: arithmetic only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch.utils import _pytree as pytree

from ._inputs import normalize_inputs

__all__ = ["feature_rows"]


def feature_rows(shapes: dict[str, tuple[Any, ...]], example_inputs: Any) -> list[dict[str, Any]]:
    """:func:`feature_info`'s rows from ``{name: output shape}`` (see its rules)."""
    args, kwargs = normalize_inputs(example_inputs)
    images = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) and t.dim() >= 3]
    spatial = tuple(images[0].shape[-2:]) if images else None
    out = []
    for name, shape in shapes.items():
        if all(isinstance(d, int) for d in shape):
            num_chs, reduction = _channels_and_reduction(shape, spatial)
        else:  # a size only tensor values fix (export's "u0")
            num_chs, reduction = None, None
        out.append({"name": name, "num_chs": num_chs, "reduction": reduction, "shape": shape})
    return out


def _channels_and_reduction(
    shape: tuple[int, ...], spatial: Optional[tuple[int, int]]
) -> tuple[Optional[int], Optional[float]]:
    if len(shape) < 2:
        return None, None
    if len(shape) == 2:
        return shape[1], None
    if len(shape) == 3:
        return shape[2], _token_reduction(shape[1], spatial)
    if len(shape) == 4 and spatial is not None:
        nchw = _grid_reduction(shape[2:4], spatial)
        nhwc = _grid_reduction(shape[1:3], spatial)
        if nhwc is not None and nchw is None:
            return shape[3], nhwc
        return shape[1], nchw
    return shape[1], _grid_reduction(shape[-2:], spatial) if spatial is not None else None


def _grid_reduction(hw: Sequence[int], spatial: tuple[int, int]) -> Optional[float]:
    """``H / h`` when ``hw`` is a grid over the input (same ratio for both sides), else None."""
    (h, w), (H, W) = hw, spatial
    if h <= 0 or w <= 0:
        return None
    rh, rw = H / h, W / w
    if abs(rh - rw) > 0.1 * max(rh, rw):
        return None
    return round(rh) if rh >= 1 else rh


def _token_reduction(tokens: int, spatial: Optional[tuple[int, int]]) -> Optional[int]:
    if spatial is None:
        return None
    H, W = spatial
    for prefix in range(9):
        n = tokens - prefix
        if n <= 0:
            break
        r = math.sqrt(H * W / n)
        ri = round(r)
        if ri >= 1 and abs(r - ri) < 1e-6 and H % ri == 0 and W % ri == 0:
            return ri
    return None
