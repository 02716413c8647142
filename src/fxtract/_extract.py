"""``fxtract.extract``: run a model over a dataset and keep chosen activations in a store on disk.

A DataLoader (worker processes decode) feeds batches cut inside the store's work units; the
extractor computes only the requested nodes under ``torch.inference_mode``; outputs are
pooled and cast on the device, copied to the host, and handed to the store's writer thread,
which commits one shard per unit (tmp, fsync, rename). A rerun skips committed units.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from . import __version__
from ._api import create_feature_extractor
from ._distributed import with_session
from ._errors import FxtractTypeError, FxtractValueError, did_you_mean
from ._graph_module import inference_module
from .store import FORMATS, FeatureStore, merge, open_features
from .store._writer import StoreWriter, WriteBatch

__all__ = ["DTYPES", "POOLS", "SampleReadError", "extract"]

DTYPES = ("float32", "float16", "bfloat16")
POOLS = ("none", "avg", "max", "cls", "mean-tokens", "flatten")
ON_ERROR = ("fail", "skip")
# A shard of about this many bytes when shard_size is not given (the writer holds one in memory).
SHARD_BYTES = 64 * 2**20
MAX_SHARD_SIZE = 65536


class SampleReadError(FxtractValueError):
    """A sample could not be read (a corrupt image) and ``on_error="fail"``."""


# ---------------------------------------------------------------------------------------------
# Options


def _parse_pool(pool: Union[str, Sequence[str], Mapping[str, str], None]) -> tuple[str, dict[str, str]]:
    """``"avg"`` / ``"layer4=avg"`` / ``["avg", "fc=none"]`` / ``{"layer4": "avg"}`` -> (default, per name)."""
    default, per_name = "none", {}
    if pool is None:
        return default, per_name
    items: list[tuple[Optional[str], str]] = []
    if isinstance(pool, Mapping):
        items = [(str(k), str(v)) for k, v in pool.items()]
    else:
        texts = [pool] if isinstance(pool, str) else list(pool)
        for text in texts:
            for piece in str(text).split(","):
                piece = piece.strip()
                if not piece:
                    continue
                name, sep, mode = piece.rpartition("=")
                items.append((name.strip() if sep else None, mode.strip()))
    for name, mode in items:
        if mode not in POOLS:
            raise FxtractValueError(
                f"pool must be one of {', '.join(POOLS)} (or NODE=MODE); got {mode!r}.{did_you_mean(mode, POOLS)}"
            )
        if name is None:
            default = mode
        else:
            per_name[name] = mode
    return default, per_name


def _check_options(
    dtype: str,
    fmt: str,
    on_error: str,
    batch_size: int,
    num_shards: int,
    shard_index: int,
    shard_size: Any,
    *,
    num_workers: Any = 0,
    out: Any = ".",
) -> None:
    if not isinstance(out, (str, os.PathLike)):
        raise FxtractTypeError(
            f"out must be the path of the store's directory (a str or os.PathLike), got {type(out).__name__} "
            f"{out!r:.60}."
        )
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise FxtractValueError(
            f"num_workers must be 0 (load in this process) or a positive number of DataLoader worker "
            f"processes, got {num_workers!r}."
        )
    for value, allowed, what in (
        (dtype, DTYPES, "dtype"),
        (fmt, FORMATS, "format"),
        (on_error, ON_ERROR, "on_error"),
    ):
        if value not in allowed:
            raise FxtractValueError(
                f"{what} must be one of {', '.join(allowed)}; got {value!r}.{did_you_mean(str(value), allowed)}"
            )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise FxtractValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if shard_size is not None and (not isinstance(shard_size, int) or shard_size < 1):
        raise FxtractValueError(
            f"shard_size must be a positive integer (samples per shard), got {shard_size!r}."
        )
    if not isinstance(num_shards, int) or num_shards < 1 or not 0 <= shard_index < num_shards:
        raise FxtractValueError(
            f"shard_index must be in [0, num_shards); got shard_index={shard_index!r}, num_shards={num_shards!r}."
        )


def _device(device: Union[str, torch.device]) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise FxtractValueError(f"device must be cpu, cuda, cuda:N or mps; got {device!r}.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FxtractValueError("device 'cuda' was asked for, but torch sees no CUDA GPU; use --device cpu.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise FxtractValueError(
            "device 'mps' was asked for, but this torch has no MPS backend; use --device cpu."
        )
    return dev


# ---------------------------------------------------------------------------------------------
# Data


def _open_source(data: Any, transform: Any) -> Any:
    from ._data import open_source

    return open_source(data, transform=transform)


# ---------------------------------------------------------------------------------------------
# Outputs: flatten containers to sub-keys, pool, cast


def _flatten(key: str, value: Any, out: dict[str, torch.Tensor]) -> Any:
    """Tensors of a node's output under ``key``, ``key.0``, ``key.name``; returns its structure."""
    if isinstance(value, torch.Tensor):
        out[key] = value
        return {"type": "tensor", "key": key}
    if isinstance(value, (tuple, list)):
        kind = "list" if isinstance(value, list) else "tuple"
        return {"type": kind, "items": [_flatten(f"{key}.{i}", v, out) for i, v in enumerate(value)]}
    if isinstance(value, Mapping):
        return {"type": "dict", "items": {str(k): _flatten(f"{key}.{k}", v, out) for k, v in value.items()}}
    if value is None:
        return {"type": "none"}
    raise FxtractTypeError(
        f"output {key!r} is a {type(value).__name__}; the store keeps tensors (in tuples, lists and dicts). "
        "Pick a node that returns tensors."
    )


