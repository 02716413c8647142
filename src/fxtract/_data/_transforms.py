"""Preprocessing: the default image transform and a description of any transform for the manifest."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Optional, Union

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ImageTransform", "describe_transform", "image_transform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Size = Union[int, Sequence[int], None]


class ImageTransform:
    """Resize the shorter side, center-crop, scale to [0, 1] floats, normalize (see :func:`image_transform`).

    Takes a PIL image or a uint8 / float ``(C, H, W)`` tensor; returns a float32 ``(C, H, W)`` tensor.
    Picklable, and described exactly in a store's manifest.
    """

    def __init__(
        self,
        *,
        image_size: Size = 224,
        resize: Size = 256,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        normalize: bool = True,
        interpolation: Any = "bilinear",
    ) -> None:
        from torchvision.transforms import InterpolationMode

        from ._base import DataSourceError

        for name, value in (("image_size", image_size), ("resize", resize)):
            sizes = [value] if isinstance(value, int) else list(value or [])
            if value is not None and (
                not sizes or len(sizes) > 2 or not all(isinstance(s, int) and s > 0 for s in sizes)
            ):
                raise DataSourceError(
                    f"{name} must be a positive int, (height, width) or None; got {value!r}."
                )
        try:
            interpolation = InterpolationMode(interpolation).value
        except ValueError:
            modes = [m.value for m in InterpolationMode]
            raise DataSourceError(
                f"unknown interpolation {interpolation!r}; use one of {', '.join(modes)}."
            ) from None
        self.image_size = (
            image_size if isinstance(image_size, int) or image_size is None else tuple(image_size)
        )
        self.resize = resize if isinstance(resize, int) or resize is None else tuple(resize)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.normalize = bool(normalize)
        self.interpolation = interpolation
        self._pipeline: Any = None

    def _build(self) -> Any:
        import torch
        from torchvision.transforms import InterpolationMode, v2

        steps: list[Any] = [v2.ToImage()]
        if self.resize is not None:
            steps.append(
                v2.Resize(self.resize, interpolation=InterpolationMode(self.interpolation), antialias=True)
            )
        if self.image_size is not None:
            steps.append(v2.CenterCrop(self.image_size))
        steps.append(v2.ToDtype(torch.float32, scale=True))
        if self.normalize:
            steps.append(v2.Normalize(self.mean, self.std))
        steps.append(v2.ToPureTensor())
        return v2.Compose(steps)

    def __call__(self, image: Any) -> Any:
        if self._pipeline is None:
            self._pipeline = self._build()
        return self._pipeline(image)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pipeline": None}

    def describe(self) -> dict[str, Any]:
        return {
            "type": "fxtract.image_transform",
            "resize": self.resize
            if isinstance(self.resize, int)
            else _listed(self.resize),  # int: shorter side
            "crop": _listed(self.image_size),
            "interpolation": self.interpolation,
            "mean": list(self.mean) if self.normalize else None,
            "std": list(self.std) if self.normalize else None,
        }

    def __repr__(self) -> str:
        d = self.describe()
        return (
            f"image_transform(image_size={self.image_size!r}, resize={self.resize!r}, "
            f"normalize={self.normalize}, interpolation={d['interpolation']!r})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageTransform) and self.describe() == other.describe()

    __hash__ = None  # type: ignore[assignment]


def image_transform(
    *,
    image_size: Size = 224,
    resize: Size = 256,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    normalize: bool = True,
    interpolation: str = "bilinear",
) -> ImageTransform:
    """The default preprocessing of images: resize 256, center-crop 224, ImageNet mean/std.

    The RGB conversion (grayscale, RGBA, CMYK, 16-bit) happens before, when the image is read.

    Args:
        image_size: the center crop, an int (square) or ``(height, width)``; ``None``: no crop.
        resize: the shorter side is resized to this first (an int), or to ``(height, width)``;
            ``None``: no resize.
        mean: per-channel mean subtracted after scaling to [0, 1].
        std: per-channel std divided by.
        normalize: ``False`` keeps the [0, 1] values.
        interpolation: a ``torchvision.transforms.InterpolationMode`` value.

    Example:
        >>> from PIL import Image
        >>> t = image_transform(image_size=32, resize=36)
        >>> t(Image.new("RGB", (50, 40))).shape
        torch.Size([3, 32, 32])
    """
    return ImageTransform(
        image_size=image_size,
        resize=resize,
        mean=mean,
        std=std,
        normalize=normalize,
        interpolation=interpolation,
    )


def describe_transform(transform: Any) -> Union[dict[str, Any], str, None]:
    """A JSON-able, deterministic description of a transform (for a store's manifest).

    :func:`image_transform` and torchvision's weights presets give their parameters; a
    ``Compose`` (torchvision v1/v2, timm) lists its steps; anything else gives its
    ``repr`` without memory addresses. ``None`` stays ``None``.

    Example:
        >>> describe_transform(image_transform(image_size=32, resize=36, normalize=False))["crop"]
        [32, 32]
    """
    if transform is None:
        return None
    describe = getattr(transform, "describe", None)
    if isinstance(transform, ImageTransform) and callable(describe):
        return describe()
    kind = f"{type(transform).__module__}.{type(transform).__qualname__}"
    if hasattr(transform, "crop_size") and hasattr(transform, "mean") and hasattr(transform, "std"):
        # torchvision's weights presets (ImageClassification and friends)
        out: dict[str, Any] = {"type": kind}
        for attr in ("resize_size", "crop_size", "mean", "std", "interpolation", "antialias"):
            if hasattr(transform, attr):
                out[attr] = _plain(getattr(transform, attr))
        return out
    steps = getattr(transform, "transforms", None)
    if isinstance(steps, (list, tuple)):
        return {"type": kind, "transforms": [describe_transform(t) for t in steps]}
    return _clean_repr(transform)


def _clean_repr(value: Any) -> str:
    return re.sub(r" at 0x[0-9a-fA-F]+", "", " ".join(repr(value).split()))


def _listed(size: Size) -> Optional[list[int]]:
    if size is None:
        return None
    return [size, size] if isinstance(size, int) else list(size)


def _plain(value: Any) -> Any:
    """InterpolationMode -> its value, tuples -> lists, numbers as they are."""
    if hasattr(value, "value") and not isinstance(value, (int, float, str)):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return _clean_repr(value)
