"""The data sources of the dataset tier: folders, file lists, tensor files, torchvision and
Hugging Face datasets, in-memory tensors; each item an :class:`Item`, batched by :func:`collate`.

Imports torch (and PIL / torchvision / datasets inside the functions that need them);
``import fxtract`` does not import this package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

from ._base import Batch, DataNotFoundError, DataPackageError, DataSource, DataSourceError, Item, collate
from ._datasets import DatasetSource, TorchvisionSource, torchvision_dataset_names
from ._images import IMAGE_EXTENSIONS, FileListSource, ImageFolderSource, decode_image, to_rgb
from ._tensors import TENSOR_EXTENSIONS, MemorySource, TensorFileSource, is_array
from ._transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform, describe_transform, image_transform

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "TENSOR_EXTENSIONS",
    "Batch",
    "DataNotFoundError",
    "DataPackageError",
    "DataSource",
    "DataSourceError",
    "DatasetSource",
    "FileListSource",
    "ImageFolderSource",
    "ImageTransform",
    "Item",
    "MemorySource",
    "TensorFileSource",
    "TorchvisionSource",
    "collate",
    "decode_image",
    "describe_transform",
    "image_transform",
    "open_source",
    "to_rgb",
    "torchvision_dataset_names",
]

_LIST_EXTENSIONS = (".txt", ".csv", ".tsv")


def open_source(
    data: Any,
    *,
    transform: Any = None,
    root: Union[str, os.PathLike, None] = None,
    image_column: Optional[str] = None,
    label_column: Optional[str] = None,
    download: bool = False,
) -> DataSource:
    """Open any supported data as a :class:`DataSource` (map-style; item ``i`` -> :class:`Item`).

    Args:
        data: a folder of images (recursive; class subfolders give labels), a ``.txt`` /
            ``.csv`` / ``.tsv`` file list, a tensor file (``.pt`` / ``.npy`` / ``.safetensors``;
            a dict of tensors gives keyword inputs; the first dim is the sample),
            ``"torchvision:NAME"`` (with ``root``; ``"torchvision:CIFAR10?train=False"`` passes
            arguments to the dataset), ``"hf:PATH"`` or a folder saved by
            ``datasets.save_to_disk``, an in-memory Tensor / dict of Tensors / torch
            ``Dataset``, or a :class:`DataSource` (returned as it is).
        transform: the image preprocessing (PIL image -> tensor), applied after the RGB
            conversion; default :func:`image_transform`. Ready inputs (tensor files,
            in-memory tensors, token datasets, tensor items of a Dataset) are used as they
            are: the transform is not applied to them (``describe()`` then says ``None``).
        root: the folder of a ``torchvision:`` dataset.
        image_column: the column of a file list or Hugging Face dataset holding the images.
        label_column: the column (or dict key) holding labels.
        download: let a ``torchvision:`` dataset download itself into ``root``.

    Raises:
        DataNotFoundError: the path, or the torchvision dataset under ``root``, does not exist.
        DataSourceError: data of a kind fxtract cannot read (no images, a missing column,
            tensors of different lengths, an unknown torchvision dataset, ...).
        DataPackageError: an optional package the data needs is missing.

    Example:
        >>> import torch
        >>> source = open_source({"input_ids": torch.zeros(4, 7, dtype=torch.long),
        ...                       "attention_mask": torch.ones(4, 7, dtype=torch.long)})
        >>> len(source), sorted(source[0].inputs), source.source(2)
        (4, ['attention_mask', 'input_ids'], 'dict[2]')
    """
    if isinstance(data, DataSource):
        return data
    if isinstance(data, str) and data.startswith("torchvision:"):
        if image_column is not None or label_column is not None:
            raise DataSourceError(
                f"{data} gives (image, target) pairs: image_column / label_column apply to file lists and "
                "Hugging Face datasets."
            )
        return TorchvisionSource(
            data[len("torchvision:") :], root=root, download=download, transform=_image_default(transform)
        )
    if isinstance(data, str) and data.startswith(("hf:", "hf-datasets:")):
        from ._hf import HFSource

        return HFSource(
            data.split(":", 1)[1], transform=transform, image_column=image_column, label_column=label_column
        )
    if isinstance(data, (str, os.PathLike)):
        return _open_path(Path(data).expanduser(), transform, image_column, label_column)
    if image_column is not None:
        raise DataSourceError(
            "image_column applies to file lists and Hugging Face datasets, not in-memory data."
        )
    if isinstance(data, dict) or is_array(data):
        return MemorySource(data, label_column=label_column)
    if hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, (str, bytes)):
        return DatasetSource(data, transform=transform, label_column=label_column)
    raise DataSourceError(
        f"cannot use a {type(data).__name__} as data: pass a Tensor, a dict of Tensors, a torch Dataset, "
        "or a path (image folder, file list, tensor file, saved Hugging Face dataset) or 'torchvision:NAME'."
    )


def _open_path(
    path: Path, transform: Any, image_column: Optional[str], label_column: Optional[str]
) -> DataSource:
    from ._images import check_exists

    check_exists(path)
    if path.is_dir():
        if _saved_by_datasets(path):
            from ._hf import HFSource

            return HFSource(path, transform=transform, image_column=image_column, label_column=label_column)
        if image_column is not None or label_column is not None:
            raise DataSourceError(
                f"{str(path)!r} is an image folder: its labels come from its class subfolders; "
                "image_column / label_column apply to file lists and Hugging Face datasets."
            )
        return ImageFolderSource(path, transform=_image_default(transform))
    suffix = path.suffix.lower()
    if suffix in _LIST_EXTENSIONS:
        return FileListSource(
            path, transform=_image_default(transform), path_column=image_column, label_column=label_column
        )
    if suffix in TENSOR_EXTENSIONS:
        if image_column is not None:
            raise DataSourceError(f"{path.name} holds ready inputs, not images: image_column does not apply.")
        return TensorFileSource(path, label_column=label_column)
    if suffix in IMAGE_EXTENSIONS:
        raise DataSourceError(
            f"{str(path)!r} is one image; pass the folder it is in, or a .txt file list naming it."
        )
    raise DataSourceError(
        f"cannot tell what {str(path)!r} holds from its extension {suffix or '(none)'!r}: use a folder of "
        f"images, a file list ({', '.join(_LIST_EXTENSIONS)}) or a tensor file ({', '.join(TENSOR_EXTENSIONS)})."
    )


def _saved_by_datasets(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def _image_default(transform: Any) -> Any:
    return image_transform() if transform is None else transform
