"""What every data source shares: :class:`Item`, :class:`Batch`, :func:`collate`, the errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch

from .._errors import FxtractError

__all__ = [
    "Batch",
    "DataNotFoundError",
    "DataPackageError",
    "DataSource",
    "DataSourceError",
    "Item",
    "collate",
]


class DataSourceError(FxtractError, ValueError):
    """The data cannot be used as given (no images, a missing column, mismatched lengths, ...)."""


class DataNotFoundError(FxtractError, FileNotFoundError):
    """The data names a file, folder or dataset that is not there."""


class DataPackageError(FxtractError, ImportError):
    """An optional package the data needs (``datasets``, ``torchvision``) is not installed."""


@dataclass
class Item:
    """One sample of a :class:`DataSource`.

    Attributes:
        inputs: a Tensor (one positional input) or a ``dict[str, Tensor]`` (keyword
            inputs); ``None`` when the sample could not be read.
        index: the sample's index in the source.
        error: why the sample could not be read (``"cannot decode image 'a.png': ..."``),
            else ``None``.
        label: the sample's label, when the source has labels.
    """

    inputs: Any
    index: int
    error: Optional[str] = None
    label: Optional[int] = None


@dataclass
class Batch:
    """Items collated by :func:`collate`: the good ones stacked, the bad ones listed.

    Attributes:
        inputs: a stacked Tensor or dict of stacked Tensors of the good items (``None``
            when no item of the batch could be read).
        indices: int64, the source indices of the rows of ``inputs``, in order.
        failed: ``(index, reason)`` of each item that could not be read.
        labels: int64 labels of the rows of ``inputs`` (-1 where unknown), or ``None``
            when no row has a label.
    """

    inputs: Any
    indices: torch.Tensor
    failed: list[tuple[int, str]] = field(default_factory=list)
    labels: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return int(self.indices.numel())


def collate(items: list[Item]) -> Batch:
    """Stack the readable items into one batch; report the unreadable ones in ``Batch.failed``.

    Use it as ``DataLoader(source, collate_fn=collate)``: a corrupt sample never stops
    the loader, the caller decides what to do with ``Batch.failed``.

    Raises:
        DataSourceError: the readable items do not stack (different shapes or keys).

    Example:
        >>> import torch
        >>> batch = collate([Item(torch.zeros(3), 0), Item(None, 1, error="bad"), Item(torch.ones(3), 2)])
        >>> batch.inputs.shape, batch.indices.tolist(), batch.failed
        (torch.Size([2, 3]), [0, 2], [(1, 'bad')])
    """
    good = [it for it in items if it.error is None]
    failed = [(int(it.index), str(it.error)) for it in items if it.error is not None]
    indices = torch.tensor([it.index for it in good], dtype=torch.int64)
    labels = None
    if any(it.label is not None for it in good):
        labels = torch.tensor([-1 if it.label is None else int(it.label) for it in good], dtype=torch.int64)
    inputs = _stack([it.inputs for it in good], [it.index for it in good]) if good else None
    return Batch(inputs, indices, failed, labels)


def _stack(values: list[Any], indices: list[int]) -> Any:
    first = values[0]
    if isinstance(first, dict):
        keys = list(first)
        for v, i in zip(values, indices):
            if not isinstance(v, dict) or list(v) != keys:
                got = list(v) if isinstance(v, dict) else type(v).__name__
                raise DataSourceError(
                    f"samples {indices[0]} and {i} do not have the same inputs: {keys} vs {got}."
                )
        return {k: _stack_tensors([v[k] for v in values], indices, k) for k in keys}
    return _stack_tensors(values, indices, None)


def _stack_tensors(values: list[Any], indices: list[int], key: Optional[str]) -> torch.Tensor:
    what = f"input {key!r} of samples" if key else "samples"
    shape = None
    for v, i in zip(values, indices):
        if not isinstance(v, torch.Tensor):
            raise DataSourceError(
                f"{what.replace(' of samples', '')} of sample {i} is a {type(v).__name__}, not a Tensor."
            )
        if shape is None:
            shape = v.shape
        elif v.shape != shape:
            hint = (
                "pad the token lists to one length (padding='max_length' when tokenizing) or use batch_size=1"
                if v.dim() == 1
                else "resize them to one size (a transform with a fixed crop, e.g. image_transform())"
            )
            raise DataSourceError(
                f"{what} {indices[0]} and {i} have different shapes, {list(shape)} and {list(v.shape)}, "
                f"so they cannot be batched: {hint}."
            )
    return torch.stack([v.as_subclass(torch.Tensor) for v in values])


class DataSource(torch.utils.data.Dataset):
    """A map-style dataset whose item ``i`` is an :class:`Item`; never raises for a bad sample.

    Subclasses implement ``__len__``, ``_load(i)`` (the inputs of sample ``i``, raising on a
    bad sample), ``source(i)`` and ``_spec()``; ``label(i)`` when they have labels. Sources
    are picklable (DataLoader workers): open file handles are dropped by ``__getstate__``
    and reopened on first use.

    Attributes:
        kind: ``"image-folder"``, ``"file-list"``, ``"tensors"``, ``"torchvision"``,
            ``"hf-datasets"`` or ``"memory"``.
        classes: the label names, or ``None``.
        transform: the image preprocessing, applied after the RGB conversion (``None``
            for ready inputs, which are used as they are).

    Example:
        >>> import torch
        >>> from fxtract._data import open_source
        >>> source = open_source(torch.arange(6.0).reshape(3, 2))
        >>> source[1], source.source(1), source.kind
        (Item(inputs=tensor([2., 3.]), index=1, error=None, label=None), 'tensor[1]', 'memory')
    """

    kind: str = ""
    classes: Optional[list[str]] = None
    transform: Any = None
    _handles: tuple[str, ...] = ()  # attributes holding unpicklable handles, reopened lazily

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load(self, i: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def source(self, i: int) -> str:  # pragma: no cover - abstract
        """Where sample ``i`` comes from: ``"cats/001.jpg"``, ``"x.pt[12]"``, ``"CIFAR10[12]"``."""
        raise NotImplementedError

    def _spec(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def label(self, i: int) -> Optional[int]:
        """The label of sample ``i``, or ``None`` when the source has no labels."""
        return None

    def _read(self, i: int) -> tuple[Any, Optional[int]]:
        """``(inputs, label)`` of sample ``i`` (a source whose items carry their labels reads once)."""
        return self._load(i), self.label(i)

    def __getitem__(self, i: int) -> Item:
        n = len(self)
        index = int(i)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {i} is out of range for a source of {n} samples.")
        try:
            inputs, label = self._read(index)
        except Exception as e:  # a bad sample is reported, never raised (DataLoader workers)
            return Item(None, index, error=_reason(e, self.source(index)))
        return Item(inputs, index, label=label)

    def describe(self) -> dict[str, Any]:
        """A JSON-able description for a store's manifest: kind, spec, count, classes, transform."""
        from ._transforms import describe_transform

        return {
            "kind": self.kind,
            "spec": self._spec(),
            "count": len(self),
            "classes": self.classes,
            "transform": describe_transform(self.transform),
        }

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in self._handles:
            state[name] = None
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._spec()!r}, {len(self)} samples)"


class SampleError(Exception):
    """Raised by a source's ``_load`` with the full reason a sample is bad (never leaves ``__getitem__``)."""


def fail(what: str, where: str, e: Union[BaseException, str]) -> SampleError:
    """``SampleError("cannot decode image 'a.png': OSError: ...")`` from an exception or a reason."""
    if isinstance(e, str):
        return SampleError(f"{what} {where!r}: {e}")
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", " ".join(str(e).split()))  # reasons are stable across runs
    return SampleError(f"{what} {where!r}: {type(e).__name__}" + (f": {text}" if text else ""))


def transformed(inputs: Any, transform: Any, where: str) -> Any:
    """``transform(inputs)``; its failure is the sample's (a ``SampleError`` naming it)."""
    if transform is None:
        return inputs
    try:
        return transform(inputs)
    except Exception as e:
        raise fail("transform failed on", where, e) from None


def _reason(e: BaseException, where: str) -> str:
    if isinstance(e, SampleError):
        return str(e)
    if isinstance(e, FileNotFoundError):
        filename = getattr(e, "filename", None)
        extra = f" ({filename})" if filename and str(filename) != where else ""
        return f"no such file: {where!r}{extra}"
    return str(fail("cannot read", where, e))