def _pool_of(key: str, node: str, default: str, per_name: Mapping[str, str]) -> tuple[str, bool]:
    """The pooling of a (sub-)key, and whether it was asked for by name (then it must fit)."""
    parent = key.split(".", 1)[0] if key not in per_name else key
    for name in (key, node, parent):
        if name in per_name:
            return per_name[name], True
    return default, False


def _pool(t: torch.Tensor, mode: str, mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """``t`` reduced per sample, or None when ``mode`` does not apply to its shape."""
    if mode == "none":
        return t
    if mode == "flatten":
        return t.flatten(1) if t.dim() >= 3 else None
    if mode in ("avg", "max"):
        if t.dim() < 3 or not t.is_floating_point():
            return None
        dims = tuple(range(2, t.dim()))
        return t.mean(dims) if mode == "avg" else t.amax(dims)
    if mode == "cls":
        return t[:, 0] if t.dim() >= 3 else None
    if t.dim() != 3 or not t.is_floating_point():  # mean-tokens: (batch, tokens, channels)
        return None
    if mask is not None and mask.dim() == 2 and mask.shape == t.shape[:2]:
        w = mask.to(t.dtype).unsqueeze(-1)
        return (t * w).sum(1) / w.sum(1).clamp_min(1)
    return t.mean(1)


def _to_numpy(t: torch.Tensor) -> tuple[np.ndarray, str]:
    """A CPU tensor's bits as numpy, and the store dtype name (bfloat16 travels as uint16)."""
    name = str(t.dtype).replace("torch.", "")
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().view(np.uint16), name
    return t.contiguous().numpy(), name


class _Outputs:
    """Turns an extractor's output dict into the arrays of a store batch (fixed at the first batch)."""

    def __init__(
        self, keys: Mapping[str, str], pool: tuple[str, dict[str, str]], dtype: str, fmt: str
    ) -> None:
        self.node_of = {key: node for node, key in keys.items()}
        self.default, self.per_name = pool
        self.dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
        if fmt == "npy" and dtype == "bfloat16":
            warnings.warn(
                "numpy has no bfloat16: the npy store keeps bfloat16 values widened to float32 (exact, twice "
                "the bytes). Use format='safetensors' to store bfloat16 natively.",
                stacklevel=3,
            )
            self.store_dtype = torch.float32
        else:
            self.store_dtype = self.dtype
        self.layout: Optional[dict[str, Any]] = None
        self.pools: dict[str, str] = {}

    def __call__(self, out: Any, mask: Optional[torch.Tensor]) -> dict[str, torch.Tensor]:
        if not isinstance(out, Mapping):
            out = {"output": out}
        flat: dict[str, torch.Tensor] = {}
        structure = {key: _flatten(str(key), value, flat) for key, value in out.items()}
        result = {}
        for key, t in flat.items():
            node = self.node_of.get(key.split(".", 1)[0], key.split(".", 1)[0])
            if self.layout is None:
                self._first(key, node, t)
            if t.dim() == 0:
                raise FxtractValueError(
                    f"output {key!r} is a scalar, not one value per sample: it cannot be stored."
                )
            pooled = _pool(t, self.pools[key], mask)
            if pooled is None:
                raise FxtractValueError(
                    f"pool {self.pools[key]!r} does not apply to output {key!r} of per-sample shape {tuple(t.shape[1:])} "
                    "(avg/max: (batch, channels, ...); cls: (batch, tokens, ...); mean-tokens: (batch, tokens, "
                    f"channels)). Use pool '{key}=none' or another mode."
                )
            if pooled.is_floating_point():
                pooled = pooled.to(self.dtype)
                if self.store_dtype != self.dtype:
                    pooled = pooled.to(self.store_dtype)
            result[key] = pooled
        if self.layout is None:
            unknown = [
                n for n in self.per_name if n not in flat and n not in out and n not in self.node_of.values()
            ]
            if unknown:
                raise FxtractValueError(
                    f"pool names {unknown[0]!r}, which is no output of the extractor."
                    f"{did_you_mean(unknown[0], [*flat, *self.node_of.values()])} Outputs: {list(flat)}."
                )
            self.layout = {
                "order": list(flat),
                "structure": structure,
                "keys": {
                    k: {
                        "node": self.node_of.get(k.split(".", 1)[0], k.split(".", 1)[0]),
                        "pool": self.pools[k],
                    }
                    for k in flat
                },
            }
        return result

    def _first(self, key: str, node: str, t: torch.Tensor) -> None:
        mode, named = _pool_of(key, node, self.default, self.per_name)
        if not named and _pool(t[:1], mode, None) is None:
            mode = "none"  # a blanket --pool avg leaves alone what it does not fit (a (batch, classes) logit)
        self.pools[key] = mode


# ---------------------------------------------------------------------------------------------
# Model


def _is_extractor(obj: Any) -> bool:
    return isinstance(obj, nn.Module) and hasattr(obj, "eval_return_nodes") and hasattr(obj, "strategy")


def _state_hash(module: nn.Module) -> str:
    """sha256 of the state dict: names, dtypes, shapes and bytes (read in place, no copy)."""
    h = hashlib.sha256()
    for name, value in module.state_dict().items():
        if not isinstance(value, torch.Tensor):
            continue
        t = value.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.view(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _example(source: Any, collate: Any) -> Any:
    """The first readable sample as a batch of one (for export / hooks, and the probe forward)."""
    for i in range(len(source)):
        item = source[i]
        if item.error is None:
            return collate([item]).inputs
    raise FxtractValueError("no sample of the data can be read: every one failed. Check the data.")


def _create(
    model: nn.Module, source: Any, collate: Any, nodes: Any, strategy: str, example: Any, tracer_kwargs: Any
) -> nn.Module:
    """``create_feature_extractor``; the first sample is the example input only where one is needed
    (export; auto once plain FX failed), as an example also makes it describe the outputs (slow)."""
    from ._errors import TraceError

    if example is None and strategy == "auto":
        try:
            return create_feature_extractor(model, nodes, strategy="fx", tracer_kwargs=tracer_kwargs)
        except TraceError:
            pass
    if example is None and strategy in ("auto", "export"):
        example = _example(source, collate)
    return create_feature_extractor(
        model, nodes, strategy=strategy, example_inputs=example, tracer_kwargs=tracer_kwargs
    )


def _call(extractor: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, Mapping):
        return extractor(**inputs)
    if isinstance(inputs, tuple):
        return extractor(*inputs)
    return extractor(inputs)


def _to_device(inputs: Any, device: torch.device) -> Any:
    """Inputs on ``device``; to CUDA from pinned memory, without waiting (the copy overlaps)."""
    if isinstance(inputs, torch.Tensor):
        if device.type != "cuda":
            return inputs.to(device)
        if not inputs.is_pinned():  # a batch type the DataLoader's pin_memory thread does not know
            inputs = inputs.pin_memory()
        return inputs.to(device, non_blocking=True)
    if isinstance(inputs, Mapping):
        return {k: _to_device(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_to_device(v, device) for v in inputs)
    return inputs


def _mask(inputs: Any) -> Optional[torch.Tensor]:
    return inputs.get("attention_mask") if isinstance(inputs, Mapping) else None


# ---------------------------------------------------------------------------------------------
# extract


def extract(
    model_or_extractor: nn.Module,
    data: Any,
    out: Union[str, os.PathLike],
    *,
    nodes: Any = None,
    strategy: str = "auto",
    example_inputs: Any = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: Union[str, torch.device] = "cpu",
    amp: bool = False,
    dtype: str = "float32",
    pool: Union[str, Sequence[str], Mapping[str, str], None] = "none",
    format: str = "safetensors",
    shard_size: Optional[int] = None,
    transform: Any = None,
    on_error: str = "fail",
    overwrite: bool = False,
    progress: Optional[bool] = None,
    model_spec: Optional[str] = None,
    num_shards: int = 1,
    shard_index: int = 0,
    tracer_kwargs: Optional[dict[str, Any]] = None,
) -> FeatureStore:
    """Run a model over a dataset and store the chosen nodes' outputs in ``out``; returns the store.

    Streaming (memory does not grow with the dataset) and resumable: rerunning the same call
    skips the shards already committed and gives a byte-identical store.

    Args:
        model_or_extractor: a model (then ``nodes`` says what to keep) or an extractor made by
            ``fxtract.create_feature_extractor`` (any strategy).
        data: an image folder, a file list, a tensor file, ``"torchvision:NAME"``, a saved
            Hugging Face dataset, or in-memory tensors / a dict of tensors / a Dataset.
        out: the store directory (created).
        nodes: names or patterns, or ``{name: key}``, as ``create_feature_extractor`` takes.
        strategy: ``"auto"``, ``"fx"``, ``"export"`` or ``"hooks"``.
        example_inputs: for export / hooks; default: the first sample.
        batch_size: samples per forward.
        num_workers: DataLoader worker processes (decoding).
        device: ``"cpu"``, ``"cuda"`` (pinned memory, non-blocking copies) or ``"mps"``.
        amp: run under ``torch.autocast``.
        dtype: storage dtype of floating outputs: float32, float16 or bfloat16.
        pool: ``none|avg|max|cls|mean-tokens|flatten`` for every node, or per node
            (``"layer4=avg"``, ``{"layer4": "avg"}``). A blanket mode leaves outputs it does
            not fit as they are; a per-node one must fit.
        format: ``"safetensors"`` (default) or ``"npy"``.
        shard_size: samples per shard (default: about 64 MiB of features, or the store's own).
        transform: per-sample preprocessing for image data.
        on_error: ``"fail"`` on an unreadable sample (naming it) or ``"skip"`` it (recorded).
        overwrite: replace a store made with another configuration.
        progress: a tqdm bar on stderr; default: when stderr is a terminal.
        model_spec: how the model is named in the manifest (the CLI passes its MODEL).
        num_shards, shard_index: split the work between independent jobs (this one does
            units ``u % num_shards == shard_index``); the last to finish merges the manifest.
        tracer_kwargs: passed to ``create_feature_extractor``.

    Raises:
        StoreMismatchError: ``out`` holds a store made differently (and not ``overwrite``).
        StoreWriteError: the directory cannot be written or the disk is full (committed
            shards stay intact).
        SampleReadError: an unreadable sample with ``on_error="fail"``.

    Example:
        >>> import torch, tempfile
        >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten())
        >>> store = extract(m, torch.randn(10, 3, 8, 8), tempfile.mkdtemp(), nodes=["1"], pool="avg",
        ...                 progress=False)
        >>> store["1"].shape, store["1"][[0, 9]].shape
        ((10, 8), (2, 8))
    """
    _check_options(
        dtype,
        format,
        on_error,
        batch_size,
        num_shards,
        shard_index,
        shard_size,
        num_workers=num_workers,
        out=out,
    )
    pools = _parse_pool(pool)
    dev = _device(device)
    source = _open_source(data, transform)
    from ._data import collate

    n = len(source)
    if n == 0:
        raise FxtractValueError(f"the data holds no samples ({source.describe().get('spec', data)!r}).")
    modules = list(model_or_extractor.modules()) if isinstance(model_or_extractor, nn.Module) else []
    training = [(m, m.training) for m in modules]
    # The extractor shares the model's parameters: moving it to the device moves them; move them back.
    where = {
        (id(m), kind, name): t.device
        for m in modules
        for kind, tensors in (("p", m._parameters), ("b", m._buffers))
        for name, t in tensors.items()
        if t is not None
    }
    try:
        return _run(
            model_or_extractor, source, collate, Path(out), nodes=nodes, strategy=strategy,
            example_inputs=example_inputs, batch_size=batch_size, num_workers=num_workers, device=dev,
            amp=amp, dtype=dtype, pools=pools, fmt=format, shard_size=shard_size, on_error=on_error,
            overwrite=overwrite, progress=progress, model_spec=model_spec, num_shards=num_shards,
            shard_index=shard_index, tracer_kwargs=tracer_kwargs,
        )  # fmt: skip
    finally:
        for m, mode in training:
            m.training = mode
        if dev.type != "cpu" or any(d.type != "cpu" for d in where.values()):
            _restore_devices(modules, where)


def _restore_devices(modules: list[nn.Module], where: dict[tuple[int, str, str], torch.device]) -> None:
    for m in modules:
        for kind, tensors in (("p", m._parameters), ("b", m._buffers)):
            for name, t in tensors.items():
                device = where.get((id(m), kind, name))
                if t is None or device is None or t.device == device:
                    continue
                if kind == "p":
                    t.data = t.data.to(device)  # the same Parameter object, as Module.to() keeps it
                else:
                    tensors[name] = t.to(device)


@with_session  # torchrun / srun / num_shards: o['run'], the device of this local rank, failure rounds
def _run(model: Any, source: Any, collate: Any, out: Path, **o: Any) -> FeatureStore:
    dev: torch.device = o["device"]
    example = o["example_inputs"]
    if _is_extractor(model):
        if o["nodes"] is not None:
            raise FxtractValueError(
                "the extractor already chose its nodes; pass nodes=... with a model, not with an extractor."
            )
        extractor = model
    elif isinstance(model, nn.Module):
        if o["nodes"] is None:
            raise FxtractValueError(
                "nodes=... is required with a model: the names or patterns create_feature_extractor takes "
                "(list them with fxtract.get_graph_node_names(model) or `fxtract nodes`)."
            )
        extractor = _create(model, source, collate, o["nodes"], o["strategy"], example, o["tracer_kwargs"])
    else:
        raise FxtractTypeError(f"model_or_extractor must be a torch.nn.Module, got {type(model).__name__}.")
    extractor.eval()
    extractor.to(dev)
    keys = dict(extractor.eval_return_nodes)
    outputs = _Outputs(keys, o["pools"], o["dtype"], o["fmt"])
    autocast = torch.autocast(dev.type, enabled=o["amp"]) if o["amp"] else _null()

    runner = inference_module(extractor)  # residual adds in place, as the eager forward does

    def forward(inputs: Any) -> dict[str, torch.Tensor]:
        with torch.inference_mode(), autocast:
            return outputs(_call(runner, inputs), _mask(inputs))

    probe = forward(_to_device(_example(source, collate) if example is None else example, dev))
    n = len(source)
    config = {
        "model": {
            "spec": o["model_spec"] or f"{type(model).__module__}.{type(model).__qualname__}",
            "class": type(model).__name__,
            "state_dict_sha256": _state_hash(model),
        },
        "nodes": keys,
        "strategy": getattr(extractor, "strategy", "unknown"),
        "pool": outputs.pools,
        "dtype": o["dtype"],
        "amp": bool(o["amp"]),
        "preprocessing": source.describe().get("transform"),
        "data": source.describe(),
        "format": o["fmt"],
        "num_samples": n,
    }
    existing = None if o["overwrite"] else _existing_shard_size(out)
    config["shard_size"] = o["shard_size"] or existing or _default_shard_size(probe, o)
    run = o["run"]

    def open_writer() -> StoreWriter:
        w = StoreWriter(
            out,
            config,
            versions={"fxtract": __version__, "torch": torch.__version__, "numpy": np.__version__},
            classes=getattr(source, "classes", None),
            samples=((i, source.source(i), source.label(i)) for i in range(n)),
            writer=run.writer,
            writers=run.writers,
            overwrite=o["overwrite"] and run.plan.is_main,
        )
        w.set_outputs(outputs.layout or {})
        return w

    writer = run.in_turn(open_writer)  # rank 0 first: only it creates (or clears) the store
    size = config["shard_size"]
    units = run.assign(writer.num_units, writer.committed_units, shard_size=size, num_samples=n)
    batches = [
        list(range(s, min(s + o["batch_size"], stop)))
        for u in units
        for start, stop in [(u * size, min((u + 1) * size, n))]
        for s in range(start, stop, o["batch_size"])
    ]
    writer.start(units)
    bar = _progress(o["progress"] if run.plan.is_main else False, run.todo, n)  # global counts
    try:
        if batches:
            loader = torch.utils.data.DataLoader(
                source,
                batch_sampler=batches,
                num_workers=o["num_workers"],
                collate_fn=collate,
                pin_memory=dev.type == "cuda",
            )
            for batch in loader:
                failed = [(int(i), str(r)) for i, r in batch.failed]
                if failed and o["on_error"] == "fail":
                    i, reason = failed[0]
                    raise SampleReadError(
                        f"sample {i} ({source.source(i)}) cannot be read: {reason}. Fix or remove it, or rerun "
                        "with --on-error skip (on_error='skip'): skipped samples are recorded in the manifest."
                    )
                arrays: dict[str, np.ndarray] = {}
                dtypes: dict[str, str] = {}
                indices = (
                    batch.indices.numpy().astype(np.int64) if len(batch.indices) else np.zeros(0, np.int64)
                )
                if indices.size:
                    for key, t in forward(_to_device(batch.inputs, dev)).items():
                        arrays[key], dtypes[key] = _to_numpy(t.cpu())
                records = [{"index": i, "source": source.source(i), "reason": r} for i, r in failed]
                writer.put(WriteBatch(indices, arrays, dtypes, records))
                others = run.batch_done(indices.size + len(failed))  # the other ranks' samples
                if bar is not None:
                    bar.update(indices.size + len(failed) + others)
        others = run.finish()  # this rank's rounds padded to the busiest rank's
        if bar is not None:
            bar.update(others)
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    writer.close()
    run.run_on_main(lambda: merge(out))  # once every rank committed its units: the last merge
    with warnings.catch_warnings():
        if o["num_shards"] > 1:
            warnings.simplefilter("ignore")  # the other jobs' shards may be still to come
        return open_features(out)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _existing_shard_size(out: Path) -> Optional[int]:
    """A store being resumed keeps its shard size (so its units stay the same)."""
    from .store._manifest import existing_config

    try:
        old = existing_config(out) if out.is_dir() else None
    except Exception:
        return None
    size = (old or {}).get("config", {}).get("shard_size")
    return int(size) if isinstance(size, int) and size > 0 else None


def _default_shard_size(probe: Mapping[str, torch.Tensor], o: Mapping[str, Any]) -> int:
    per_sample = sum(t[:1].numel() * t.element_size() for t in probe.values()) or 1
    size = max(1, min(MAX_SHARD_SIZE, SHARD_BYTES // per_sample))
    if size >= o["batch_size"]:
        size -= size % o["batch_size"]  # whole batches in a shard
    return int(size)


def _progress(progress: Optional[bool], todo: int, total: int) -> Any:
    from tqdm.auto import tqdm

    if progress is None:
        progress = sys.stderr.isatty()
    if not progress or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes"):
        return None  # tqdm reads TQDM_DISABLE when it is imported; this also sees a later setting
    # ...and the bar is on: say so, or a TQDM_DISABLE read at import time would still turn it off.
    return tqdm(
        disable=False,
        total=todo,
        desc=f"fxtract extract ({total - todo} of {total} done before)"
        if todo < total
        else "fxtract extract",
        unit="sample",
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
    )
