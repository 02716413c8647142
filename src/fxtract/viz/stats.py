"""Activation statistics per node, streamed: from a live model or from a feature store.

Every number is accumulated chunk by chunk in float64 (Chan's parallel form of Welford's
update for the mean and variance), so a store larger than memory works and the result
equals numpy's on the same data.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from .._errors import FxtractTypeError, FxtractValueError
from ._plot import Picture, axes_at, new_figure, render, to_numpy

__all__ = ["NodeStats", "StatsReport", "activation_stats", "channel_axis_of"]

# Elements per float64 chunk (128 MB): bounds memory whatever the store's size.
_CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class NodeStats:
    """Statistics of one node's activations over every input.

    ``mean``, ``std`` (population, as ``numpy.std``), ``min`` and ``max`` are over the
    finite values (``nan`` when there is none); ``zeros`` is the fraction of all values
    that are exactly 0; a channel is dead when it is 0 for every input (NaN is not 0).

    Attributes:
        name: the node (output key).
        shape: the shape of one sample (``()`` for ragged outputs).
        samples: number of samples (rows).
        count: number of values.
        mean: mean of the finite values.
        std: standard deviation of the finite values.
        min: smallest finite value.
        max: largest finite value.
        zeros: fraction of values equal to 0.
        nans: number of NaN values.
        infs: number of +-Inf values.
        channels: size of the channel axis.
        dead: indices of the dead channels.
        histogram: ``(counts, edges)`` over [min, max] when asked for (``bins``), else ``None``.
    """

    name: str
    shape: tuple[int, ...]
    samples: int
    count: int
    mean: float
    std: float
    min: float
    max: float
    zeros: float
    nans: int
    infs: int
    channels: int
    dead: tuple[int, ...]
    histogram: Optional[tuple[Any, Any]] = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``None`` for NaN figures; the histogram as lists)."""
        data: dict[str, Any] = {
            "name": self.name,
            "shape": list(self.shape),
            "samples": self.samples,
            "count": self.count,
        }
        for key in ("mean", "std", "min", "max", "zeros"):
            value = getattr(self, key)
            data[key] = None if math.isnan(value) else value
        data.update(nans=self.nans, infs=self.infs, channels=self.channels, dead=list(self.dead))
        if self.histogram is not None:
            data["histogram"] = {"counts": self.histogram[0].tolist(), "edges": self.histogram[1].tolist()}
        return data


