"""The manifest: what a store holds, rebuilt from the directory (parts + shard headers) by ``merge``.

Each writer (one process, one ``num_shards`` job, one distributed rank) writes its own part,
``parts/writer-I-of-K.json``, with the configuration it extracts under. Which units are committed
is read from the shard files themselves; ``merge`` joins the parts and the shard headers into the
one ``manifest.json``, so K writers and one writer make the same store.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from ._errors import CorruptStoreError, StoreError, StoreMismatchError
from ._files import (
    INDEX_KEY,
    MANIFEST,
    PARTS,
    SHAPES_PREFIX,
    is_tmp,
    read_shard_header,
    shard_unit,
    write_json,
)

FORMAT_VERSION = 1
# What a rerun must agree on to resume (the rest, like batch size or workers, says how, not what).
IDENTITY_FIELDS = ("model", "nodes", "strategy", "pool", "dtype", "amp", "preprocessing", "data", "format")


def fingerprint(config: dict[str, Any]) -> str:
    text = json.dumps(
        {k: config.get(k) for k in (*IDENTITY_FIELDS, "shard_size", "num_samples")}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()


def part_name(writer: int, writers: int) -> str:
    return f"writer-{writer:05d}-of-{writers:05d}.json"


def read_parts(root: Path) -> list[dict[str, Any]]:
    parts_dir = root / PARTS
    if not parts_dir.is_dir():
        return []
    out = []
    for path in sorted(parts_dir.iterdir()):
        if is_tmp(path.name) or path.suffix != ".json":
            continue
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as e:
            raise CorruptStoreError(f"part {path.name!r} of {str(root)!r} is unreadable ({e}).") from None
    return out


def read_manifest(root: Path) -> Optional[dict[str, Any]]:
    path = root / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CorruptStoreError(f"{MANIFEST} of {str(root)!r} is unreadable ({e}).") from None


def existing_config(root: Path) -> Optional[dict[str, Any]]:
    """The configuration a directory's store was made with (its manifest or any part), or None."""
    manifest = read_manifest(root)
    if manifest is not None:
        return manifest
    parts = read_parts(root)
    return parts[0] if parts else None


def describe_mismatch(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Which identity fields differ, as ``nodes ({"a": "a"} before, {"b": "b"} now); model.state_dict_sha256 (...)``."""
    diffs: list[str] = []
    for field in (*IDENTITY_FIELDS, "shard_size", "num_samples"):
        _diff(field, old.get(field), new.get(field), diffs)
    return "; ".join(diffs) or "the configuration"


def _diff(name: str, a: Any, b: Any, out: list[str]) -> None:
    if a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict) and set(a) == set(b) and len(a) > 1:
        for key in sorted(a):
            _diff(f"{name}.{key}", a[key], b[key], out)
        return
    out.append(f"{name} ({_short(a)} before, {_short(b)} now)")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def scan(root: Path) -> dict[str, Any]:
    """The manifest of the store in ``root``, from its parts and the headers of its shard files."""
    parts = read_parts(root)
    base = parts[0] if parts else read_manifest(root)
    if base is None:
        raise StoreError(
            f"{str(root)!r} is not an fxtract feature store (no {MANIFEST}, no {PARTS}/). Make one with "
            "fxtract.extract(...) or `fxtract extract`."
        )
    for part in parts[1:]:
        if part["fingerprint"] != base["fingerprint"]:
            raise StoreMismatchError(
                f"the writers of {str(root)!r} extracted with different configurations: "
                f"{describe_mismatch(base['config'], part['config'])}. Rerun with --overwrite."
            )
    config = base["config"]
    fmt = config["format"]
    headers = []
    for path in sorted(root.iterdir()):
        unit = shard_unit(path.name)
        if unit is None or (fmt == "safetensors") != path.name.endswith(".safetensors"):
            continue
        header = read_shard_header(path, fmt)
        if header.meta.get("fingerprint") != base["fingerprint"]:
            raise StoreMismatchError(
                f"shard {path.name!r} of {str(root)!r} was made with another configuration. Rerun with "
                "--overwrite to start again."
            )
        headers.append((unit, header))
    return build(base, headers, parts)


def build(
    base: dict[str, Any], headers: list[tuple[int, Any]], parts: list[dict[str, Any]]
) -> dict[str, Any]:
    config = base["config"]
    n, size = config["num_samples"], config["shard_size"]
    num_units = (n + size - 1) // size
    shards, skipped = [], []
    keys: dict[str, dict[str, Any]] = {}
    rows = 0
    for unit, header in sorted(headers, key=lambda t: t[0]):
        meta = header.meta
        count = header.tensors[INDEX_KEY]["shape"][0]
        nbytes = _shard_bytes(header)
        shards.append(
            {
                "file": header.path.name,
                "unit": unit,
                "start": meta["start"],
                "stop": meta["stop"],
                "rows": count,
                "bytes": nbytes,
            }
        )
        rows += count
        skipped.extend(meta.get("skipped", []))
        for key, layout in meta.get("keys", {}).items():
            _merge_key(keys, key, layout)
    outputs = next((p.get("outputs") for p in parts if p.get("outputs")), None) or base.get("outputs") or {}
    for key, info in keys.items():
        info.update(outputs.get("keys", {}).get(key, {}))
        if info["shape"] is not None:
            info["shape"] = [rows, *info["shape"]]
    committed = sorted(u for u, _ in headers)
    missing = sorted(set(range(num_units)) - set(committed))
    return {
        "format_version": FORMAT_VERSION,
        "format": config["format"],
        "fingerprint": base["fingerprint"],
        "config": config,
        "versions": base.get("versions", {}),
        "outputs": outputs.get("structure", {}),
        "key_order": outputs.get("order", sorted(keys)),
        "keys": keys,
        "classes": base.get("classes"),
        "num_samples": n,
        "num_units": num_units,
        "rows": rows,
        "shards": shards,
        "skipped": sorted(skipped, key=lambda s: s["index"]),
        "missing_units": missing,
        "complete": not missing,
        "writers": max([p.get("writers", 1) for p in parts] or [base.get("writers", 1)]),
    }


def _shard_bytes(header: Any) -> int:
    if header.format == "safetensors":
        return header.path.stat().st_size
    return sum(p.stat().st_size for p in header.path.iterdir())


def _merge_key(keys: dict[str, dict[str, Any]], key: str, layout: dict[str, Any]) -> None:
    shape = layout.get("shape")
    if key not in keys:
        keys[key] = {"dtype": layout["dtype"], "shape": shape, "ragged": bool(layout.get("ragged"))}
        return
    info = keys[key]
    if (
        layout.get("ragged")
        or info["ragged"]
        or shape is None
        or info["shape"] is None
        or list(shape) != list(info["shape"])
    ):
        info["ragged"], info["shape"] = True, None


def merge(root: Any) -> dict[str, Any]:
    """Join the parts and shards of a store into its one ``manifest.json`` (atomic); returns it.

    Run by every writer at its end; run it by hand after K independent ``num_shards`` jobs if
    the last one to finish was not the last to merge. Idempotent.

    Example:
        >>> import fxtract, torch, tempfile
        >>> m = torch.nn.Sequential(torch.nn.Linear(4, 3))
        >>> d = tempfile.mkdtemp()
        >>> _ = fxtract.extract(m, torch.randn(10, 4), d, nodes=["0"], progress=False)
        >>> merge(d)["complete"]
        True
    """
    root = Path(root)
    manifest = scan(root)
    write_json(root / MANIFEST, manifest)
    return manifest


__all__ = ["FORMAT_VERSION", "SHAPES_PREFIX", "fingerprint", "merge", "scan"]
