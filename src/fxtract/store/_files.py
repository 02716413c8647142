"""Files of a store: names, atomic writes, and the shard files of both formats.

Every file is written under a temporary name in the same directory, fsynced, then renamed
(and the directory fsynced), so a reader sees either nothing or the whole file. A shard is
"committed" when its final name exists and its size agrees with its own header: nothing else
(no manifest) is trusted for that. numpy and safetensors only; no torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ._errors import CorruptStoreError, StoreWriteError

MANIFEST = "manifest.json"
SAMPLES = "samples.jsonl"
PARTS = "parts"
INDEX_KEY = "__index__"
SHAPES_PREFIX = "__shapes__/"  # per-row shapes of a ragged key: "__shapes__/<key>"
_SHARD_RE = re.compile(r"^shard-(\d{6,})(\.safetensors)?$")
_TMP_MARK = ".tmp-"

# safetensors header dtype codes <-> the store's dtype names
_ST_CODES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "U16": "uint16",
    "U32": "uint32",
    "U64": "uint64",
    "BOOL": "bool",
}


def storage_dtype(name: str) -> np.dtype:
    """The numpy dtype that holds a store dtype's bits (bfloat16 as uint16)."""
    return np.dtype(np.uint16) if name == "bfloat16" else np.dtype(name)


def shard_name(unit: int, fmt: str) -> str:
    """``shard-000003.safetensors`` (a file) or ``shard-000003`` (a directory of .npy files)."""
    return f"shard-{unit:06d}.safetensors" if fmt == "safetensors" else f"shard-{unit:06d}"


def shard_unit(name: str) -> Optional[int]:
    """The unit a shard name stands for, or None for any other name (temporary files included)."""
    m = _SHARD_RE.match(name)
    return int(m.group(1)) if m else None


# A temporary file of a writer on another machine is taken for a dead writer's only when it has
# not changed for this long (a live writer renames a file within seconds of its last byte).
_FOREIGN_TMP_AGE_S = 3600.0


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def tmp_name(path: Path) -> Path:
    """``NAME.tmp-HOST-PID-TOKEN``: unique even between writers on several machines sharing the
    directory, and naming its writer so another writer can tell whether it is still running."""
    return path.with_name(f"{path.name}{_TMP_MARK}{_host()}-{os.getpid()}-{secrets.token_hex(4)}")


def is_tmp(name: str) -> bool:
    return _TMP_MARK in name


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)``, fsync it, rename it to ``path``; on any failure remove ``tmp``.

    ``tmp`` may be a file or a directory (an npy shard).
    """
    tmp = tmp_name(path)
    try:
        write(tmp)
        if tmp.is_dir():
            for child in tmp.iterdir():
                _fsync_file(child)
            _fsync_dir(tmp)
        else:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise
    _fsync_dir(path.parent)


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def check_writable(root: Path) -> None:
    """Create ``root`` and prove a file can be written there, or say clearly why not."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / PARTS).mkdir(exist_ok=True)
        probe = tmp_name(root / ".probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise StoreWriteError(
            f"cannot write the store in {str(root)!r}: {e.strerror or e}. Choose a directory you can write "
            "to (--out DIR), or fix its permissions."
        ) from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # exists under another user, or cannot tell: alive
        return True
    return True


def _writer_alive(path: Path) -> bool:
    """Whether the writer that made temporary file ``path`` may still be running: on this machine,
    whether its process exists; on another, whether the file changed in the last hour."""
    parts = path.name.split(_TMP_MARK, 1)[1].rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False  # not a name a writer of this version makes
    if parts[0] == _host():
        return _pid_alive(int(parts[1]))
    try:
        return time.time() - path.lstat().st_mtime < _FOREIGN_TMP_AGE_S
    except OSError:
        return False


def clear_tmp(root: Path, keep: Callable[[str], bool] = lambda name: False) -> None:
    """Remove the temporary files killed writers left (never data). Kept: a file whose writer may
    still be running (two writers on one store must not delete each other's files half-way), and
    one ``keep(final name)`` says is another job's."""
    children = list(root.iterdir()) + (list((root / PARTS).iterdir()) if (root / PARTS).is_dir() else [])
    for child in children:
        if is_tmp(child.name) and not keep(child.name.split(_TMP_MARK, 1)[0]) and not _writer_alive(child):
            remove(child)


# ---------------------------------------------------------------------------------------------
# Shard writing. ``tensors``: name -> numpy array holding the bits, ``dtypes``: name -> store dtype.


def write_shard(
    path: Path,
    fmt: str,
    tensors: Mapping[str, np.ndarray],
    dtypes: Mapping[str, str],
    meta: Mapping[str, Any],
) -> None:
    """Write one shard atomically (raises StoreWriteError naming the shard and the cause)."""
    from safetensors import SafetensorError

    try:
        if fmt == "safetensors":
            write_atomic(path, lambda tmp: _write_safetensors(tmp, tensors, dtypes, meta))
        else:
            write_atomic(path, lambda tmp: _write_npy_dir(tmp, tensors, meta))
    except (OSError, SafetensorError) as e:
        reason = getattr(e, "strerror", None) or str(e).replace("Error while serializing: ", "")
        raise StoreWriteError(
            f"cannot write shard {path.name!r} in {str(path.parent)!r}: {reason}. The shards "
            "already committed are intact; free space (or fix the directory) and rerun the same command to "
            "resume."
        ) from None