class StatsReport(list):  # type: ignore[type-arg]
    """What :func:`activation_stats` returns: a ``list`` of :class:`NodeStats`, in execution order.

    Example:
        >>> import numpy as np
        >>> report = activation_stats({"a": np.zeros((2, 3)), "b": np.array([[1.0, np.nan]])})
        >>> report.first_nan, report[0].dead
        ('b', (0, 1, 2))
    """

    @property
    def first_nan(self) -> Optional[str]:
        """The first node (in execution order) with a NaN, or ``None``: where to look first."""
        return next((s.name for s in self if s.nans), None)

    @property
    def first_inf(self) -> Optional[str]:
        """The first node with an Inf, or ``None``."""
        return next((s.name for s in self if s.infs), None)

    def problems(self) -> list[str]:
        """One line per thing a person debugging the model wants to know (NaN, Inf, dead channels)."""
        lines = []
        if self.first_nan:
            s = next(s for s in self if s.name == self.first_nan)
            lines.append(
                f"NaN first appears at {s.name!r} ({s.nans:,} of {s.count:,} values); "
                "the nodes before it are finite."
            )
            later = [t.name for t in self if t.nans and t.name != s.name]
            if later:
                lines.append(f"NaN also in {len(later)} later node(s): {_few(later)}.")
        if self.first_inf:
            infs = [t.name for t in self if t.infs]
            lines.append(
                f"Inf first appears at {self.first_inf!r}; {len(infs)} node(s) hold Inf: {_few(infs)}."
            )
        dead = [s for s in self if s.dead]
        if len(dead) > 5:  # one line, the worst nodes first
            worst = sorted(dead, key=lambda s: -len(s.dead) / s.channels)
            named = [f"{s.name!r} {len(s.dead)}/{s.channels}" for s in worst]
            lines.append(f"dead channels (0 on every input) in {len(dead)} nodes; the most: {_few(named)}.")
        for s in dead if len(dead) <= 5 else ():
            lines.append(
                f"{s.name!r}: {len(s.dead)} of {s.channels} channels are dead (0 on every input): "
                f"{_few([str(c) for c in s.dead])}."
            )
        return lines

    def table(self) -> str:
        """The statistics as an aligned text table."""
        header = ["node", "shape", "mean", "std", "min", "max", "zeros", "dead", "nan", "inf"]
        rows = [header]
        for s in self:
            rows.append(
                [
                    s.name,
                    "x".join(str(d) for d in s.shape) or "-",
                    _num(s.mean),
                    _num(s.std),
                    _num(s.min),
                    _num(s.max),
                    f"{100 * s.zeros:.1f}%",
                    f"{len(s.dead)}/{s.channels}",
                    f"{s.nans:,}",
                    f"{s.infs:,}",
                ]
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        return "\n".join(
            "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows
        )

    def to_json(self) -> str:
        """The statistics as JSON: ``{"nodes": [...], "first_nan": ..., "first_inf": ...}``."""
        return json.dumps(
            {"nodes": [s.to_dict() for s in self], "first_nan": self.first_nan, "first_inf": self.first_inf},
            indent=2,
        )

    def to_csv(self) -> str:
        """The statistics as CSV, one row per node (dead channels as a count)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        keys = [
            "name",
            "shape",
            "samples",
            "count",
            "mean",
            "std",
            "min",
            "max",
            "zeros",
            "nans",
            "infs",
            "channels",
            "dead",
        ]
        writer.writerow(keys)
        for s in self:
            row = s.to_dict()
            row["shape"] = "x".join(str(d) for d in s.shape)
            row["dead"] = len(s.dead)
            writer.writerow(["" if row[k] is None else row[k] for k in keys])
        return buf.getvalue()

    def histograms(
        self,
        *,
        out: Union[str, os.PathLike, None] = None,
        columns: int = 4,
        tile_px: tuple[int, int] = (300, 170),
    ) -> Picture:
        """One histogram per node (log-scale counts) as a PNG; needs ``bins`` in :func:`activation_stats`.

        Raises:
            FxtractValueError: the report has no histograms.
        """
        with_hist = [s for s in self if s.histogram is not None]
        if not with_hist:
            raise FxtractValueError("this report has no histograms: call activation_stats(..., bins=64).")
        if len(with_hist) > 24 and columns == 4:  # many nodes: a wider page, not a very tall one
            columns = 6
        columns = max(1, min(columns, len(with_hist)))
        rows = math.ceil(len(with_hist) / columns)
        tw, th = tile_px
        gap_x, gap_y, top, left = 50, 60, 40, 55
        width = left + columns * (tw + gap_x)
        height = top + rows * (th + gap_y)
        fig = new_figure(width, height)
        fig.text(
            10 / width,
            1 - 8 / height,
            "Activation histograms (counts, log scale)",
            ha="left",
            va="top",
            fontsize=11,
            weight="bold",
        )
        boxes = []
        for k in range(len(with_hist)):
            r, c = divmod(k, columns)
            x, y = left + c * (tw + gap_x), top + 16 + r * (th + gap_y)
            boxes.append((x, y, x + tw, y + th))
        for box, s in zip(boxes, with_hist):
            counts, edges = s.histogram  # type: ignore[misc]
            ax = axes_at(fig, box)
            ax.stairs(counts, edges, fill=True, color="#4c72b0" if not (s.nans or s.infs) else "#c44e52")
            if counts.any():
                ax.set_yscale("log")
            flags = [f"{s.nans:,} NaN"] if s.nans else []
            flags += [f"{s.infs:,} Inf"] if s.infs else []
            flags += [f"{len(s.dead)}/{s.channels} dead channels"] if s.dead else []
            ax.set_title(s.name + (f"  ({', '.join(flags)})" if flags else ""), fontsize=8, loc="left")
            ax.text(
                0.98,
                0.95,
                f"mean {_num(s.mean)}\nstd {_num(s.std)}\nzeros {100 * s.zeros:.0f}%",
                transform=ax.transAxes,
                ha="right",
                va="top",
                fontsize=6.5,
                color="0.25",
                bbox={"facecolor": "white", "alpha": 0.75, "pad": 1.5, "linewidth": 0},
            )
            ax.tick_params(labelsize=6.5)
        pic = Picture(
            render(fig),
            "histograms",
            (width, height),
            tuple(boxes),
            tuple(s.name for s in with_hist),
            rows,
            columns,
            f"{len(with_hist)} nodes",
        )
        if out is not None:
            pic.save(out)
        return pic


def _few(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" (+{len(names) - n} more)" if len(names) > n else "")


def _num(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.4g}"


def channel_axis_of(sample_ndim: int) -> Optional[int]:
    """The channel axis of one sample: 0 for ``(C, H, W)`` and deeper, last for ``(T, C)`` and ``(C,)``."""
    if sample_ndim == 0:
        return None
    return 0 if sample_ndim >= 3 else sample_ndim - 1


class _Accumulator:
    """Streamed statistics of one node: feed it batches (samples first), read ``result``."""

    def __init__(self, name: str, channel_axis: Optional[int]) -> None:
        self.name = name
        self.channel_axis = channel_axis
        self.shape: Optional[tuple[int, ...]] = None
        self.samples = self.count = self.finite = 0
        self.mean = self.m2 = 0.0
        self.lo, self.hi = math.inf, -math.inf
        self.zeros = self.nans = self.infs = 0
        self.nonzero: Any = None  # per channel, int64
        self.hist: Any = None

    def add(self, batch: Any) -> None:
        import numpy as np

        if isinstance(batch, (list, tuple)):  # ragged: one array per sample
            for row in batch:
                self._add(np.asarray(to_numpy(row))[None], ragged=True)
            return
        self._add(np.asarray(to_numpy(batch)), ragged=False)

    def _add(self, batch: Any, ragged: bool) -> None:
        import numpy as np

        if batch.ndim == 1:  # one value per sample
            batch = batch[:, None]
        sample_shape = tuple(batch.shape[1:])
        if self.shape is None:
            self.shape = () if ragged else sample_shape
        elif not ragged and sample_shape != self.shape:
            raise FxtractValueError(
                f"node {self.name!r} changes shape between batches: {self.shape} then {sample_shape}."
            )
        axis = self.channel_axis if self.channel_axis is not None else channel_axis_of(len(sample_shape))
        if axis is None or not -len(sample_shape) <= axis < len(sample_shape):
            raise FxtractValueError(
                f"channel_axis {axis} is out of range for node {self.name!r} of sample shape {sample_shape}."
            )
        axis %= len(sample_shape)
        per_sample = max(1, math.prod(sample_shape))
        step = max(1, _CHUNK_ELEMENTS // per_sample)
        for start in range(0, batch.shape[0], step):
            self._chunk(np.asarray(batch[start : start + step], dtype=np.float64), axis + 1)

    def _chunk(self, x: Any, axis: int) -> None:
        import numpy as np

        self.samples += x.shape[0]
        self.count += x.size
        nonzero = np.moveaxis(x != 0, axis, 0).reshape(x.shape[axis], -1).sum(axis=1)
        if self.nonzero is None:
            self.nonzero = np.zeros(x.shape[axis], dtype=np.int64)
        if len(nonzero) != len(self.nonzero):
            raise FxtractValueError(
                f"node {self.name!r} changes its number of channels: {len(self.nonzero)} then {len(nonzero)}."
            )
        self.nonzero += nonzero
        self.zeros += x.size - int(np.count_nonzero(x))
        nan = np.isnan(x)
        self.nans += int(nan.sum())
        self.infs += int(np.isinf(x).sum())
        finite = x[np.isfinite(x)] if self.nans or self.infs else x.reshape(-1)
        n_b = finite.size
        if n_b == 0:
            return
        mean_b = float(finite.mean())
        m2_b = float(np.square(finite - mean_b).sum())
        n_a = self.finite
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * n_a * n_b / n
        self.finite = n
        self.lo = min(self.lo, float(finite.min()))
        self.hi = max(self.hi, float(finite.max()))

    def add_histogram(self, batch: Any, bins: int) -> None:
        import numpy as np

        if isinstance(batch, (list, tuple)):
            for row in batch:
                self.add_histogram(np.asarray(to_numpy(row))[None], bins)
            return
        x = np.asarray(to_numpy(batch))
        if self.hist is None:
            lo, hi = (self.lo, self.hi) if self.finite else (0.0, 1.0)
            self.hist = (np.zeros(bins, dtype=np.int64), np.linspace(lo, hi if hi > lo else lo + 1, bins + 1))
        step = max(1, _CHUNK_ELEMENTS // max(1, x[:1].size))
        for start in range(0, x.shape[0], step):
            chunk = np.asarray(x[start : start + step], dtype=np.float64).reshape(-1)
            chunk = chunk[np.isfinite(chunk)]
            self.hist[0][:] += np.histogram(chunk, bins=self.hist[1])[0]

    def result(self) -> NodeStats:
        nan = float("nan")
        empty = self.finite == 0
        dead = tuple(int(i) for i in (self.nonzero == 0).nonzero()[0]) if self.nonzero is not None else ()
        return NodeStats(
            name=self.name,
            shape=self.shape or (),
            samples=self.samples,
            count=self.count,
            mean=nan if empty else self.mean,
            std=nan if empty else math.sqrt(max(self.m2 / self.finite, 0.0)),
            min=nan if empty else self.lo,
            max=nan if empty else self.hi,
            zeros=self.zeros / self.count if self.count else nan,
            nans=self.nans,
            infs=self.infs,
            channels=0 if self.nonzero is None else len(self.nonzero),
            dead=dead,
            histogram=self.hist,
        )


def activation_stats(
    source: Any,
    inputs: Any = None,
    *,
    nodes: Any = None,
    bins: int = 0,
    channel_axis: Optional[int] = None,
    batch_size: int = 1024,
    strategy: str = "auto",
    tracer_kwargs: Optional[dict[str, Any]] = None,
) -> StatsReport:
    """Mean, std, min, max, zeros, dead channels, NaN and Inf of each node's activations.

    Args:
        source: one of
            * a model (``nn.Module``) and ``inputs``: an extractor for ``nodes`` runs on each
              batch (in eval mode, under ``torch.no_grad()``; the model is left as it was);
              or an extractor made by ``create_feature_extractor``, with ``nodes=None``;
            * a feature store (``fxtract.open_features(path)``, or its path): each key is
              streamed with ``iter_batches`` (bounded memory);
            * a dict ``{name: tensor or array}``, samples first.
        inputs: with a model: one batch (a tensor, a tuple of positional arguments, a dict
            of keyword arguments) or a list (any iterable) of batches.
        nodes: with a model: names or patterns (as ``create_feature_extractor`` takes them;
            default every node); with a store or dict: the keys (default all).
        bins: also compute a histogram of that many bins per node (a second pass).
        channel_axis: the channel axis of one sample (default: 0 for ``(C, H, W)`` and deeper,
            the last for ``(T, C)`` and ``(C,)``).
        batch_size: rows read at a time from a store.
        strategy: with a model, the extractor's strategy.
        tracer_kwargs: with a model, options for the FX tracer.

    Returns:
        A :class:`StatsReport` (a list of :class:`NodeStats` in execution order), with
        ``first_nan``, ``problems()``, ``table()``, ``to_json()``, ``to_csv()`` and
        ``histograms()``.

    Raises:
        NodeNotFoundError: a node or key that does not exist.
        FxtractTypeError: a source it cannot read.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
        >>> report = activation_stats(net, torch.randn(2, 3, 8, 8), nodes=["0", "1"])
        >>> [s.name for s in report], report[1].min >= 0
        (['0', '1'], True)
    """
    if bins < 0 or batch_size < 1:
        raise FxtractValueError(f"bins must be >= 0 and batch_size >= 1; got {bins}, {batch_size}.")
    if isinstance(source, (str, os.PathLike)):
        source = _open_store(source)
    if _is_module(source):
        if inputs is None:
            raise FxtractValueError(
                "statistics of a model need inputs: activation_stats(model, batch) or a list of batches."
            )
        return _live(source, inputs, nodes, bins, channel_axis, strategy, tracer_kwargs)
    if inputs is not None:
        raise FxtractValueError(
            "inputs only go with a model; a store or a dict already holds the activations."
        )
    streams = _streams(source, nodes, batch_size)
    accs = [_Accumulator(name, channel_axis) for name in streams]
    for acc in accs:
        for batch in streams[acc.name]():
            acc.add(batch)
        if bins:
            for batch in streams[acc.name]():
                acc.add_histogram(batch, bins)
    return StatsReport(acc.result() for acc in accs)


def _is_module(source: Any) -> bool:
    return any(c.__module__.startswith("torch.nn") and c.__name__ == "Module" for c in type(source).__mro__)


def _open_store(path: Union[str, os.PathLike]) -> Any:
    if not Path(path).exists():
        raise FxtractValueError(
            f"no feature store at {str(path)!r}; write one with: fxtract extract MODEL DATA --out DIR"
        )
    from .. import store  # L5, written by `fxtract extract`

    return store.open_features(path)


def _streams(source: Any, nodes: Any, batch_size: int) -> dict[str, Any]:
    """``{name: callable returning an iterator of batches}`` for a store or a dict."""
    from .._errors import NodeNotFoundError, did_you_mean

    if not hasattr(source, "keys") or not hasattr(source, "__getitem__"):
        raise FxtractTypeError(
            f"activation_stats reads a model (with inputs), a feature store or a dict of arrays; got {type(source).__name__}."
        )
    keys = list(source.keys())
    wanted = keys if nodes is None else [nodes] if isinstance(nodes, str) else list(nodes)
    for key in wanted:
        if key not in keys:
            raise NodeNotFoundError(
                f"no node {key!r} here.{did_you_mean(key, keys)} It has: {_few(keys, 8)}."
            )

    def stream(key: str) -> Any:
        value = source[key]
        if hasattr(value, "iter_batches"):  # a store's FeatureArray: bounded memory
            return lambda: value.iter_batches(_rows_per_batch(value, batch_size))
        return lambda: iter([value])

    return {key: stream(key) for key in wanted}


def _rows_per_batch(array: Any, batch_size: int) -> int:
    shape = getattr(array, "shape", None)
    if not shape or getattr(array, "ragged", False):
        return batch_size
    return max(1, min(batch_size, _CHUNK_ELEMENTS // max(1, math.prod(shape[1:]))))


def _batches(inputs: Any) -> list[Any]:
    if isinstance(inputs, list):
        return inputs
    if hasattr(inputs, "shape") or isinstance(inputs, (tuple, dict)):
        return [inputs]
    if isinstance(inputs, Iterable):
        return list(inputs)
    raise FxtractTypeError(f"inputs must be a batch or a list of batches; got {type(inputs).__name__}.")


def _call(extractor: Any, batch: Any) -> Any:
    if isinstance(batch, dict):
        return extractor(**batch)
    if isinstance(batch, tuple):
        return extractor(*batch)
    return extractor(batch)


def _live(
    model: Any,
    inputs: Any,
    nodes: Any,
    bins: int,
    channel_axis: Optional[int],
    strategy: str,
    tracer_kwargs: Optional[dict[str, Any]],
) -> StatsReport:
    import torch

    from .._api import create_feature_extractor, describe

    batches = _batches(inputs)
    if not batches:
        raise FxtractValueError("inputs is empty: give at least one batch.")
    example = batches[0]
    if nodes is None and getattr(model, "strategy", None) in ("fx", "export", "hooks"):
        extractor = model  # made by create_feature_extractor: its outputs, in its order
    else:
        patterns = [nodes] if isinstance(nodes, str) else nodes
        # describe resolves the patterns to node names in execution order (the order NaN travels in).
        infos = describe(model, example, nodes=patterns, strategy=strategy, tracer_kwargs=tracer_kwargs)
        names = [i.name for i in infos if i.kind not in ("input", "output")]
        extractor = create_feature_extractor(
            model, return_nodes=names, tracer_kwargs=tracer_kwargs, strategy=strategy, example_inputs=example
        )
    flags = {m: m.training for m in extractor.modules()}  # the model's submodules, shared
    accs: dict[str, _Accumulator] = {}
    try:
        extractor.eval()
        with torch.no_grad():
            for batch in batches:
                for name, value in _outputs(_call(extractor, batch)):
                    if name not in accs:
                        accs[name] = _Accumulator(name, channel_axis)
                    accs[name].add(value)
            if bins:
                for batch in batches:
                    for name, value in _outputs(_call(extractor, batch)):
                        accs[name].add_histogram(value, bins)
    finally:
        for m, flag in flags.items():
            m.training = flag
    return StatsReport(acc.result() for acc in accs.values())


def _outputs(out: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The tensors of the outputs; a tuple or dict output as sub-keys ``key.0`` / ``key.name`` (as in a store)."""
    for name, value in out.items():
        if hasattr(value, "detach"):
            yield name, value
        elif isinstance(value, (tuple, list)):
            yield from _outputs({f"{name}.{i}": v for i, v in enumerate(value)})
        elif isinstance(value, dict):
            yield from _outputs({f"{name}.{k}": v for k, v in value.items()})
