"""Ready inputs: a tensor file (``.pt``, ``.npy``, ``.safetensors``) or tensors in memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import torch

from .._errors import did_you_mean
from ._base import DataSource, DataSourceError, fail

__all__ = ["TENSOR_EXTENSIONS", "MemorySource", "TensorFileSource", "check_columns"]

TENSOR_EXTENSIONS = (".pt", ".pth", ".npy", ".safetensors")


class _Columns(DataSource):
    """Samples are rows of named columns; one unnamed column (``None``) is a positional input."""

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
        rows = {k: self._row(v, i) for k, v in self._columns.items() if k is None or k != self.label_key}
        inputs = rows[None] if list(rows) == [None] else rows
        if self.transform is None:
            return inputs
        try:
            return self.transform(inputs)
        except Exception as e:
            raise fail("transform failed on", self.source(i), e) from None

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

    def __init__(
        self, path: Union[str, os.PathLike], *, transform: Any = None, label_column: Optional[str] = None
    ) -> None:
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in TENSOR_EXTENSIONS:
            raise DataSourceError(f"{str(path)!r} is not a tensor file: use {', '.join(TENSOR_EXTENSIONS)}.")
        self.transform = transform
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
            raise DataSourceError(f"cannot read tensor file {where!r}: {type(e).__name__}: {e}") from None
        if isinstance(value, torch.Tensor):
            return {None: value}
        if isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
            return {str(k): v for k, v in value.items()}
        raise DataSourceError(f"{self.path.name} holds {_what_it_holds(value)}; {_SAVE_HINT}")

    def _row(self, column: Any, i: int) -> torch.Tensor:
        if self.suffix == ".npy":
            import numpy as np

            return torch.from_numpy(np.array(column[i]))  # a copy: the memmap is read-only
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


class MemorySource(DataSource):
    """Inputs already in memory: a Tensor, a dict of Tensors, or a torch ``Dataset``.

    A Dataset's items may be a tensor, ``(input, label)``, a dict of tensors or a PIL
    image (converted to RGB); numpy arrays become tensors. ``label_column`` names the dict
    key holding the label.
    """

    kind = "memory"

    def __init__(
        self,
        data: Any,
        *,
        transform: Any = None,
        label_column: Optional[str] = None,
        name: Optional[str] = None,
    ) -> None:
        self.transform = transform
        self.label_key = label_column
        self.columns: Optional[dict[Optional[str], torch.Tensor]] = None
        self.dataset: Any = None
        self.labels: Optional[list[int]] = None
        if isinstance(data, dict) or _is_array(data):
            columns = {None: data} if _is_array(data) else dict(data)
            columns = {k if k is None else str(k): _as_tensor(v, k) for k, v in columns.items()}
            helper = _Columns()
            helper._setup(columns, "the in-memory inputs", label_column)
            self.count, self.labels = helper.count, helper.labels
            self.columns = columns
            self.name = name or ("tensor" if None in columns else "dict")
        elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
            self.dataset = data
            self.count = len(data)
            self.name = name or type(data).__name__
            targets = getattr(data, "targets", None)
            if targets is not None and len(targets) == self.count:
                try:
                    self.labels = [
                        int(t) for t in (targets.tolist() if hasattr(targets, "tolist") else targets)
                    ]
                except (TypeError, ValueError):
                    self.labels = None
            names = getattr(data, "classes", None)
            if isinstance(names, (list, tuple)) and all(isinstance(c, str) for c in names):
                self.classes = list(names)
        else:
            raise DataSourceError(
                f"cannot use a {type(data).__name__} as data: pass a Tensor, a dict of Tensors, a torch "
                "Dataset, or a path (image folder, file list, tensor file)."
            )

    def __len__(self) -> int:
        return self.count

    def _load(self, i: int) -> Any:
        if self.columns is not None:
            rows = {k: v[i] for k, v in self.columns.items() if k is None or k != self.label_key}
            return _transformed(rows[None] if list(rows) == [None] else rows, self.transform, self.source(i))
        inputs, _ = sample_inputs(self.dataset[i], self.transform, self.source(i), self.label_key)
        return inputs

    def _read(self, i: int) -> tuple[Any, Optional[int]]:
        if self.dataset is None or self.labels is not None:
            return super()._read(i)
        return sample_inputs(self.dataset[i], self.transform, self.source(i), self.label_key)  # one read

    def label(self, i: int) -> Optional[int]:
        if self.labels is not None:
            return self.labels[i]
        if self.dataset is None:
            return None
        return sample_inputs(self.dataset[i], None, self.source(i), self.label_key, inputs=False)[1]

    def source(self, i: int) -> str:
        return f"{self.name}[{i}]"

    def _spec(self) -> str:
        return f"<{self.name}>"


def _is_array(value: Any) -> bool:
    return isinstance(value, torch.Tensor) or (type(value).__module__ == "numpy" and hasattr(value, "shape"))


def _as_tensor(value: Any, key: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if _is_array(value):
        return torch.from_numpy(value)
    name = "the input" if key is None else repr(key)
    raise DataSourceError(
        f"{name} is a {type(value).__name__}; in-memory inputs must be Tensors (or numpy arrays)."
    )


def _transformed(inputs: Any, transform: Any, where: str) -> Any:
    if transform is None:
        return inputs
    try:
        return transform(inputs)
    except Exception as e:
        raise fail("transform failed on", where, e) from None


def _is_label(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, torch.Tensor):
        return value.dim() == 0 and not value.dtype.is_floating_point
    return (
        type(value).__module__ == "numpy" and getattr(value, "shape", None) == () and value.dtype.kind in "iu"
    )


def sample_inputs(
    sample: Any, transform: Any, where: str, label_key: Optional[str] = None, *, inputs: bool = True
) -> tuple[Any, Optional[int]]:
    """``(inputs, label)`` of a Dataset item: a tensor, ``(x, label)``, a dict, a PIL image.

    A PIL image is converted to RGB, then given ``transform`` (or :func:`image_transform`
    when there is none); tensors and dicts get ``transform`` when there is one.
    """
    label = None
    if isinstance(sample, (tuple, list)):
        if len(sample) == 2 and (_is_label(sample[1]) or sample[1] is None):
            sample, label = sample[0], None if sample[1] is None else int(sample[1])
        elif len(sample) == 1:
            sample = sample[0]
        else:
            raise TypeError(
                f"an item is a {type(sample).__name__} of {len(sample)} values; fxtract takes an input, "
                "(input, int label) or a dict of inputs"
            )
    if isinstance(sample, dict):
        sample = dict(sample)
        if label_key is not None:
            if label_key not in sample:
                raise KeyError(f"the item has no {label_key!r} (it has {', '.join(map(str, sample))})")
            value = sample.pop(label_key)
            label = int(value)
        if not inputs:
            return None, label
        sample = {str(k): _as_tensor_value(v) for k, v in sample.items()}
        return _transformed(sample, transform, where), label
    if not inputs:
        return None, label
    if _is_pil(sample):
        from ._images import to_rgb

        return _transformed(to_rgb(sample), transform or _default_transform(), where), label
    return _transformed(_as_tensor_value(sample), transform, where), label


def _as_tensor_value(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value
    if _is_array(value) or isinstance(value, (list, int, float)):
        return torch.as_tensor(value)
    if _is_pil(value):
        return value
    raise TypeError(f"an input is a {type(value).__name__}, not a tensor, array or image")


def _is_pil(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "mode") and hasattr(value, "size")


_DEFAULT_TRANSFORM: Any = None


def _default_transform() -> Any:
    global _DEFAULT_TRANSFORM
    if _DEFAULT_TRANSFORM is None:
        from ._transforms import image_transform

        _DEFAULT_TRANSFORM = image_transform()
    return _DEFAULT_TRANSFORM
