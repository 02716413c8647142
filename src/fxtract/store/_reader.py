"""Reading a store: lazy, memory-mapped arrays that span shards, rows in dataset-index order."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .._errors import FxtractTypeError, did_you_mean
from ._errors import CorruptStoreError, StoreError
from ._files import INDEX_KEY, SAMPLES, SHAPES_PREFIX, ShardHeader, memmap, read_shard_header
from ._manifest import FORMAT_VERSION, read_manifest, scan

Index = Union[int, slice, list, np.ndarray]


def _to_numpy(bits: np.ndarray, dtype: str) -> np.ndarray:
    """Storage bits (a memory-mapped view) -> an array of its own: bfloat16 widens exactly to float32."""
    if dtype != "bfloat16":
        return np.array(bits)  # a copy: writable, and it outlives the map
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


class FeatureStore:
    """A feature store on disk, opened lazily (only headers are read until you index).

    Attributes:
        path: the directory.
        manifest: the parsed ``manifest.json`` (or the manifest rebuilt from the directory
            when an extraction stopped before writing it).
        format: ``"safetensors"`` or ``"npy"``.
        complete: every unit of the dataset is committed.
        skipped: ``{"index", "source", "reason"}`` of each sample skipped with on_error="skip".
    """

    def __init__(self, path: Any) -> None:
        self.path = Path(path)
        manifest = read_manifest(self.path)
        if manifest is None or not manifest.get("complete"):
            rebuilt = scan(self.path)  # what the directory holds now (an interrupted or resumed run)
            if manifest is not None and set(s["file"] for s in manifest["shards"]) - {
                s["file"] for s in rebuilt["shards"]
            }:
                self._missing(manifest, rebuilt)
            manifest = rebuilt
        if manifest.get("format_version", 0) > FORMAT_VERSION:
            raise StoreError(
                f"{str(self.path)!r} has store format version {manifest['format_version']}; this fxtract reads "
                f"up to {FORMAT_VERSION}. Upgrade fxtract."
            )
        self.manifest = manifest
        self.format: str = manifest["format"]
        self.complete: bool = bool(manifest["complete"])
        self.skipped: list[dict[str, Any]] = list(manifest.get("skipped", []))
        self.classes: Optional[list[str]] = manifest.get("classes")
        self._headers: list[ShardHeader] = []
        for shard in manifest["shards"]:
            header = read_shard_header(self.path / shard["file"], self.format)
            rows = header.tensors[INDEX_KEY]["shape"][0]
            if rows != shard["rows"]:
                raise CorruptStoreError(
                    f"shard {shard['file']!r} of {str(self.path)!r} holds {rows} rows, the manifest says "
                    f"{shard['rows']}: it was replaced. Rerun the extraction with --overwrite."
                )
            self._headers.append(header)
        counts = [h.tensors[INDEX_KEY]["shape"][0] for h in self._headers]
        self._starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
        self._indices: Optional[np.ndarray] = None
        self._samples: Optional[dict[int, dict[str, Any]]] = None
        self._arrays: dict[str, FeatureArray] = {}
        if not self.complete:
            missing = manifest.get("missing_units", [])
            warnings.warn(
                f"the store in {str(self.path)!r} is incomplete: {len(missing)} of {manifest['num_units']} "
                "shards are not written yet. Rerun the same extraction to finish it.",
                stacklevel=3,
            )

    def _missing(self, manifest: dict[str, Any], rebuilt: dict[str, Any]) -> None:
        gone = sorted({s["file"] for s in manifest["shards"]} - {s["file"] for s in rebuilt["shards"]})
        raise CorruptStoreError(
            f"shard {gone[0]!r} is missing from {str(self.path)!r}"
            + (f" (and {len(gone) - 1} more)" if len(gone) > 1 else "")
            + ": the store is damaged. Rerun the extraction to write it again."
        )

    def keys(self) -> list[str]:
        """The stored output keys, in the extractor's order (sub-keys ``key.0`` for tuples)."""
        order = [k for k in self.manifest.get("key_order", []) if k in self.manifest["keys"]]
        return order + sorted(set(self.manifest["keys"]) - set(order))

    def __getitem__(self, key: str) -> FeatureArray:
        if key not in self.manifest["keys"]:
            structure = self.manifest.get("outputs", {})
            children = [k for k in self.keys() if k.startswith(key + ".")]
            if key in structure and children:
                raise KeyError(
                    f"{key!r} returned a {structure[key].get('type', 'container')}; it is stored as the "
                    f"sub-keys {', '.join(map(repr, children))}: read one of those."
                )
            raise KeyError(
                f"the store has no key {key!r}.{did_you_mean(key, self.keys())} Keys: {self.keys()}"
            )
        if key not in self._arrays:
            self._arrays[key] = FeatureArray(self, key)
        return self._arrays[key]

    def __contains__(self, key: object) -> bool:
        return key in self.manifest["keys"]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def indices(self) -> np.ndarray:
        """The dataset index of each row, in read (dataset-index) order."""
        if self._indices is None:
            parts = [np.asarray(memmap(h.tensors[INDEX_KEY])) for h in self._headers]
            self._indices = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        return self._indices

    def _sample_rows(self) -> dict[int, dict[str, Any]]:
        if self._samples is None:
            path = self.path / SAMPLES
            if not path.exists():
                raise StoreError(
                    f"{str(self.path)!r} has no {SAMPLES}: labels and sources were not recorded."
                )
            with open(path, encoding="utf-8") as f:
                self._samples = {row["index"]: row for row in map(json.loads, f)}
        return self._samples

    @property
    def labels(self) -> Optional[np.ndarray]:
        """int64 label of each row (-1 where unknown), or None when the data had no labels."""
        rows = self._sample_rows()
        labels = [rows[int(i)].get("label") for i in self.indices]
        if all(lab is None for lab in labels) and all(r.get("label") is None for r in rows.values()):
            return None
        return np.asarray([-1 if lab is None else lab for lab in labels], dtype=np.int64)

    @property
    def sources(self) -> list[str]:
        """Where each row came from (``cats/001.jpg``, ``tensors[12]``)."""
        rows = self._sample_rows()
        return [rows[int(i)]["source"] for i in self.indices]

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        return f"FeatureStore({str(self.path)!r}, {len(self)} rows, keys={self.keys()}, {state})"


