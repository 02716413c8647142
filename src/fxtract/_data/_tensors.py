"""Ready inputs: a tensor file (``.pt``, ``.npy``, ``.safetensors``) or tensors in memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import torch

from .._errors import did_you_mean
from ._base import DataSource, DataSourceError

__all__ = ["TENSOR_EXTENSIONS", "MemorySource", "TensorFileSource", "check_columns", "is_array"]

TENSOR_EXTENSIONS = (".pt", ".pth", ".npy", ".safetensors")


class _Columns(DataSource):
    """Samples are rows of named columns; one unnamed column (``None``) is a positional input.

    Ready inputs: no transform (an image transform given to :func:`open_source` is not for them).
    """

    _columns: Any = None  # {name or None: tensor-like}, reopened lazily in a worker
    _handles = ("_columns",)
    label_key: Optional[str] = None
    labels: Optional[list[int]] = None
    count: int = 0

    def _open(self) -> dict[Optional[str], Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _row(self, column: Any, i: int) -> torch.Tensor:
        return column[i]

    def __len__(self) -> int:
        return self.count

    def _load(self, i: int) -> Any:
        if self._columns is None:
            self._columns = self._open()
        rows = {
            k: self._row(v, i)
            for k, v in self._columns.items()
            if self.label_key is None or k != self.label_key
        }
        return rows[None] if list(rows) == [None] else rows

    def label(self, i: int) -> Optional[int]:
        return None if self.labels is None else self.labels[i]

    def _setup(self, columns: dict[Optional[str], Any], what: str, label_column: Optional[str]) -> None:
        """Check the columns (first dims agree, a label column if asked) and keep what ``__len__`` needs."""
        self.count = check_columns({k: tuple(_shape(v)) for k, v in columns.items()}, what)
        if label_column is not None:
            named = [k for k in columns if k is not None]
            if label_column not in columns:
                raise DataSourceError(
                    f"{what} has no {label_column!r} for labels.{did_you_mean(label_column, named)} "
                    f"It holds: {', '.join(map(str, named)) or 'one unnamed tensor (save a dict to add labels)'}."
                )
            if len(columns) == 1:
                raise DataSourceError(
                    f"{what} holds only {label_column!r}: no inputs are left besides the labels."
                )
            self.labels = _label_list(columns[label_column], f"{what}[{label_column!r}]")
            self.label_key = label_column


def check_columns(shapes: dict[Optional[str], tuple[int, ...]], what: str) -> int:
    """The number of samples (the common first dim), or a clear error."""
    if not shapes:
        raise DataSourceError(f"{what} holds no tensors.")
    for k, shape in shapes.items():
        if len(shape) == 0:
            name = "the tensor" if k is None else repr(k)
            raise DataSourceError(f"{name} in {what} is a scalar; inputs need a first dimension of samples.")
    counts = {shape[0] for shape in shapes.values()}
    if len(counts) > 1:
        listing = ", ".join(f"{k}: {list(s)}" for k, s in shapes.items())
        raise DataSourceError(
            f"the tensors in {what} do not have the same number of samples (first dimension): {listing}. "
            "Every input needs one row per sample."
        )
    return counts.pop()


def _shape(value: Any) -> tuple[int, ...]:
    if hasattr(value, "get_shape"):  # a safetensors slice
        return tuple(value.get_shape())
    return tuple(value.shape)


def _label_list(column: Any, what: str) -> list[int]:
    values = column[:] if hasattr(column, "get_shape") else column
    values = torch.as_tensor(values)
    if (
        values.dim() != 1
        or values.dtype.is_floating_point
        or values.dtype.is_complex
        or values.dtype == torch.bool
    ):
        raise DataSourceError(
            f"labels {what} must be a 1-D integer tensor (one class index a sample); "
            f"got {values.dtype} of shape {list(values.shape)}."
        )
    return [int(v) for v in values.tolist()]


class TensorFileSource(_Columns):
    """Ready inputs in a file: row ``i`` of every tensor is sample ``i``.

    A ``.pt`` file holds a Tensor (one positional input) or a dict of Tensors (keyword
    inputs, as a Hugging Face model's ``input_ids`` + ``attention_mask``), loaded
    memory-mapped; a ``.npy`` file is one array, memory-mapped (``mmap_mode="r"``); a
    ``.safetensors`` file is a dict, read lazily with ``safe_open``. Only the rows read are
    loaded. ``label_column`` names a key holding int labels (left out of the inputs).
    """

    kind = "tensors"

    def __init__(self, path: Union[str, os.PathLike], *, label_column: Optional[str] = None) -> None:
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in TENSOR_EXTENSIONS:
            raise DataSourceError(f"{str(path)!r} is not a tensor file: use {', '.join(TENSOR_EXTENSIONS)}.")
        if label_column is not None and self.suffix == ".npy":
            raise DataSourceError(
                f"a .npy file holds one array, so it has no {label_column!r} for labels; save a dict to a "
                ".pt or .safetensors file to store labels with the inputs."
            )
        columns = self._open()
        self._setup(columns, self.path.name, label_column)
        self._columns = columns

    def _open(self) -> dict[Optional[str], Any]:
        where = str(self.path)
        try:
            if self.suffix == ".npy":
                import numpy as np

                return {None: np.load(where, mmap_mode="r")}
            if self.suffix == ".safetensors":
                from safetensors import safe_open

                handle = safe_open(where, framework="pt")
                return {k: handle.get_slice(k) for k in handle.keys()}  # noqa: SIM118 (not a dict)
            value = _load_pt(where)
        except DataSourceError:
            raise
        except Exception as e:
            first = (str(e).strip().splitlines() or [""])[0]
            first = (
                first.split(". ")[0] if self.suffix in (".pt", ".pth") else first
            )  # torch's advice is not ours
            raise DataSourceError(
                f"cannot read tensor file {where!r}: {type(e).__name__}: {first} (a .pt file is read with "
                "torch.load(weights_only=True): it must hold plain tensors)"
                if self.suffix in (".pt", ".pth")
                else f"cannot read tensor file {where!r}: {type(e).__name__}: {first}"
            ) from None
        if isinstance(value, torch.Tensor):
            return {None: value}
        if isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
            return {str(k): v for k, v in value.items()}
        raise DataSourceError(f"{self.path.name} holds {_what_it_holds(value)}; {_SAVE_HINT}")

    def _row(self, column: Any, i: int) -> torch.Tensor:
        if self.suffix == ".npy":
            import numpy as np

            return torch.from_numpy(np.array(column[i]))  # a copy: the memmap is read-only
        if self.suffix == ".safetensors":
            return column[i : i + 1][0]  # a safetensors slice reads only these bytes
        return column[i]

    def source(self, i: int) -> str:
        return f"{self.path.name}[{i}]"

    def _spec(self) -> str:
        return str(self.path)


_SAVE_HINT = (
    "save one Tensor (a positional input) or one dict of Tensors (keyword inputs) whose first dimension "
    "is the sample, e.g. torch.save({k: torch.stack([d[k] for d in items]) for k in items[0]}, 'inputs.pt')."
)


def _load_pt(path: str) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):  # an old (non-zip) file cannot be memory-mapped: read it whole
            raise
    return torch.load(path, map_location="cpu", weights_only=True)


def _what_it_holds(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        inner = {type(v).__name__ for v in value}
        return f"a {type(value).__name__} of {len(value)} {'/'.join(sorted(inner)) or 'values'}"
    if isinstance(value, dict):
        bad = [k for k, v in value.items() if not isinstance(v, torch.Tensor)]
        return f"a dict whose {bad[0]!r} is a {type(value[bad[0]]).__name__}" if bad else "an empty dict"
    return f"a {type(value).__name__}"


class MemorySource(_Columns):
    """Inputs already in memory: a Tensor (rows are positional inputs) or a dict of Tensors
    (keyword inputs); numpy arrays are taken as tensors. ``label_column`` names the key of
    the int labels.
    """

    kind = "memory"
    _handles = ()  # the tensors themselves travel to the workers

    def __init__(self, data: Any, *, label_column: Optional[str] = None) -> None:
        columns = {None: data} if is_array(data) else dict(data)
        columns = {k if k is None else str(k): _as_tensor(v, k) for k, v in columns.items()}
        self.name = "tensor" if None in columns else "dict"
        self._setup(columns, "the in-memory inputs", label_column)
        self._columns = columns

    def source(self, i: int) -> str:
        return f"{self.name}[{i}]"

    def _spec(self) -> str:
        return f"<{self.name}>"


def is_array(value: Any) -> bool:
    """A Tensor or a numpy array."""
    return isinstance(value, torch.Tensor) or (type(value).__module__ == "numpy" and hasattr(value, "shape"))


def _as_tensor(value: Any, key: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if is_array(value):
        return torch.from_numpy(value)
    name = "the input" if key is None else repr(key)
    raise DataSourceError(
        f"{name} is a {type(value).__name__}; in-memory inputs must be Tensors (or numpy arrays)."
    )
