"""What the pictures share: matplotlib on the Agg canvas, the PNG result, atomic writes.

matplotlib is optional (``pip install 'fxtract[viz]'``). Figures are built with
``matplotlib.figure.Figure`` on an explicit ``FigureCanvasAgg``: pyplot and the user's
global backend are never touched, and no figure is left open.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .._errors import FxtractError, FxtractTypeError

__all__ = ["MissingDependencyError", "Picture", "new_figure", "to_numpy", "write_atomic"]

INSTALL_HINT = "pip install 'fxtract[viz]'"


class MissingDependencyError(FxtractError, ImportError):
    """An optional package that the picture needs (matplotlib, pillow) is not installed."""


def _require(package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise MissingDependencyError(
            f"fxtract.viz draws with matplotlib and pillow; {package} is not installed ({e}). "
            f"Install them with: {INSTALL_HINT}"
        ) from None


def new_figure(width_px: int, height_px: int, dpi: int = 100) -> Any:
    """A matplotlib ``Figure`` of exactly ``width_px`` x ``height_px`` on its own Agg canvas."""
    _require("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def render(fig: Any) -> bytes:
    """The figure as PNG bytes, at its own size (no tight bbox: the layout stays known)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor=fig.get_facecolor())
    return buf.getvalue()


def axes_at(fig: Any, box: tuple[int, int, int, int], **kwargs: Any) -> Any:
    """An axes filling the pixel box ``(left, top, right, bottom)`` (origin top left)."""
    width, height = fig.canvas.get_width_height()
    left, top, right, bottom = box
    return fig.add_axes(
        (left / width, 1 - bottom / height, (right - left) / width, (bottom - top) / height), **kwargs
    )


@dataclass(frozen=True)
class Picture:
    """A PNG that ``fxtract.viz`` drew, with its layout.

    Attributes:
        png: the PNG file's bytes.
        kind: what it shows: ``"channels"``, ``"tokens"``, ``"heads"``, ``"vector"``,
            ``"histograms"`` or ``"scatter"``.
        size: ``(width, height)`` in pixels.
        boxes: the pixel box ``(left, top, right, bottom)`` of each tile (or panel), in
            drawing order, origin at the top left.
        shown: what each tile shows (channel, head or node indices; node names for
            histograms), in the order of ``boxes``.
        rows: rows of tiles.
        columns: columns of tiles.
        note: one line about what was left out or chosen (``"64 of 512 channels"``).
    """

    png: bytes
    kind: str
    size: tuple[int, int]
    boxes: tuple[tuple[int, int, int, int], ...] = ()
    shown: tuple[Any, ...] = ()
    rows: int = 1
    columns: int = 1
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def tiles(self) -> int:
        """The number of tiles (panels) drawn."""
        return len(self.boxes)

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write the PNG to ``path`` (atomically: a temporary name, fsync, rename); return the path."""
        return write_atomic(path, self.png)

    def _repr_png_(self) -> bytes:  # shown inline by Jupyter
        return self.png


def write_atomic(path: Union[str, os.PathLike], data: Union[bytes, str]) -> Path:
    """Write ``data`` to ``path`` so that a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a picture is as readable as any file
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def to_numpy(value: Any, what: str = "activation") -> Any:
    """A tensor or array-like as a numpy array (detached, on the CPU); a clear error otherwise."""
    import numpy as np

    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            value = value.float()
        return value.numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (dict, tuple, list)) and value and not _is_numeric_list(value):
        raise FxtractTypeError(
            f"the {what} is a {type(value).__name__}, not one tensor; pick one of its items "
            "(a node with several outputs is stored as sub-keys 'key.0', 'key.1')."
        )
    try:
        return np.asarray(value)
    except Exception as e:
        raise FxtractTypeError(
            f"the {what} must be a tensor or an array, got {type(value).__name__}: {e}"
        ) from None


def _is_numeric_list(value: Sequence[Any]) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, list, tuple)) for v in value)


def pixel_boxes(
    rows: int, columns: int, tile: tuple[int, int], origin: tuple[int, int], gap: int
) -> list[tuple[int, int, int, int]]:
    """The boxes of a ``rows`` x ``columns`` grid of ``tile`` = (w, h) tiles from ``origin``."""
    w, h = tile
    x0, y0 = origin
    return [
        (x0 + c * (w + gap), y0 + r * (h + gap), x0 + c * (w + gap) + w, y0 + r * (h + gap) + h)
        for r in range(rows)
        for c in range(columns)
    ]
