"""A Hugging Face ``datasets`` dataset saved with ``save_to_disk`` (the optional extra ``fxtract[datasets]``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import torch

from .._errors import did_you_mean
from ._base import DataNotFoundError, DataPackageError, DataSource, DataSourceError, fail, transformed
from ._images import _LABEL_COLUMNS

__all__ = ["HFSource"]

_NUMERIC = ("int", "uint", "float", "bool")


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as e:
        raise DataPackageError(
            f"reading a Hugging Face dataset needs the datasets package ({e}); "
            "install it with: pip install 'fxtract[datasets]'"
        ) from None
    return datasets


class HFSource(DataSource):
    """Rows of a dataset saved by ``datasets.Dataset.save_to_disk``.

    Image mode: the image column (``image_column``, else the first feature of type
    ``Image``) is decoded by fxtract (RGB conversion, EXIF orientation; a bad image is a
    bad sample) and given ``transform``. Token mode (no image column): every column of
    numeric lists or arrays (``input_ids``, ``attention_mask``, ...) is a keyword input, as it is.
    Labels: ``label_column``, else the first ``ClassLabel`` feature (its names are
    ``classes``); a column of strings gives its sorted set as ``classes``.
    """

    kind = "hf-datasets"
    _handles = ("_dataset",)

    def __init__(
        self,
        path: Union[str, os.PathLike],
        *,
        transform: Any = None,
        image_column: Optional[str] = None,
        label_column: Optional[str] = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self.transform = transform
        dataset = self._load_from_disk()
        datasets = _datasets()
        features = dataset.features
        columns = list(features)

        def check(column: Optional[str], what: str) -> None:
            if column is not None and column not in features:
                raise DataSourceError(
                    f"the dataset at {str(self.path)!r} has no {what} column {column!r}."
                    f"{did_you_mean(column, columns)} Its columns: {_listing(features)}."
                )

        check(image_column, "image")
        check(label_column, "label")
        if image_column is None:
            image_column = next((c for c, f in features.items() if isinstance(f, datasets.Image)), None)
        if label_column is None:
            label_column = next((c for c, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
        if label_column is None:  # else a column of ints or names called label / labels / ...
            label_column = next(
                (
                    c
                    for c, f in features.items()
                    if c.lower() in _LABEL_COLUMNS and isinstance(f, datasets.Value)
                ),
                None,
            )
        self.image_column = image_column
        self.label_column = label_column
        if image_column is not None:
            self.input_columns = [image_column]
        else:
            self.input_columns = [
                c for c, f in features.items() if c != label_column and _is_numeric(f) and not _is_scalar(f)
            ]
            if not self.input_columns:
                raise DataSourceError(
                    f"the dataset at {str(self.path)!r} has no image column (a feature of type Image) and no "
                    f"column of numbers (token lists like input_ids) to use as inputs; its columns: "
                    f"{_listing(features)}. Tokenize the text first (dataset.map(tokenizer, batched=True)), or "
                    "name the image column with image_column= (--image-column)."
                )
        self.classes = None
        self.labels: Optional[list[int]] = None
        if label_column is not None:
            self.classes, self.labels = _labels(dataset, features[label_column], label_column)
        self.count = len(dataset)
        if image_column is None:
            self.transform = None  # token lists are ready inputs
        elif transform is None:
            from ._transforms import image_transform

            self.transform = image_transform()
        self._dataset = self._prepared(dataset)

    def _load_from_disk(self) -> Any:
        datasets = _datasets()
        if not self.path.exists():
            raise DataNotFoundError(f"no such folder: {str(self.path)!r} (a dataset saved by save_to_disk).")
        try:
            loaded = datasets.load_from_disk(os.fspath(self.path))
        except Exception as e:
            raise DataSourceError(
                f"cannot load a Hugging Face dataset from {str(self.path)!r}: {type(e).__name__}: {e}"
            ) from None
        if isinstance(loaded, datasets.DatasetDict):
            splits = list(loaded)
            if len(splits) != 1:
                raise DataSourceError(
                    f"{str(self.path)!r} holds a DatasetDict with the splits {', '.join(splits)}; pass one "
                    f"split's folder, e.g. {os.path.join(str(self.path), splits[0])!r}."
                )
            loaded = loaded[splits[0]]
        return loaded

    def _prepared(self, dataset: Any) -> Any:
        """Only the input columns; images left undecoded (fxtract decodes them, reporting bad ones)."""
        dataset = dataset.with_format(None).select_columns(
            self.input_columns
        )  # python values, whatever was saved
        if self.image_column is not None:
            dataset = dataset.cast_column(self.image_column, _datasets().Image(decode=False))
        return dataset

    def __len__(self) -> int:
        return self.count

    def _load(self, i: int) -> Any:
        if self._dataset is None:
            self._dataset = self._prepared(self._load_from_disk())
        row = self._dataset[i]
        if self.image_column is not None:
            from ._images import decode_image

            value = row[self.image_column]
            if value is None:
                raise fail("no image in", self.source(i), "the image cell is empty")
            if isinstance(value, dict):
                value = value.get("bytes") or value.get("path")
            if value is None:
                raise fail("no image in", self.source(i), "the image cell has no bytes nor path")
            return transformed(decode_image(value, self.source(i)), self.transform, self.source(i))
        return {c: torch.as_tensor(row[c]) for c in self.input_columns}

    def label(self, i: int) -> Optional[int]:
        if self.labels is None or self.labels[i] == -1:
            return None
        return self.labels[i]

    def source(self, i: int) -> str:
        return f"{self.path.name}[{i}]"

    def _spec(self) -> str:
        return str(self.path)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "image_column": self.image_column,
            "label_column": self.label_column,
            "input_columns": self.input_columns,
        }


def _is_numeric(feature: Any) -> bool:
    """A list / sequence / array of numbers (what a tokenizer writes), or a number."""
    dtype = getattr(feature, "dtype", None)
    inner = getattr(feature, "feature", None)
    if inner is not None:  # List / Sequence / LargeList, possibly nested
        return _is_numeric(inner)
    return isinstance(dtype, str) and dtype.startswith(_NUMERIC) and type(feature).__name__ != "ClassLabel"


def _is_scalar(feature: Any) -> bool:
    return getattr(feature, "feature", None) is None and not type(feature).__name__.startswith("Array")


def _labels(dataset: Any, feature: Any, column: str) -> tuple[Optional[list[str]], list[int]]:
    values = list(dataset[column])
    names = getattr(feature, "names", None)
    if names is not None:  # ClassLabel
        return list(names), [-1 if v is None else int(v) for v in values]
    if all(v is None or isinstance(v, str) for v in values):
        classes = sorted({v for v in values if v is not None})
        position = {c: k for k, c in enumerate(classes)}
        return classes, [-1 if v is None else position[v] for v in values]
    try:
        return None, [-1 if v is None else int(v) for v in values]
    except (TypeError, ValueError):
        raise DataSourceError(
            f"label column {column!r} holds {type(values[0]).__name__} values, not class indices or names."
        ) from None


def _listing(features: Any) -> str:
    return ", ".join(f"{c} ({type(f).__name__})" for c, f in features.items()) or "none"
