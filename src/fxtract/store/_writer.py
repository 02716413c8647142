"""The store's writer: deterministic work units, one shard per unit, committed by a background thread.

Unit ``u`` holds dataset indices ``[u*S, min((u+1)*S, N))``. A writer (of ``writers``) owns the
units ``u % writers == writer``; it is handed batches in unit order (a batch never spans two
units) and commits a unit's shard the moment every index of the unit is either a row or a
recorded skip. Compute never waits on disk: ``put`` only queues, a thread writes.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ._errors import CorruptStoreError, StoreMismatchError, StoreWriteError
from ._files import (
    INDEX_KEY,
    MANIFEST,
    PARTS,
    SAMPLES,
    SHAPES_PREFIX,
    check_writable,
    clear_tmp,
    is_tmp,
    npy_file_names,
    read_shard_header,
    remove,
    shard_name,
    shard_unit,
    write_atomic,
    write_json,
    write_shard,
)
from ._manifest import FORMAT_VERSION, describe_mismatch, existing_config, fingerprint, merge, part_name

_STOP = object()


@dataclass
class WriteBatch:
    """One computed batch: ``arrays`` key -> numpy array (rows in ``indices`` order, storage bits)."""

    indices: np.ndarray
    arrays: dict[str, np.ndarray]
    dtypes: dict[str, str]
    failed: list[dict[str, Any]] = field(default_factory=list)  # {"index", "source", "reason"}


@dataclass
class _Unit:
    start: int
    stop: int
    indices: list[np.ndarray] = field(default_factory=list)
    arrays: dict[str, list[np.ndarray]] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    seen: int = 0


def _write_samples(path: Path, samples: Iterable[tuple[int, str, Optional[int]]]) -> None:
    with open(path, "w", encoding="utf-8") as f:  # streamed: a long dataset is never one string
        for i, source, label in samples:
            f.write(json.dumps({"index": i, "source": source, "label": label}) + "\n")


def unit_range(unit: int, shard_size: int, num_samples: int) -> tuple[int, int]:
    return unit * shard_size, min((unit + 1) * shard_size, num_samples)


class StoreWriter:
    """Writes the units of one writer into a store directory.

    Args:
        root: the store directory (created).
        config: what is extracted (model, nodes, strategy, pool, dtype, amp, preprocessing,
            data, format, shard_size, num_samples); its identity fields must match an
            existing store's, unless ``overwrite``.
        versions: fxtract / torch / ... versions, recorded.
        classes: label names, recorded.
        samples: ``(index, source, label)`` of every dataset sample, for ``samples.jsonl``.
        writer, writers: this writer's number and the number of writers.
        overwrite: delete an existing store (only the store's own files) first.
        queue_size: batches queued for the thread before ``put`` blocks.
    """

    def __init__(
        self,
        root: Any,
        config: dict[str, Any],
        *,
        versions: Optional[dict[str, str]] = None,
        classes: Optional[list[str]] = None,
        samples: Optional[Iterable[tuple[int, str, Optional[int]]]] = None,
        writer: int = 0,
        writers: int = 1,
        overwrite: bool = False,
        queue_size: int = 4,
    ) -> None:
        self.root = Path(root)
        self.config = dict(config)
        self.fmt = config["format"]
        self.fingerprint = fingerprint(self.config)
        self.writer, self.writers = writer, writers
        self.num_samples, self.shard_size = config["num_samples"], config["shard_size"]
        self.num_units = (self.num_samples + self.shard_size - 1) // self.shard_size
        self._part = {
            "format_version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "config": self.config,
            "versions": versions or {},
            "classes": classes,
            "writer": writer,
            "writers": writers,
            "outputs": None,
        }
        check_writable(self.root)
        self._check_existing(overwrite)
        clear_tmp(self.root, keep=self._not_mine)
        if samples is not None and not (self.root / SAMPLES).exists():
            path = self.root / SAMPLES
            self._guard(lambda: write_atomic(path, lambda tmp: _write_samples(tmp, samples)), SAMPLES)
        self._write_part()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thread: Optional[threading.Thread] = None
        self.error: Optional[BaseException] = None
        self.committed: list[int] = []

    # -----------------------------------------------------------------------------------------
    # Opening

    def _check_existing(self, overwrite: bool) -> None:
        old = existing_config(self.root)
        if old is None:
            return
        if overwrite:
            self._clear()
            return
        if old.get("fingerprint") != self.fingerprint:
            raise StoreMismatchError(
                f"{str(self.root)!r} already holds a feature store made differently: "
                f"{describe_mismatch(old.get('config', {}), self.config)}. Use --overwrite (overwrite=True) "
                "to replace it, or choose another --out directory."
            )

    def _not_mine(self, name: str) -> bool:
        """Whether a file name is another writer's (its shard or part), or shared (manifest, samples)."""
        if self.writers == 1:
            return False
        unit = shard_unit(name)
        if unit is not None:
            return unit % self.writers != self.writer
        return name != part_name(self.writer, self.writers)

    def _clear(self) -> None:
        for path in self.root.iterdir():
            if shard_unit(path.name) is not None or path.name in (MANIFEST, SAMPLES) or is_tmp(path.name):
                remove(path)
        for path in (self.root / PARTS).iterdir():
            remove(path)

    def _guard(self, write: Any, what: str) -> None:
        try:
            write()
        except OSError as e:
            raise StoreWriteError(
                f"cannot write {what} in {str(self.root)!r}: {e.strerror or e}. The shards already committed "
                "are intact; fix the directory (or free space) and rerun the same command to resume."
            ) from None

    def _write_part(self) -> None:
        path = self.root / PARTS / part_name(self.writer, self.writers)
        self._guard(lambda: write_json(path, self._part), f"{PARTS}/{path.name}")

    def committed_units(self) -> set[int]:
        """Units whose shard file is committed (validated from its header; torn ones are removed)."""
        done = set()
        for path in self.root.iterdir():
            unit = shard_unit(path.name)
            if unit is None or path.name != shard_name(unit, self.fmt):
                continue
            try:
                header = read_shard_header(path, self.fmt)
            except CorruptStoreError as e:
                warnings.warn(f"{e} Writing it again.", stacklevel=2)
                remove(path)
                continue
            if header.meta.get("fingerprint") == self.fingerprint:
                done.add(unit)
        return done

    def pending_units(self) -> list[int]:
        """This writer's units not committed yet, in order."""
        done = self.committed_units()
        return [u for u in range(self.writer, self.num_units, self.writers) if u not in done]

    def set_outputs(self, outputs: dict[str, Any]) -> None:
        """Record the output layout (key order, structure, per-key node and pooling) once known."""
        if self._part["outputs"] != outputs:
            self._part["outputs"] = outputs
            self._write_part()

    # -----------------------------------------------------------------------------------------
    # Writing

    def start(self, units: list[int]) -> None:
        """Start the thread that commits ``units`` (in this order) as their batches arrive."""
        self._units = {u: _Unit(*unit_range(u, self.shard_size, self.num_samples)) for u in units}
        self._thread = threading.Thread(target=self._run, name="fxtract-store-writer", daemon=True)
        self._thread.start()

    def put(self, batch: WriteBatch) -> None:
        """Queue a batch; raises the thread's error (a full disk) as soon as it is known."""
        while True:
            self._raise_error()
            try:
                self._queue.put(batch, timeout=0.1)
                return
            except queue.Full:
                continue

    def _raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self.error is not None:
                continue  # drain: the main thread will raise
            try:
                self._add(item)
            except BaseException as e:
                self.error = e

    def _add(self, batch: WriteBatch) -> None:
        positions = [int(i) for i in batch.indices] + [int(f["index"]) for f in batch.failed]
        if not positions:
            return
        unit_id = positions[0] // self.shard_size
        unit = self._units[unit_id]
        if batch.indices.size:
            unit.indices.append(batch.indices.astype(np.int64))
            for key, a in batch.arrays.items():
                unit.arrays.setdefault(key, []).append(a)
            unit.dtypes.update(batch.dtypes)
        unit.skipped.extend(batch.failed)
        unit.seen += len(positions)
        if unit.seen >= unit.stop - unit.start:
            self._commit(unit_id, unit)

    def _commit(self, unit_id: int, unit: _Unit) -> None:
        tensors: dict[str, np.ndarray] = {}
        dtypes: dict[str, str] = {}
        layouts: dict[str, Any] = {}
        index = np.concatenate(unit.indices) if unit.indices else np.zeros(0, np.int64)
        tensors[INDEX_KEY], dtypes[INDEX_KEY] = index, "int64"
        for key, chunks in unit.arrays.items():
            dtype = unit.dtypes[key]
            trailing = {c.shape[1:] for c in chunks}
            if len(trailing) == 1:
                tensors[key] = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
                layouts[key] = {"dtype": dtype, "shape": list(chunks[0].shape[1:]), "ragged": False}
            else:  # the shape changed between batches: rows flattened end to end, and their shapes
                rows = [row.reshape(-1) for c in chunks for row in c]
                shapes = [row.shape for c in chunks for row in c]
                tensors[key] = np.concatenate(rows)
                tensors[SHAPES_PREFIX + key] = np.asarray(shapes, dtype=np.int64)
                dtypes[SHAPES_PREFIX + key] = "int64"
                layouts[key] = {"dtype": dtype, "shape": None, "ragged": True}
            dtypes[key] = dtype
        meta: dict[str, Any] = {
            "fingerprint": self.fingerprint,
            "unit": unit_id,
            "start": unit.start,
            "stop": unit.stop,
            "keys": layouts,
            "skipped": sorted(unit.skipped, key=lambda s: s["index"]),
        }
        if self.fmt == "npy":
            meta["files"] = npy_file_names(list(tensors))
        write_shard(self.root / shard_name(unit_id, self.fmt), self.fmt, tensors, dtypes, meta)
        del self._units[unit_id]
        self.committed.append(unit_id)

    def close(self) -> dict[str, Any]:
        """Wait for the queued batches to be committed, then merge the manifest; returns it."""
        self._stop()
        self._raise_error()
        return self._merge()

    def abort(self) -> None:
        """Stop without committing the units still open (an interrupt or an error): only whole
        shards stay. Writes what is known to the manifest, so the store shows its progress."""
        self._stop()
        with contextlib.suppress(Exception):  # the original error matters more
            self._merge()

    def _stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def _merge(self) -> dict[str, Any]:
        try:
            return merge(self.root)
        except OSError as e:
            raise StoreWriteError(
                f"cannot write {MANIFEST} in {str(self.root)!r}: {e.strerror or e}. The shards are intact; "
                "free space and rerun to finish."
            ) from None