class FeatureArray:
    """One key of a store: a lazy array over all shards (memory-mapped; only what is read loads).

    Index it like a numpy array along rows (int, slice, int list / array, bool mask); a ragged
    key (per-sample shapes differ) gives a list of arrays for anything but an int.

    Attributes:
        shape: ``(rows, ...)``; ``(rows,)`` followed by nothing for a ragged key.
        dtype: the numpy dtype you get (float32 for a key stored as bfloat16).
        stored_dtype: the dtype on disk (``"bfloat16"``, ``"float16"``, ...).
        ragged: rows have different shapes.
    """

    def __init__(self, store: FeatureStore, key: str) -> None:
        self._store = store
        self.key = key
        info = store.manifest["keys"][key]
        self.stored_dtype: str = info["dtype"]
        self.dtype = np.dtype(np.float32) if self.stored_dtype == "bfloat16" else np.dtype(self.stored_dtype)
        self.ragged: bool = bool(info["ragged"])
        self.shape: tuple[int, ...] = (len(store),) if self.ragged else (len(store), *info["shape"][1:])
        self._maps: dict[int, Any] = {}

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return sum(memmap(h.tensors[self.key]).nbytes for h in self._store._headers if self.key in h.tensors)

    def __repr__(self) -> str:
        shape = f"{self.shape[0]} ragged rows" if self.ragged else str(self.shape)
        return f"FeatureArray({self.key!r}, {shape}, {self.stored_dtype})"

    def _shard(self, s: int) -> Any:
        if s not in self._maps:
            header = self._store._headers[s]
            rows = header.tensors[INDEX_KEY]["shape"][0]
            if self.key not in header.tensors:  # a shard whose every sample was skipped
                self._maps[s] = np.zeros((0, *self.shape[1:]), self.dtype)
            elif SHAPES_PREFIX + self.key in header.tensors:
                shapes = np.asarray(memmap(header.tensors[SHAPES_PREFIX + self.key]))
                sizes = np.prod(shapes, axis=1, dtype=np.int64) if shapes.size else np.zeros(rows, np.int64)
                offsets = np.concatenate([[0], np.cumsum(sizes)])
                self._maps[s] = (memmap(header.tensors[self.key]), shapes, offsets)
            else:
                self._maps[s] = memmap(header.tensors[self.key])
        return self._maps[s]

    def _rows(self, s: int, local: Any) -> Any:
        """Rows ``local`` (a slice or sorted int array) of shard ``s``."""
        m = self._shard(s)
        if not isinstance(m, tuple):
            if self.ragged:
                return [_to_numpy(m[i], self.stored_dtype) for i in np.arange(len(m))[local]]
            return _to_numpy(m[local], self.stored_dtype)
        flat, shapes, offsets = m
        picked = np.arange(len(shapes))[local]
        return [
            _to_numpy(flat[offsets[i] : offsets[i + 1]].reshape(shapes[i]), self.stored_dtype) for i in picked
        ]

    def _positions(self, idx: Any) -> np.ndarray:
        n = len(self)
        if isinstance(idx, slice):
            return np.arange(n, dtype=np.int64)[idx]
        a = np.asarray(idx)
        if a.size == 0 and a.ndim == 1:
            return np.zeros(0, np.int64)
        if a.dtype == bool:
            if a.shape != (n,):
                raise IndexError(f"a boolean mask must have shape ({n},), got {a.shape}.")
            return np.flatnonzero(a)
        if a.dtype.kind not in "iu" or a.ndim != 1:
            raise FxtractTypeError(
                f"index {self.key!r} with an int, a slice, a 1-d int array or list, or a boolean mask; got "
                f"{type(idx).__name__}{'' if a.ndim == 1 else f' of {a.ndim} dims'}."
            )
        a = a.astype(np.int64)
        if a.size and (a.min() < -n or a.max() >= n):
            raise IndexError(f"row index out of range for {self.key!r} with {n} rows.")
        return np.where(a < 0, a + n, a)

    def __getitem__(self, idx: Index) -> Any:
        if isinstance(idx, tuple):
            rows = self[idx[0]]
            return rows[(slice(None), *idx[1:])] if not self.ragged else [r[idx[1:]] for r in rows]
        if isinstance(idx, (int, np.integer)):
            n = len(self)
            i = int(idx) + n if idx < 0 else int(idx)
            if not 0 <= i < n:
                raise IndexError(f"row {int(idx)} out of range for {self.key!r} with {n} rows.")
            return self._gather(np.array([i], np.int64))[0]
        pos = self._positions(idx)
        return self._gather(pos)

    def _gather(self, pos: np.ndarray) -> Any:
        starts = self._store._starts
        shard_of = np.searchsorted(starts, pos, side="right") - 1
        if self.ragged:
            rows: list[Any] = [None] * pos.size
            for s in np.unique(shard_of):
                sel = np.flatnonzero(shard_of == s)
                for j, row in zip(sel, self._rows(int(s), pos[sel] - starts[s])):
                    rows[j] = row
            return rows
        out = np.empty((pos.size, *self.shape[1:]), self.dtype)
        if pos.size and pos[-1] - pos[0] == pos.size - 1 and np.all(np.diff(pos) == 1):  # one run
            for s in range(int(shard_of[0]), int(shard_of[-1]) + 1):
                lo, hi = max(int(pos[0]), int(starts[s])), min(int(pos[-1]) + 1, int(starts[s + 1]))
                if hi > lo:
                    out[lo - pos[0] : hi - pos[0]] = self._bits(s, slice(lo - starts[s], hi - starts[s]))
            return out
        for s in np.unique(shard_of):  # one fancy read per shard, straight into place
            sel = np.flatnonzero(shard_of == s)
            out[sel] = self._bits(int(s), pos[sel] - starts[s])
        return out

    def _bits(self, s: int, local: Any) -> np.ndarray:
        """Rows ``local`` of a regular shard, as values (bfloat16 widened)."""
        m = self._shard(s)
        if self.stored_dtype == "bfloat16":
            return _to_numpy(m[local], "bfloat16")
        return m[local]

    def numpy(self) -> Any:
        """All rows in memory: one array (a list of arrays for a ragged key)."""
        return self[:]

    def torch(self) -> Any:
        """All rows as a torch tensor (bfloat16 stays bfloat16); a list of tensors if ragged."""
        import torch

        def tensor(a: np.ndarray) -> Any:
            t = torch.from_numpy(np.array(a))  # a copy: writable, off the memory map
            return t.to(torch.bfloat16) if self.stored_dtype == "bfloat16" else t  # exact: bf16 values

        data = self.numpy()
        return [tensor(d) for d in data] if self.ragged else tensor(data)

    def iter_batches(self, batch_size: int = 1024) -> Iterator[Any]:
        """Consecutive rows, ``batch_size`` at a time (memory stays bounded)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        for start in range(0, len(self), batch_size):
            yield self[start : start + batch_size]

    def __iter__(self) -> Iterator[Any]:
        for batch in self.iter_batches():
            yield from batch


def open_features(path: Any) -> FeatureStore:
    """Open a feature store written by ``fxtract.extract`` / ``fxtract extract``.

    Raises:
        CorruptStoreError: a shard is missing or torn (the message names it).
        StoreError: the directory is not a store.

    Example:
        >>> import fxtract, torch, tempfile
        >>> m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
        >>> d = tempfile.mkdtemp()
        >>> _ = fxtract.extract(m, torch.randn(10, 4), d, nodes=["0"], progress=False)
        >>> store = open_features(d)
        >>> store.keys(), store["0"].shape, store["0"][2:5].shape
        (['0'], (10, 3), (3, 3))
    """
    if not isinstance(path, (str, os.PathLike)):
        raise FxtractTypeError(
            f"open_features takes the path of a store's directory (a str or os.PathLike), got "
            f"{type(path).__name__} {path!r:.60}."
        )
    p = Path(path)
    if not p.is_dir():
        raise StoreError(f"no feature store at {str(path)!r}: not a directory.")
    return FeatureStore(p)
