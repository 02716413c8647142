"""A 2-D PCA scatter of pooled features, coloured by label, streamed from a store or an array."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from typing import Any, Callable, Optional, Union

from .._errors import FxtractValueError, NodeNotFoundError, did_you_mean
from ._plot import Picture, axes_at, new_figure, render, to_numpy

__all__ = ["embedding_scatter", "pca_2d", "pool"]

_CHUNK_ELEMENTS = 1 << 24
_MAX_DIM = 8192  # the covariance is D x D float64: 512 MB at this size


def pool(batch: Any) -> Any:
    """Rows of features: ``(N, C, ...)`` averaged over the spatial dims, ``(N, T, C)`` over tokens.

    Example:
        >>> import numpy as np
        >>> pool(np.ones((2, 4, 3, 3))).shape, pool(np.ones((2, 5, 8))).shape
        ((2, 4), (2, 8))
    """
    import numpy as np

    x = np.asarray(batch, dtype=np.float64)
    if x.ndim == 1:
        return x[:, None]
    if x.ndim == 2:
        return x
    if x.ndim == 3:  # (N, T, C): tokens
        return x.mean(axis=1)
    return x.reshape(x.shape[0], x.shape[1], -1).mean(axis=2)  # (N, C, H, W...)


def pca_2d(batches: Callable[[], Iterator[Any]]) -> tuple[Any, Any, Any]:
    """Project pooled rows on their first two principal components, in two streamed passes.

    Args:
        batches: a callable returning a fresh iterator of batches (samples first); it is
            called twice (covariance, then projection), so memory stays bounded.

    Returns:
        ``(points (N, 2), explained variance ratios (2,), components (2, D))``; each
        component's sign is fixed so that its largest-magnitude entry is positive.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(50, 6))
        >>> points, ratio, _ = pca_2d(lambda: iter([x[:20], x[20:]]))
        >>> points.shape, bool(ratio[0] >= ratio[1])
        ((50, 2), True)
    """
    import numpy as np

    n, total, gram = 0, None, None
    for batch in batches():
        x = pool(to_numpy(batch, "features"))
        if total is None:
            if x.shape[1] > _MAX_DIM:
                raise FxtractValueError(
                    f"pooled features have {x.shape[1]} dims; PCA here takes at most {_MAX_DIM}. "
                    "Pool the node (fxtract extract --pool avg) or choose a narrower node."
                )
            total, gram = np.zeros(x.shape[1]), np.zeros((x.shape[1], x.shape[1]))
        n += len(x)
        total += x.sum(axis=0)
        gram += x.T @ x
    if n < 2 or total is None:
        raise FxtractValueError(f"a PCA needs at least 2 samples; got {n}.")
    mean = total / n
    cov = gram / n - np.outer(mean, mean)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:2]
    components = vectors[:, order].T
    if components.shape[0] < 2:  # one feature: the second axis is 0
        components = np.vstack([components, np.zeros_like(components)])
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    components *= np.where(signs == 0, 1, signs)[:, None]
    spread = max(float(values.clip(min=0).sum()), 1e-300)
    ratio = np.array([max(float(values[i]), 0.0) / spread for i in order] + [0.0] * (2 - len(order)))
    points = np.concatenate([(pool(to_numpy(b, "features")) - mean) @ components.T for b in batches()])
    return points, ratio, components


def embedding_scatter(
    features: Any,
    labels: Any = None,
    *,
    node: Optional[str] = None,
    classes: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
    batch_size: int = 1024,
    size: tuple[int, int] = (720, 560),
    out: Union[str, os.PathLike, None] = None,
) -> Picture:
    """A 2-D PCA scatter of a node's pooled features, coloured by label, as a PNG.

    Args:
        features: a feature store (``fxtract.open_features(path)``, with ``node``; its
            ``labels`` and ``classes`` are used), or an array / tensor of features, samples
            first: ``(N, C, H, W)`` and ``(N, T, C)`` are mean-pooled to ``(N, C)``.
        labels: one integer per sample (``-1``: unknown), or ``None``.
        node: the store key to draw.
        classes: label names, for the legend.
        title: the title (default: the node's name).
        batch_size: rows read at a time from a store (the store is read twice, streamed).
        size: ``(width, height)`` of the PNG in pixels.
        out: also write the PNG there (atomically).

    Returns:
        A :class:`Picture` (``kind="scatter"``); ``extra["points"]`` holds the 2-D points,
        ``extra["explained"]`` the explained variance ratios.

    Raises:
        NodeNotFoundError: ``node`` is not in the store.
        FxtractValueError: fewer than 2 samples, labels of the wrong length.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(40, 8))
        >>> pic = embedding_scatter(x, labels=np.arange(40) % 2, classes=["cat", "dog"])
        >>> pic.extra["points"].shape
        (40, 2)
    """
    import numpy as np

    if hasattr(features, "keys") and hasattr(features, "__getitem__") and not hasattr(features, "shape"):
        keys = list(features.keys())
        if node is None or node not in keys:
            what = "name the node to draw" if node is None else f"no node {node!r} in the store."
            raise NodeNotFoundError(f"{what}{did_you_mean(node or '', keys)} It has: {', '.join(keys[:8])}.")
        array = features[node]
        if labels is None:
            labels = getattr(features, "labels", None)
        if classes is None:
            classes = getattr(features, "classes", None)
        rows = max(
            1, min(batch_size, _CHUNK_ELEMENTS // max(1, math.prod(getattr(array, "shape", (1, 1))[1:])))
        )
        batches = lambda: iter(array.iter_batches(rows))  # noqa: E731
    else:
        array = to_numpy(features, "features")
        step = max(1, _CHUNK_ELEMENTS // max(1, math.prod(array.shape[1:])))
        batches = lambda: (array[i : i + step] for i in range(0, len(array), step))  # noqa: E731
    points, ratio, _ = pca_2d(batches)
    if labels is not None:
        labels = np.asarray(to_numpy(labels, "labels")).astype(np.int64).reshape(-1)
        if len(labels) != len(points):
            raise FxtractValueError(f"{len(labels)} labels for {len(points)} samples.")
    pic = _draw(points, ratio, labels, classes, title or node or "features", size)
    if out is not None:
        pic.save(out)
    return pic


def _draw(
    points: Any, ratio: Any, labels: Any, classes: Optional[Sequence[str]], title: str, size: tuple[int, int]
) -> Picture:
    import numpy as np

    width, height = size
    fig = new_figure(width, height)
    has_labels = labels is not None and (labels >= 0).any()
    legend_w = 150 if has_labels else 0
    box = (60, 40, width - 20 - legend_w, height - 50)
    ax = axes_at(fig, box)
    fig.text(
        10 / width,
        1 - 8 / height,
        f"{title}: PCA of pooled features ({len(points):,} samples)",
        ha="left",
        va="top",
        fontsize=11,
        weight="bold",
    )
    dot = max(4.0, min(30.0, 4000.0 / max(len(points), 1)))
    if not has_labels:
        ax.scatter(points[:, 0], points[:, 1], s=dot, color="#4c72b0", alpha=0.7, linewidths=0)
    else:
        values = sorted(int(v) for v in np.unique(labels) if v >= 0)
        from matplotlib import colormaps

        palette = colormaps["tab10" if len(values) <= 10 else "tab20" if len(values) <= 20 else "turbo"]
        for k, value in enumerate(values):
            picked = labels == value
            colour = palette(k / max(len(values) - 1, 1)) if len(values) > 20 else palette(k)
            name = classes[value] if classes is not None and 0 <= value < len(classes) else str(value)
            ax.scatter(
                points[picked, 0],
                points[picked, 1],
                s=dot,
                color=colour,
                alpha=0.75,
                linewidths=0,
                label=name,
            )
        if (labels < 0).any():
            unknown = labels < 0
            ax.scatter(
                points[unknown, 0],
                points[unknown, 1],
                s=dot,
                color="0.7",
                alpha=0.5,
                linewidths=0,
                label="unknown",
            )
        if len(values) <= 20:
            fig.legend(
                *ax.get_legend_handles_labels(),
                loc="upper left",
                fontsize=8,
                frameon=False,
                bbox_to_anchor=((box[2] + 10) / width, 1 - box[1] / height),
                markerscale=1.5,
            )
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f}% of variance)", fontsize=9)
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f}%)", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(True, color="0.92", linewidth=0.6)
    ax.set_axisbelow(True)
    return Picture(
        render(fig),
        "scatter",
        (width, height),
        (box,),
        ("PC1", "PC2"),
        1,
        1,
        f"{len(points)} samples",
        extra={"points": points, "explained": ratio},
    )
