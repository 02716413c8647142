"""``fxtract extract`` (a dataset to a feature store) and ``fxtract info`` (what a store holds)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import click

from . import (
    CONTEXT_SETTINGS,
    STRATEGY_OPTION,
    WEIGHTS_OPTION,
    _BadParameter,
    _count,
    _load,
    _table,
    _user_errors,
)

# fxtract._extract.DTYPES / POOLS and fxtract.store.FORMATS, repeated so that --help does not import torch.
DTYPES = ("float32", "float16", "bfloat16")
POOLS = ("none", "avg", "max", "cls", "mean-tokens", "flatten")
FORMATS = ("safetensors", "npy")


def _default_workers() -> int:
    return max(0, min(4, (os.cpu_count() or 1) - 1))


@click.command(
    name="extract", context_settings=CONTEXT_SETTINGS, short_help="Extract a dataset's features to disk."
)
@click.argument("model", metavar="MODEL")
@click.argument("data", metavar="DATA")
@click.option(
    "--nodes",
    "patterns",
    metavar="PATTERN",
    multiple=True,
    required=True,
    help="Nodes to keep: exact name, glob ('layer*') or 're:REGEX', as `fxtract nodes` lists. Repeatable.",
)
@click.option(
    "--out", "out", metavar="DIR", required=True, type=click.Path(file_okay=False), help="Store directory."
)
@WEIGHTS_OPTION
@STRATEGY_OPTION
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--num-workers",
    type=click.IntRange(min=0),
    default=None,
    show_default="min(4, CPUs - 1)",
    help="DataLoader worker processes decoding the data.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or mps.")
@click.option("--amp", is_flag=True, help="Run the model under torch.autocast (mixed precision).")
@click.option(
    "--dtype",
    type=click.Choice(DTYPES),
    default="float32",
    show_default=True,
    help="Storage dtype of floating outputs (bfloat16 is native in safetensors; npy widens it to float32).",
)
@click.option(
    "--pool",
    "pools",
    metavar="MODE|NODE=MODE",
    multiple=True,
    help=f"Per-sample reduction: {'|'.join(POOLS)}; for every node ('avg') or one ('layer4=avg'). Repeatable. "
    "[default: none]",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="safetensors", show_default=True)
@click.option(
    "--shard-size",
    type=click.IntRange(min=1),
    default=None,
    show_default="about 64 MiB of features",
    help="Samples per shard (the unit of resume).",
)
@click.option(
    "--on-error",
    type=click.Choice(("fail", "skip")),
    default="fail",
    show_default=True,
    help="An unreadable sample: stop naming it, or skip it (recorded in the manifest).",
)
@click.option("--overwrite", is_flag=True, help="Replace a store made with another configuration.")
@click.option("--image-size", type=click.IntRange(min=1), default=None, help="Center-crop size for images.")
@click.option(
    "--resize", type=click.IntRange(min=1), default=None, help="Resize images' short side to this first."
)
@click.option("--no-normalize", is_flag=True, help="Do not normalise images (mean / std).")
@click.option("--root", metavar="DIR", default=None, help="Root of a torchvision:NAME dataset.")
@click.option("--download", is_flag=True, help="Let a torchvision:NAME dataset download itself.")
@click.option("--image-column", default=None, help="Image column of a Hugging Face dataset.")
@click.option("--label-column", default=None, help="Label column of a Hugging Face dataset or a CSV list.")
@click.option(
    "--num-shards",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Split the work between this many independent jobs ...",
)
@click.option(
    "--shard-index",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="... and do this one's part (0-based).",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    show_default="when stderr is a terminal",
    help="A progress bar on stderr (TQDM_DISABLE=1 also turns it off).",
)
def extract_command(model: str, data: str, patterns: tuple[str, ...], out: str, **o: Any) -> None:
    """Run MODEL over DATA and store the outputs of --nodes in --out DIR.

    DATA is an image folder (class subfolders give labels), a .txt/.csv list of image paths, a
    tensor file (.pt/.npy/.safetensors), torchvision:NAME (with --root) or a saved Hugging Face
    dataset. Rerunning the same command resumes: committed shards are skipped (random weights
    are seeded, so they are the same on every run).

    \b
    Examples:
      fxtract extract torchvision:resnet18 photos/ --nodes layer3 --nodes layer4 --pool avg --out feats/
      fxtract extract timm:vit_small_patch16_224 photos/ --nodes 'blocks.11' --pool cls --out vit/
      fxtract info feats/
    """
    import torch

    with _user_errors():
        torch.manual_seed(0)  # random weights (no --weights) are the same on every run, so a rerun resumes
        loaded = _load(model, o["weights"])
        source = _source(loaded, data, o)
        from .._extract import extract

        try:
            store = extract(
                loaded.model, source, out, nodes=list(patterns), strategy=o["strategy"],
                batch_size=o["batch_size"],
                num_workers=_default_workers() if o["num_workers"] is None else o["num_workers"],
                device=o["device"], amp=o["amp"], dtype=o["dtype"], pool=list(o["pools"]) or "none",
                format=o["fmt"], shard_size=o["shard_size"], on_error=o["on_error"], overwrite=o["overwrite"],
                progress=o["progress"], model_spec=loaded.spec, num_shards=o["num_shards"],
                shard_index=o["shard_index"], tracer_kwargs=loaded.tracer_kwargs,
            )  # fmt: skip
        except KeyboardInterrupt:
            _interrupted(out)
            raise SystemExit(130) from None
    _summary(store)


def _source(loaded: Any, data: str, o: dict[str, Any]) -> Any:
    if o["shard_index"] >= o["num_shards"]:
        raise _BadParameter(f"--shard-index must be below --num-shards ({o['num_shards']}).")
    from .._data import open_source

    transform = None
    try:
        from ._models import data_transform
    except ImportError:  # pragma: no cover - the data tier without its CLI half
        data_transform = None
    if data_transform is not None:
        transform = data_transform(
            loaded, image_size=o["image_size"], resize=o["resize"], normalize=not o["no_normalize"]
        )
    return open_source(
        data,
        transform=transform,
        root=o["root"],
        image_column=o["image_column"],
        label_column=o["label_column"],
        download=o["download"],
    )


def _interrupted(out: str) -> None:
    from ..store._manifest import scan

    try:
        manifest = scan(Path(out))
        done = f"{len(manifest['shards'])} of {manifest['num_units']} shards committed"
    except Exception:
        done = "the committed shards are intact"
    click.echo(f"fxtract: interrupted: {done} in {out}; rerun the same command to resume.", err=True)


def _summary(store: Any) -> None:
    m = store.manifest
    state = (
        "complete"
        if store.complete
        else f"{len(m['shards'])} of {m['num_units']} shards (other jobs to come)"
    )
    click.echo(f"fxtract: {len(store)} samples -> {store.path} ({state})", err=True)
    if store.skipped:
        click.echo(
            f"fxtract: skipped {len(store.skipped)} unreadable samples (listed by `fxtract info`)", err=True
        )
    click.echo(f"fxtract: open it with: fxtract.open_features({str(store.path)!r})", err=True)


# ---------------------------------------------------------------------------------------------
# info


@click.command(name="info", context_settings=CONTEXT_SETTINGS, short_help="What a feature store holds.")
@click.argument("path", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def info_command(path: str, as_json: bool) -> None:
    """Print what the feature store in DIR holds: model, nodes, keys (shape, dtype), count, completeness.

    \b
    Example:
      fxtract info feats/
    """
    import warnings

    from ..store import open_features

    with _user_errors(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an incomplete store is reported below, not warned about
        store = open_features(path)
    m = store.manifest
    if as_json:
        click.echo(json.dumps(m, indent=2, sort_keys=True))
        return
    config = m["config"]
    total_bytes = sum(s["bytes"] for s in m["shards"])
    state = "complete" if store.complete else f"INCOMPLETE: {len(m['missing_units'])} shards missing"
    lines = [
        f"store:     {store.path} ({m['format']}, format version {m['format_version']})",
        f"model:     {config['model']['spec']} (state dict sha256 {config['model']['state_dict_sha256'][:12]})",
        f"strategy:  {config['strategy']}; dtype {config['dtype']}{', amp' if config['amp'] else ''}",
        f"data:      {_data_line(config['data'])}",
        f"samples:   {len(store)} rows of {m['num_samples']}; {len(store.skipped)} skipped",
        f"shards:    {len(m['shards'])} of {m['num_units']} ({config['shard_size']} samples each), "
        f"{_size(total_bytes)}; {state}",
    ]
    if store.classes:
        lines.append(
            f"classes:   {len(store.classes)}: {', '.join(store.classes[:8])}{', ...' if len(store.classes) > 8 else ''}"
        )
    click.echo("\n".join(lines))
    rows = []
    keys = store.keys()
    for key in keys:
        info = m["keys"][key]
        shape = "ragged" if info["ragged"] else "[" + ", ".join(str(s) for s in info["shape"]) + "]"
        rows.append([key, info.get("node", key), shape, info["dtype"], info.get("pool", "none")])
    click.echo("")
    click.echo(_table(rows, ["key", "node", "shape", "dtype", "pool"]))
    for s in store.skipped[:20]:
        click.echo(f"skipped {s['index']} ({s['source']}): {s['reason']}")
    if len(store.skipped) > 20:
        click.echo(f"... and {len(store.skipped) - 20} more (fxtract info --json)")


def _data_line(data: Optional[dict[str, Any]]) -> str:
    if not data:
        return "-"
    spec = data.get("spec", "")
    return f"{data.get('kind', '?')} {spec} ({_count(int(data.get('count', 0)))} samples)".replace("  ", " ")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