def _write_safetensors(
    tmp: Path, tensors: Mapping[str, np.ndarray], dtypes: Mapping[str, str], meta: Mapping[str, Any]
) -> None:
    import safetensors

    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    spec_class = getattr(safetensors, "TensorSpec", None)
    flat: dict[str, Any] = {}
    for key, a in arrays.items():
        if spec_class is not None:  # safetensors >= 0.8: no copy
            flat[key] = spec_class(
                dtype=dtypes[key], shape=a.shape, data_ptr=a.ctypes.data, data_len=a.nbytes
            )
        else:  # pragma: no cover - older safetensors take the bytes
            flat[key] = {"dtype": dtypes[key], "shape": list(a.shape), "data": a.tobytes()}
    safetensors.serialize_file(flat, os.fspath(tmp), metadata={"fxtract": json.dumps(meta, sort_keys=True)})


def _write_npy_dir(tmp: Path, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    tmp.mkdir()
    for key, a in tensors.items():
        np.save(tmp / npy_file(key, meta), a, allow_pickle=False)
    (tmp / "meta.json").write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")


def npy_file(key: str, meta: Mapping[str, Any]) -> str:
    return meta["files"][key]


def npy_file_names(keys: list[str]) -> dict[str, str]:
    """A safe, unique file name for each tensor name (``layer4.0`` -> ``layer4.0.npy``)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for key in keys:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip(".") or "key"
        name, n = base, 1
        while name.lower() in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name.lower())
        out[key] = name + ".npy"
    return out


# ---------------------------------------------------------------------------------------------
# Shard reading: headers only (no data is read); a size that disagrees with the header is torn.


class ShardHeader:
    """What one committed shard holds: its tensors (name -> dtype, shape, where) and metadata."""

    def __init__(self, path: Path, fmt: str, tensors: dict[str, dict[str, Any]], meta: dict[str, Any]):
        self.path = path
        self.format = fmt
        self.tensors = tensors  # name -> {"dtype": store dtype, "shape": [...], "offset": int, "file": Path}
        self.meta = meta


def read_shard_header(path: Path, fmt: str) -> ShardHeader:
    """Parse a shard's header and check the file is whole; CorruptStoreError names a torn shard."""
    if not path.exists():
        raise CorruptStoreError(
            f"shard {path.name!r} is missing from {str(path.parent)!r}: the store is damaged. Rerun the "
            "extraction to write it again."
        )
    try:
        if fmt == "safetensors":
            return _read_safetensors_header(path)
        return _read_npy_header(path)
    except (OSError, ValueError, KeyError, struct.error) as e:
        raise CorruptStoreError(
            f"shard {path.name!r} in {str(path.parent)!r} is torn or not a shard ({e}). Delete it and rerun "
            "the extraction to write it again."
        ) from None


def _read_safetensors_header(path: Path) -> ShardHeader:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{size} bytes, shorter than a header")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise ValueError("header longer than the file")
        header = json.loads(f.read(n))
    meta = json.loads(header.pop("__metadata__", {}).get("fxtract", "{}"))
    tensors: dict[str, dict[str, Any]] = {}
    end = 0
    for name, info in header.items():
        start, stop = info["data_offsets"]
        dtype = _ST_CODES[info["dtype"]]
        shape = [int(s) for s in info["shape"]]
        if stop - start != int(np.prod(shape, dtype=np.int64)) * storage_dtype(dtype).itemsize:
            raise ValueError(f"tensor {name!r} has the wrong byte count")
        tensors[name] = {"dtype": dtype, "shape": shape, "offset": 8 + n + start, "file": path}
        end = max(end, stop)
    if size != 8 + n + end:
        raise ValueError(f"{size} bytes on disk, the header says {8 + n + end}")
    if INDEX_KEY not in tensors:
        raise ValueError(f"no {INDEX_KEY} tensor")
    return ShardHeader(path, "safetensors", tensors, meta)


def _read_npy_header(path: Path) -> ShardHeader:
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    tensors: dict[str, dict[str, Any]] = {}
    for name, file_name in meta["files"].items():
        file = path / file_name
        a = np.load(file, mmap_mode="r", allow_pickle=False)  # reads the header, maps no page yet
        if not isinstance(a, np.memmap) or a.dtype.hasobject:  # an empty array is not mapped
            offset, shape, dtype = file.stat().st_size, a.shape, a.dtype
            if a.size:
                raise ValueError(f"{file_name} is not a plain array")
        else:
            offset, shape, dtype = a.offset, a.shape, a.dtype
            if not a.flags.c_contiguous:
                raise ValueError(f"{file_name} is Fortran-ordered")
        del a
        want = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if file.stat().st_size != want:
            raise ValueError(f"{file_name}: {file.stat().st_size} bytes on disk, its header says {want}")
        tensors[name] = {"dtype": dtype.name, "shape": list(shape), "offset": offset, "file": file}
    if INDEX_KEY not in tensors:
        raise ValueError(f"no {INDEX_KEY} array")
    return ShardHeader(path, "npy", tensors, meta)


def memmap(info: Mapping[str, Any]) -> np.ndarray:
    """A read-only memory map of one tensor of a shard (in its storage dtype)."""
    dtype = storage_dtype(info["dtype"])
    shape = tuple(info["shape"])
    if int(np.prod(shape, dtype=np.int64)) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(info["file"], dtype=dtype, mode="r", offset=info["offset"], shape=shape)
