"""Datasets of other libraries: ``torchvision:NAME`` and a Hugging Face ``datasets`` folder."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Union

from .._errors import did_you_mean
from ._base import DataNotFoundError, DataPackageError, DataSourceError
from ._tensors import MemorySource

__all__ = ["TorchvisionSource", "torchvision_dataset_names"]


def torchvision_dataset_names() -> list[str]:
    """The dataset classes ``torchvision.datasets`` offers (``CIFAR10``, ``FakeData``, ``ImageFolder``, ...)."""
    import torch

    datasets = _torchvision_datasets()
    return sorted(
        name
        for name in getattr(datasets, "__all__", dir(datasets))
        if inspect.isclass(getattr(datasets, name, None))
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


class TorchvisionSource(MemorySource):
    """A ``torchvision.datasets`` class built by name; its ``(image, target)`` items are converted to RGB
    and given the transform (fxtract's, not the dataset's: it is built with ``transform=None``)."""

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
        names = torchvision_dataset_names()
        if name not in names:
            lower = {n.lower(): n for n in names}
            hint = (
                f" Did you mean {lower[name.lower()]!r}?"
                if name.lower() in lower
                else did_you_mean(name, names)
            )
            raise DataSourceError(f"torchvision has no dataset {name!r}.{hint} It has: {', '.join(names)}.")
        cls = getattr(datasets, name)
        params = inspect.signature(cls).parameters
        kwargs: dict[str, Any] = {}
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
            for p, spec in params.items()
            if p not in kwargs
            and spec.default is inspect.Parameter.empty
            and spec.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
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
            raise DataSourceError(f"could not build torchvision:{name}: {_first_line(e)}") from None
        self.dataset_name = name
        self.root = kwargs.get("root")
        super().__init__(dataset, transform=transform, name=name)

    def _spec(self) -> str:
        return f"torchvision:{self.dataset_name}" + (f" (root={self.root})" if self.root else "")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "root": self.root}


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
