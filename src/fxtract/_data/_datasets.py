"""Dataset objects: any torch ``Dataset`` in memory, and ``torchvision:NAME``."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch

from .._errors import did_you_mean
from ._base import DataNotFoundError, DataPackageError, DataSource, DataSourceError, transformed
from ._tensors import is_array

__all__ = ["DatasetSource", "TorchvisionSource", "sample_inputs", "torchvision_dataset_names"]


def torchvision_dataset_names() -> list[str]:
    """The dataset classes ``torchvision.datasets`` offers (``CIFAR10``, ``FakeData``, ``ImageFolder``, ...)."""
    import torch

    datasets = _torchvision_datasets()
    return sorted(
        name
        for name in getattr(datasets, "__all__", dir(datasets))
        if name != "VisionDataset"  # the abstract base
        and inspect.isclass(getattr(datasets, name, None))
        and issubclass(getattr(datasets, name), torch.utils.data.Dataset)
    )


def _torchvision_datasets() -> Any:
    try:
        import torchvision.datasets as datasets
    except ImportError as e:
        raise DataPackageError(
            f"torchvision is not installed ({e}); install it with: pip install 'fxtract[vision]'"
        ) from None
    return datasets


class DatasetSource(DataSource):
    """A torch ``Dataset`` (or anything with ``__getitem__`` and ``__len__``) whose items are an
    input, ``(input, label)`` or a dict of inputs. A PIL image input is converted to RGB and given
    ``transform`` (default :func:`image_transform`); tensors and arrays are ready inputs, used as they are.

    Labels come from the dataset's ``targets`` when it has them, else from its items.
    ``label_column`` names the dict key holding the label.
    """

    kind = "memory"

    def __init__(
        self,
        dataset: Any,
        *,
        transform: Any = None,
        label_column: Optional[str] = None,
        name: Optional[str] = None,
    ) -> None:
        self.dataset = dataset
        self.transform = transform if transform is not None else _default_transform()  # for image items
        self.label_key = label_column
        self.count = len(dataset)
        self.name = name or type(dataset).__name__
        self.labels = _label_attribute(dataset, self.count)
        names = getattr(dataset, "classes", None)
        if isinstance(names, (list, tuple)) and all(isinstance(c, str) for c in names):
            self.classes = list(names)

    def __len__(self) -> int:
        return self.count

    def _load(self, i: int) -> Any:
        return sample_inputs(self.dataset[i], self.transform, self.source(i), self.label_key)[0]

    def _read(self, i: int) -> tuple[Any, Optional[int]]:
        if self.labels is not None:
            return super()._read(i)
        return sample_inputs(self.dataset[i], self.transform, self.source(i), self.label_key)  # one read

    def label(self, i: int) -> Optional[int]:
        if self.labels is not None:
            return self.labels[i]
        return sample_inputs(self.dataset[i], None, self.source(i), self.label_key, inputs=False)[1]

    def source(self, i: int) -> str:
        return f"{self.name}[{i}]"

    def _spec(self) -> str:
        return f"<{self.name}>"


class TorchvisionSource(DatasetSource):
    """A ``torchvision.datasets`` class built by name; its ``(image, target)`` items are converted to RGB
    and given the transform (fxtract's, not the dataset's: it is built with ``transform=None``).

    ``name`` may carry arguments for the dataset after a ``?``: ``"CIFAR10?train=False"``,
    ``"SVHN?split=test"``, ``"FakeData?size=100&image_size=(3,32,32)"`` (Python literals, else strings).
    """

    kind = "torchvision"

    def __init__(
        self,
        name: str,
        *,
        root: Union[str, os.PathLike, None] = None,
        download: bool = False,
        transform: Any = None,
    ) -> None:
        datasets = _torchvision_datasets()
        spec = name
        name, _, query = name.partition("?")
        names = torchvision_dataset_names()
        if name not in names:
            lower = {n.lower(): n for n in names}
            close = lower.get(name.lower())
            hint = f" Did you mean {close!r}?" if close else did_you_mean(name, names)
            raise DataSourceError(f"torchvision has no dataset {name!r}.{hint} It has: {', '.join(names)}.")
        cls = getattr(datasets, name)
        params = inspect.signature(cls).parameters
        kwargs = _arguments(name, query, params)
        if "root" in params:
            if root is None:
                raise DataSourceError(
                    f"torchvision:{name} needs the folder it is in (or is downloaded to): --root DIR (root=DIR)."
                )
            kwargs["root"] = os.fspath(Path(root).expanduser())
        if "download" in params:
            kwargs["download"] = bool(download)
        missing = [
            p
            for p, param in params.items()
            if p not in kwargs
            and param.default is inspect.Parameter.empty
            and param.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]
        if missing:
            raise DataSourceError(
                f"torchvision:{name} needs the arguments {', '.join(missing)}, which fxtract cannot guess; "
                "build the dataset in Python and pass it as data."
            )
        try:
            dataset = cls(**kwargs)
        except (RuntimeError, OSError) as e:
            where = f" under {kwargs['root']!r}" if "root" in kwargs else ""
            todo = (
                "Pass --download (download=True) to download it there, or "
                if "download" in params
                else "Pass "
            )
            raise DataNotFoundError(
                f"torchvision:{name} found no dataset{where} ({_first_line(e).rstrip('.')}). "
                f"{todo}--root DIR (root=DIR) where it is."
            ) from None
        except Exception as e:
            raise DataSourceError(f"could not build torchvision:{spec}: {_first_line(e)}") from None
        self.dataset_spec = f"torchvision:{spec}"
        self.root = kwargs.get("root")
        super().__init__(dataset, transform=transform, name=name)

    def _spec(self) -> str:
        return self.dataset_spec

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "root": self.root}


_FIXED = ("root", "download", "transform", "target_transform", "transforms")


def _arguments(name: str, query: str, params: Any) -> dict[str, Any]:
    """``"train=False&size=3"`` -> ``{"train": False, "size": 3}``, checked against the dataset's parameters."""
    import ast

    kwargs: dict[str, Any] = {}
    allowed = [p for p in params if p not in _FIXED]
    for pair in filter(None, query.split("&")):
        key, eq, text = pair.partition("=")
        key = key.strip()
        if not eq or not key:
            raise DataSourceError(f"torchvision:{name}?{query}: arguments are key=value pairs joined by &.")
        if key not in allowed:
            raise DataSourceError(
                f"torchvision:{name} has no argument {key!r}.{did_you_mean(key, allowed)} "
                f"It takes: {', '.join(allowed) or 'none besides root and download (--root, --download)'}."
            )
        try:
            kwargs[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            kwargs[key] = text.strip()
    return kwargs


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _label_attribute(dataset: Any, count: int) -> Optional[list[int]]:
    """The per-sample class indices a dataset keeps (``targets``: CIFAR, MNIST, ImageFolder;
    ``labels``: SVHN, STL10; ``_labels``: Food101, Flowers102, ...), so labels need no item read."""
    for attr in ("targets", "labels", "_labels"):
        values = getattr(dataset, attr, None)
        if values is None or isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            continue
        try:
            if len(values) != count:
                continue
            listed = values.tolist() if hasattr(values, "tolist") else list(values)
            if all(isinstance(v, int) and not isinstance(v, bool) for v in listed):
                return listed
        except (TypeError, ValueError):
            continue
    return None


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
    when there is none); tensors, arrays and dicts of them are ready inputs, left as they are.
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
        return {str(k): _as_tensor_value(v) for k, v in sample.items()}, label
    if not inputs:
        return None, label
    if _is_pil(sample):
        from ._images import to_rgb

        return transformed(to_rgb(sample), transform or _default_transform(), where), label
    return _as_tensor_value(sample), label


def _as_tensor_value(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value
    if is_array(value) or isinstance(value, (list, int, float)):
        return torch.as_tensor(value)
    raise TypeError(f"an input is a {type(value).__name__}, not a tensor or an array")


def _is_pil(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "mode") and hasattr(value, "size")


_DEFAULT_TRANSFORM: Any = None


def _default_transform() -> Any:
    global _DEFAULT_TRANSFORM
    if _DEFAULT_TRANSFORM is None:
        from ._transforms import image_transform

        _DEFAULT_TRANSFORM = image_transform()
    return _DEFAULT_TRANSFORM
