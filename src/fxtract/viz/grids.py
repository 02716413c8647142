"""Feature maps as pictures: channel grids, token heat maps, attention heads."""

from __future__ import annotations

import math
import os
from typing import Any, Optional, Union

from .._errors import FxtractValueError
from ._plot import Picture, axes_at, new_figure, pixel_boxes, render, to_numpy

__all__ = ["KINDS", "ORDERS", "feature_grid", "feature_maps", "file_name"]

KINDS = ("auto", "channels", "tokens", "heads", "vector")
ORDERS = ("activity", "index")

_MARGIN = 10
_TITLE = 34
_GAP = 4


def feature_grid(
    activation: Any,
    *,
    name: Optional[str] = None,
    image: Any = None,
    index: int = 0,
    kind: str = "auto",
    max_channels: int = 64,
    order: str = "activity",
    cmap: Optional[str] = None,
    tile_px: int = 96,
    out: Union[str, os.PathLike, None] = None,
) -> Picture:
    """Draw one sample of an activation as a PNG: what a node "sees".

    The shape decides the picture (``kind="auto"``), the batch dimension first:

    * ``(B, C, H, W)``: one tile per channel, in a grid, each tile scaled to its own
      min..max; at most ``max_channels`` tiles, the most active (mean ``|x|``) first with
      ``order="activity"``, or the first ones with ``order="index"``. ``(B, C, T, H, W)``
      (video) draws the middle frame.
    * ``(B, H, T, T)`` whose rows are probabilities (attention weights: non-negative, each
      row sums to 1): one map per head, in order (``kind="heads"`` forces it, for logits).
    * ``(B, T, C)``: a token x channel heat map (``kind="tokens"``).
    * ``(B, C)``: the channel values as bars (``kind="vector"``).

    Args:
        activation: a tensor or array, batch dimension first.
        name: the node's name, for the title.
        image: the input image, drawn beside the tiles: a PIL image, an ``(H, W, 3)``
            array or a ``(3, H, W)`` tensor (scaled to its min..max).
        index: which sample of the batch to draw.
        kind: ``"auto"``, ``"channels"``, ``"tokens"``, ``"heads"`` or ``"vector"``.
        max_channels: most tiles (channels or heads) to draw.
        order: ``"activity"`` (most active first) or ``"index"``.
        cmap: a matplotlib colour map (default ``viridis``; ``RdBu_r`` for tokens, centred
            on 0; ``magma`` for heads).
        tile_px: the side of a tile in pixels.
        out: also write the PNG there (atomically).

    Returns:
        A :class:`Picture`: ``png`` bytes, ``size``, the tiles' pixel ``boxes`` and the
        channel (head) index each one ``shown``.

    Raises:
        FxtractValueError: a shape the picture cannot show, a bad option.
        MissingDependencyError: matplotlib is not installed.

    Example:
        >>> import torch
        >>> pic = feature_grid(torch.randn(1, 8, 6, 6), name="conv", max_channels=4)
        >>> pic.kind, pic.tiles, pic.png[:4]
        ('channels', 4, b'\\x89PNG')
    """
    import numpy as np

    if kind not in KINDS:
        raise FxtractValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}.")
    if order not in ORDERS:
        raise FxtractValueError(f"order must be 'activity' or 'index'; got {order!r}.")
    if max_channels < 1 or tile_px < 8:
        raise FxtractValueError(f"max_channels must be >= 1 and tile_px >= 8; got {max_channels}, {tile_px}.")
    batch = to_numpy(activation)
    if batch.ndim < 2:
        raise FxtractValueError(
            f"an activation has a batch dimension first, then at least one more; got shape {tuple(batch.shape)}."
        )
    if not -batch.shape[0] <= index < batch.shape[0]:
        raise FxtractValueError(f"index {index} is out of range for a batch of {batch.shape[0]}.")
    sample = np.asarray(batch[index], dtype=np.float64)
    label = f"{name}  " if name else ""
    label += "(" + ", ".join(str(s) for s in batch.shape) + ")"
    note = ""
    if kind == "auto":
        kind = _guess_kind(sample)
    if kind in ("channels", "heads") and sample.ndim == 4:  # (C, T, H, W): the middle frame
        note = f"frame {sample.shape[1] // 2} of {sample.shape[1]}"
        sample = sample[:, sample.shape[1] // 2]
    expected = {"channels": 3, "heads": 3, "tokens": 2, "vector": 1}[kind]
    if sample.ndim != expected:
        raise FxtractValueError(
            f"kind={kind!r} draws a sample of {expected} dimensions; {name or 'the activation'} has "
            f"shape {tuple(batch.shape)} (one sample: {tuple(sample.shape)})."
        )
    img = _image_array(image) if image is not None else None
    if kind in ("channels", "heads"):
        return _tiles(sample, kind, label, note, img, max_channels, order, cmap, tile_px, out)
    return _panel(sample, kind, label, img, cmap, tile_px, out)


def _guess_kind(sample: Any) -> str:
    import numpy as np

    if sample.ndim == 1:
        return "vector"
    if sample.ndim == 2:
        return "tokens"
    if sample.ndim == 3 and sample.shape[-1] == sample.shape[-2] and np.isfinite(sample).all():
        rows = sample.sum(axis=-1)
        if sample.min() >= 0 and np.allclose(rows, 1.0, atol=1e-3):
            return "heads"
    return "channels"


def _image_array(image: Any) -> Any:
    """The input image as an (H, W, 3) float array in [0, 1]."""
    import numpy as np

    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    arr = np.asarray(to_numpy(image, "image"), dtype=np.float64)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise FxtractValueError(f"image must be (H, W, 3), (3, H, W) or a PIL image; got shape {arr.shape}.")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > 1:  # normalised or 0..255: show its range
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return arr


def _tiles(
    sample: Any,
    kind: str,
    label: str,
    note: str,
    img: Any,
    max_channels: int,
    order: str,
    cmap: Optional[str],
    tile_px: int,
    out: Any,
) -> Picture:
    import numpy as np

    count = sample.shape[0]
    finite = np.where(np.isfinite(sample), sample, 0.0)
    if order == "activity" and kind != "heads":  # heads have no ranking: drawn in order
        chosen = np.argsort(-np.abs(finite).mean(axis=(1, 2)), kind="stable")[:max_channels]
    else:
        chosen = np.arange(min(count, max_channels))
    n = len(chosen)
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    th = tile_px
    tw = max(8, round(tile_px * sample.shape[2] / sample.shape[1])) if sample.shape[1] else tile_px
    grid_w, grid_h = columns * (tw + _GAP) - _GAP, rows * (th + _GAP) - _GAP
    side = max(min(grid_h, 3 * tile_px), 2 * tile_px) if img is not None else 0
    left = _MARGIN + (side + 3 * _GAP if img is not None else 0)
    width = left + grid_w + _MARGIN
    height = _TITLE + max(grid_h, side) + _MARGIN
    fig = new_figure(max(width, 320), height)
    width = max(width, 320)
    what = "heads" if kind == "heads" else "channels"
    first = "most active first" if order == "activity" and kind != "heads" else "in order"
    parts = [f"{n} of {count} {what}" + (f", {first}" if n < count or order == "activity" else "")]
    if note:
        parts.append(note)
    parts.append("each tile scaled to its min..max")
    fig.text(_MARGIN / width, 1 - 6 / height, label, ha="left", va="top", fontsize=11, weight="bold")
    fig.text(
        _MARGIN / width, 1 - 21 / height, "; ".join(parts), ha="left", va="top", fontsize=8, color="0.35"
    )
    if img is not None:
        ax = axes_at(fig, (_MARGIN, _TITLE, _MARGIN + side, _TITLE + side))
        ax.imshow(img, interpolation="lanczos")
        ax.set_axis_off()
        ax.text(
            0.02,
            0.02,
            "input",
            transform=ax.transAxes,
            color="white",
            fontsize=8,
            va="bottom",
            bbox={"facecolor": "black", "alpha": 0.5, "pad": 1.5, "linewidth": 0},
        )
    boxes = pixel_boxes(rows, columns, (tw, th), (left, _TITLE), _GAP)[:n]
    colours = cmap or ("magma" if kind == "heads" else "viridis")
    for box, c in zip(boxes, chosen):
        tile = finite[c]
        lo, hi = float(tile.min()), float(tile.max())
        ax = axes_at(fig, box)
        ax.imshow(
            tile,
            cmap=colours,
            vmin=lo,
            vmax=hi if hi > lo else lo + 1,
            interpolation="nearest",
            aspect="auto",
        )
        ax.set_axis_off()
        ax.text(
            0.03,
            0.97,
            ("h" if kind == "heads" else "") + str(int(c)),
            transform=ax.transAxes,
            color="white",
            fontsize=7,
            va="top",
            ha="left",
            bbox={"facecolor": "black", "alpha": 0.45, "pad": 1, "linewidth": 0},
        )
    pic = Picture(
        render(fig),
        kind,
        (width, height),
        tuple(boxes),
        tuple(int(c) for c in chosen),
        rows,
        columns,
        "; ".join(parts),
    )
    if out is not None:
        pic.save(out)
    return pic


def _panel(
    sample: Any, kind: str, label: str, img: Any, cmap: Optional[str], tile_px: int, out: Any
) -> Picture:
    import numpy as np

    finite = np.where(np.isfinite(sample), sample, 0.0)
    plot_h = max(4 * tile_px, 240)
    plot_w = max(6 * tile_px, 480)
    side = min(plot_h, 200) if img is not None else 0
    left = _MARGIN + (side + 3 * _GAP if img is not None else 0)
    ax_left = left + 50  # room for tick labels
    width = ax_left + plot_w + 80
    height = _TITLE + plot_h + 45
    fig = new_figure(width, height)
    fig.text(_MARGIN / width, 1 - 6 / height, label, ha="left", va="top", fontsize=11, weight="bold")
    if img is not None:
        ax = axes_at(fig, (_MARGIN, _TITLE, _MARGIN + side, _TITLE + side))
        ax.imshow(img, interpolation="lanczos")
        ax.set_axis_off()
    box = (ax_left, _TITLE + 6, ax_left + plot_w, _TITLE + plot_h)
    ax = axes_at(fig, box)
    if kind == "tokens":
        bound = float(np.abs(finite).max()) or 1.0
        shown = ax.imshow(
            finite, cmap=cmap or "RdBu_r", vmin=-bound, vmax=bound, aspect="auto", interpolation="nearest"
        )
        ax.set_xlabel("channel", fontsize=8)
        ax.set_ylabel("token", fontsize=8)
        bar = axes_at(fig, (box[2] + 10, box[1], box[2] + 22, box[3]))
        fig.colorbar(shown, cax=bar).ax.tick_params(labelsize=7)
        note = f"{sample.shape[0]} tokens x {sample.shape[1]} channels"
    else:
        ax.bar(np.arange(len(finite)), finite, width=1.0, color="#3b6ea8")
        ax.set_xlabel("channel", fontsize=8)
        ax.set_xlim(-0.5, len(finite) - 0.5)
        note = f"{len(finite)} channels"
    ax.tick_params(labelsize=7)
    fig.text(_MARGIN / width, 1 - 21 / height, note, ha="left", va="top", fontsize=8, color="0.35")
    pic = Picture(render(fig), kind, (width, height), (box,), (0,), 1, 1, note)
    if out is not None:
        pic.save(out)
    return pic


def feature_maps(
    model: Any,
    inputs: Any,
    *,
    nodes: Any,
    image: Any = None,
    out: Union[str, os.PathLike, None] = None,
    strategy: str = "auto",
    tracer_kwargs: Optional[dict[str, Any]] = None,
    **grid: Any,
) -> dict[str, Picture]:
    """Run ``model`` once on ``inputs`` and draw each chosen node with :func:`feature_grid`.

    Args:
        model: the model (left as it was: eval mode and ``torch.no_grad()`` only for this run).
        inputs: one batch: a tensor, a tuple of positional arguments or a dict of keyword ones.
        nodes: names or patterns (``"layer*.relu_1"``), as ``create_feature_extractor`` takes them.
        image: the input image to draw beside the tiles.
        out: a directory: each picture is written there as ``NODE.png``.
        strategy: the extractor's strategy.
        tracer_kwargs: FX tracer options.
        **grid: options of :func:`feature_grid` (``max_channels``, ``order``, ``kind``, ``cmap``...).

    Returns:
        ``{node: Picture}`` in execution order (a node with several tensor outputs as
        ``node.0``, ``node.1``).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
        >>> list(feature_maps(net, torch.randn(1, 3, 8, 8), nodes=["1"]))
        ['1']
    """
    import torch

    from .._api import create_feature_extractor, describe
    from .stats import _call, _outputs

    patterns = [nodes] if isinstance(nodes, str) else list(nodes)
    infos = describe(model, inputs, nodes=patterns, strategy=strategy, tracer_kwargs=tracer_kwargs)
    names = [i.name for i in infos if i.kind not in ("input", "output")]
    extractor = create_feature_extractor(
        model, return_nodes=names, tracer_kwargs=tracer_kwargs, strategy=strategy, example_inputs=inputs
    )
    flags = {m: m.training for m in model.modules()}
    try:
        extractor.eval()
        with torch.no_grad():
            outputs = list(_outputs(_call(extractor, inputs)))
    finally:
        for m, flag in flags.items():
            m.training = flag
    pictures = {}
    for name, value in outputs:
        target = None if out is None else os.path.join(os.fspath(out), file_name(name) + ".png")
        pictures[name] = feature_grid(value, name=name, image=image, out=target, **grid)
    return pictures


def file_name(node: str) -> str:
    """A node name as a file name (``layer1.0.relu`` stays; ``/`` and odd characters become ``_``)."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]", "_", node).lstrip(".") or "node"
