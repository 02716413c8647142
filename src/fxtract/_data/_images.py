"""Images from disk: decoding to RGB, an image folder, a ``.txt`` / ``.csv`` file list."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Optional, Union

from ._base import DataNotFoundError, DataSource, DataSourceError, fail, transformed

__all__ = ["IMAGE_EXTENSIONS", "FileListSource", "ImageFolderSource", "decode_image", "to_rgb"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
_PATH_COLUMNS = ("path", "file", "filename", "filepath", "file_path", "image", "image_path", "img")
_LABEL_COLUMNS = ("label", "labels", "class", "target", "category")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb(image: Any) -> Any:
    """An RGB copy of a PIL image, whatever its mode.

    Grayscale, palette and CMYK go through PIL's conversions; 16-bit (``I;16``, ``I``)
    is scaled to 8 bits (65535 -> 255); float (``F``) is clipped to 0..255; an alpha
    channel (``RGBA``, ``LA``, a palette with transparency) is composited on white, as
    viewers show it (dropping it would show what was under transparent pixels).

    Example:
        >>> from PIL import Image
        >>> to_rgb(Image.new("I;16", (2, 2), 65535)).getpixel((0, 0))
        (255, 255, 255)
    """
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT or mode == "F":
        import numpy as np

        values = np.asarray(image)
        if mode == "F":
            eight = np.clip(np.rint(values), 0, 255)
        else:  # 16-bit range, rounded: 65535 -> 255, 257 -> 1
            eight = (np.clip(values.astype(np.int64), 0, 65535) * 255 + 32767) // 65535
        return Image.fromarray(eight.astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def decode_image(data: Union[bytes, str, os.PathLike], where: str) -> Any:
    """Decode image bytes (or a file) fully, apply its EXIF orientation, convert it to RGB.

    Raises:
        FileNotFoundError: no such file.
        SampleError: the bytes are not a readable image (truncated, empty, another format);
            the message starts with ``cannot decode image 'where'``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not isinstance(data, bytes):
        data = Path(data).read_bytes()  # no file handle stays open, whatever PIL does
    if not data:
        raise fail("cannot decode image", where, "the file is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise fail("cannot decode image", where, "not an image format PIL can read") from None
    except Exception as e:  # a decompression bomb, a broken header
        raise fail("cannot decode image", where, e) from None
    try:
        image.load()  # decode now: a truncated file fails here, not in a transform
        return to_rgb(ImageOps.exif_transpose(image))
    except Exception as e:
        raise fail("cannot decode image", where, e) from None


class _ImageSource(DataSource):
    """Images read from files: ``_path(i)`` -> decoded RGB -> ``transform``."""

    def _path(self, i: int) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load(self, i: int) -> Any:
        return transformed(decode_image(self._path(i), self.source(i)), self.transform, self.source(i))


class ImageFolderSource(_ImageSource):
    """Every image under a folder, recursively, in sorted order; class subfolders give labels.

    ImageFolder-style: when the folder holds no image itself, only subfolders, each
    top-level subfolder with images is a class (``classes`` sorted, label = position).
    A folder with images at its top is flat: no labels. Hidden files and folders (a
    leading ``.``) and files without an image extension are ignored.
    """

    kind = "image-folder"

    def __init__(self, root: Union[str, os.PathLike], *, transform: Any = None) -> None:
        self.root = Path(root)
        self.transform = transform
        found = _scan(self.root)
        if not found:
            raise DataSourceError(
                f"no images in folder {str(root)!r} (looked recursively for files ending in "
                f"{', '.join(IMAGE_EXTENSIONS)}, any case; hidden files are ignored). "
                "Point to a folder of images, or pass a file list (.txt/.csv) or a tensor file."
            )
        self.paths = ["/".join(parts) for parts in found]
        if all(len(parts) > 1 for parts in found):
            self.classes = sorted({parts[0] for parts in found})
            position = {c: k for k, c in enumerate(self.classes)}
            self.labels: Optional[list[int]] = [position[parts[0]] for parts in found]
        else:
            self.classes, self.labels = None, None

    def __len__(self) -> int:
        return len(self.paths)

    def _path(self, i: int) -> str:
        return os.path.join(self.root, self.paths[i])

    def source(self, i: int) -> str:
        return self.paths[i]

    def label(self, i: int) -> Optional[int]:
        return None if self.labels is None else self.labels[i]

    def _spec(self) -> str:
        return str(self.root)


def _scan(root: Path) -> list[tuple[str, ...]]:
    """Relative path parts of the images under ``root``, sorted part by part (folders stay together)."""
    found = []
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(root).parts
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append((*rel, name))
    return sorted(found)


class FileListSource(_ImageSource):
    """Images listed in a ``.txt`` file (a path a line, an optional label after a tab or a space)
    or a ``.csv`` / ``.tsv`` file (a header; a path column and an optional label column).

    Relative paths resolve against the list's folder. Labels that are all integers are
    used as they are; otherwise they are names: ``classes`` is their sorted set and the
    label is the name's position. A listed file that is missing or unreadable is a bad
    sample (an ``Item`` error naming it), not an error here.
    """

    kind = "file-list"

    def __init__(
        self,
        path: Union[str, os.PathLike],
        *,
        transform: Any = None,
        path_column: Optional[str] = None,
        label_column: Optional[str] = None,
    ) -> None:
        self.path = Path(path)
        self.base = str(self.path.parent)
        self.transform = transform
        table = self.path.suffix.lower() in (".csv", ".tsv")
        if not table and (path_column is not None or label_column is not None):
            raise DataSourceError(
                f"{str(path)!r} is a .txt list (path, optional label); columns can only be chosen "
                "in a .csv/.tsv list with a header."
            )
        try:
            rows = _read_table(self.path, path_column, label_column) if table else _read_lines(self.path)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise DataSourceError(f"cannot read file list {str(path)!r}: {type(e).__name__}: {e}") from None
        if not rows:
            raise DataSourceError(f"file list {str(path)!r} lists no files (one image path a line).")
        self.paths = [p for p, _ in rows]
        self.classes, self.labels = _labels([label for _, label in rows])

    def __len__(self) -> int:
        return len(self.paths)

    def _path(self, i: int) -> str:
        return os.path.join(self.base, os.path.expanduser(self.paths[i]))

    def source(self, i: int) -> str:
        return self.paths[i]

    def label(self, i: int) -> Optional[int]:
        if self.labels is None or self.labels[i] == -1:  # -1: this line has no label
            return None
        return self.labels[i]

    def _spec(self) -> str:
        return str(self.path)


def _read_lines(path: Path) -> list[tuple[str, Optional[str]]]:
    rows: list[tuple[str, Optional[str]]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "\t" in line:
                file, _, label = line.rpartition("\t")
                rows.append((file.strip(), label.strip() or None))
                continue
            parts = line.rsplit(None, 1)
            # "my photo.jpg" is one path; "photo.jpg cat" is a path and a label.
            if len(parts) == 1 or parts[1].lower().endswith(IMAGE_EXTENSIONS):
                rows.append((line, None))
            else:
                rows.append((parts[0], parts[1]))
    return rows


def _read_table(
    path: Path, path_column: Optional[str], label_column: Optional[str]
) -> list[tuple[str, Optional[str]]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        columns = list(reader.fieldnames or [])
        file_col = _column(columns, path_column, _PATH_COLUMNS, "path", path)
        label_col = _column(columns, label_column, _LABEL_COLUMNS, "label", path, required=False)
        rows = []
        for row in reader:
            file = (row.get(file_col) or "").strip()
            if file:
                label = (row.get(label_col) or "").strip() if label_col else ""
                rows.append((file, label or None))
    return rows


def _column(
    columns: list[str],
    wanted: Optional[str],
    usual: tuple[str, ...],
    what: str,
    path: Path,
    required: bool = True,
) -> Optional[str]:
    from .._errors import did_you_mean

    if wanted is not None:
        if wanted not in columns:
            raise DataSourceError(
                f"{str(path)!r} has no column {wanted!r}.{did_you_mean(wanted, columns)} "
                f"Its columns: {', '.join(columns) or 'none (no header line)'}."
            )
        return wanted
    lower = {c.strip().lower(): c for c in columns}
    for name in usual:
        if name in lower:
            return lower[name]
    if required:
        raise DataSourceError(
            f"{str(path)!r} has no {what} column (looked for {', '.join(usual)}); its columns: "
            f"{', '.join(columns) or 'none (no header line)'}. Name it with image_column= (--image-column)."
        )
    return None


def _labels(raw: list[Optional[str]]) -> tuple[Optional[list[str]], Optional[list[int]]]:
    """``(classes, labels)`` from label texts: integers as they are, names by sorted position."""
    present = [r for r in raw if r is not None]
    if not present:
        return None, None
    try:
        ints = [None if r is None else int(r) for r in raw]
        return None, [-1 if v is None else v for v in ints]
    except ValueError:
        classes = sorted(set(present))
        position = {c: k for k, c in enumerate(classes)}
        return classes, [-1 if r is None else position[r] for r in raw]


def check_exists(path: Path, what: str = "data") -> None:
    if not path.exists():
        parent = path.parent if str(path.parent) else Path(".")
        near = ""
        if parent.is_dir():
            from .._errors import did_you_mean

            near = did_you_mean(path.name, [p.name for p in parent.iterdir()])
        raise DataNotFoundError(
            f"no such file or folder: {str(path)!r}.{near} DATA must be a folder of images, a .txt/.csv "
            "file list, a .pt/.npy/.safetensors tensor file, a folder saved by datasets.save_to_disk, "
            "'hf:PATH' or 'torchvision:NAME'."
        )
