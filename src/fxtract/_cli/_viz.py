"""``fxtract viz``: feature maps, activation statistics, embeddings and the graph, as pictures.

Thin commands over :mod:`fxtract.viz`; torch, matplotlib and pillow are imported inside them.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import click

from . import CONTEXT_SETTINGS, STRATEGY_OPTION, WEIGHTS_OPTION, _load, _parse_input_size, _user_errors

# fxtract.viz.grids.ORDERS / KINDS, repeated so that --help does not import torch.
ORDERS = ("activity", "index")
KINDS = ("auto", "channels", "tokens", "heads", "vector")


def _model_spec_options(func: Any) -> Any:
    return WEIGHTS_OPTION(STRATEGY_OPTION(func))


def _is_store(path: str) -> bool:
    return (Path(path) / "manifest.json").is_file()


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """fxtract's own warnings (the strategy used, a real forward) as ``fxtract: warning:`` lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if "fxtract" in w.filename:
            click.echo(f"fxtract: warning: {' '.join(str(w.message).split())}", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _echo_problems(lines: list[str]) -> None:
    for line in lines:
        click.echo(f"fxtract: warning: {line}", err=True)


@click.group(
    name="viz",
    context_settings=CONTEXT_SETTINGS,
    short_help="Pictures: feature maps, statistics, embeddings, the graph.",
)
def viz() -> None:
    """Draw what a model computes: feature maps, activation statistics, embeddings, the graph.

    Pictures need matplotlib and pillow: pip install 'fxtract[viz]'.

    \b
    Examples:
      fxtract viz maps torchvision:resnet18 cat.jpg --nodes 'layer1' --nodes layer4 --out maps/
      fxtract viz stats torchvision:resnet18 --nodes 'layer*' --samples 8
      fxtract viz stats features/ --json
      fxtract viz embed features/ --node layer4 --out embed.png
      fxtract viz graph torchvision:resnet18 --nodes 'layer3.*' --out graph --depth 2
    """


@viz.command(
    name="maps",
    context_settings=CONTEXT_SETTINGS,
    short_help="One PNG per node: its feature maps for an image.",
)
@click.argument("model", metavar="MODEL")
@click.argument("image", metavar="IMAGE", type=click.Path(dir_okay=False))
@click.option(
    "--nodes",
    "patterns",
    metavar="PATTERN",
    multiple=True,
    required=True,
    help="Nodes to draw: exact name, glob ('layer*.relu_1') or 're:REGEX'. Repeatable.",
)
@click.option(
    "--out", metavar="DIR", required=True, type=click.Path(file_okay=False), help="Directory for NODE.png."
)
@click.option(
    "--max-channels",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Most tiles per picture.",
)
@click.option(
    "--order",
    type=click.Choice(ORDERS),
    default="activity",
    show_default=True,
    help="activity: the most active channels first; index: the first channels.",
)
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default="auto",
    show_default=True,
    help="Force a layout (heads: one map per attention head).",
)
@click.option("--cmap", metavar="NAME", default=None, help="A matplotlib colour map.")
@click.option(
    "--image-size",
    type=click.IntRange(min=1),
    default=None,
    show_default="the model's input size",
    help="Center crop side of the preprocessed image.",
)
@_model_spec_options
def maps_command(
    model: str,
    image: str,
    patterns: tuple[str, ...],
    out: str,
    max_channels: int,
    order: str,
    kind: str,
    cmap: Optional[str],
    image_size: Optional[int],
    weights: Optional[str],
    strategy: str,
) -> None:
    """Run MODEL on IMAGE and write one PNG per chosen node to --out: channels tiled in a grid,
    token activations as a heat map, attention as one map per head, the input image beside.

    The image is resized, center-cropped and normalised as the model expects.

    \b
    Example:
      fxtract viz maps torchvision:resnet18 cat.jpg --nodes layer1 --nodes 'layer2.*.relu_1' --out maps
    """
    with _user_errors(), _warnings_as_lines():
        from .._data._images import decode_image
        from ..viz.grids import feature_maps
        from ._models import data_transform

        loaded = _load(model, weights)
        try:
            picture = decode_image(image, image)
        except FileNotFoundError:
            raise click.ClickException(f"no such image file: {image!r}.") from None
        except Exception as e:  # not an image
            raise click.ClickException(" ".join(str(e).split())) from None
        x = data_transform(loaded, image_size=image_size)(picture).unsqueeze(0)
        shown = data_transform(loaded, image_size=image_size, normalize=False)(picture)
        click.echo(f"fxtract: input {list(x.shape)} from {image}", err=True)
        pictures = feature_maps(
            loaded.model,
            x,
            nodes=list(patterns),
            image=shown,
            out=out,
            strategy=strategy,
            tracer_kwargs=loaded.tracer_kwargs,
            max_channels=max_channels,
            order=order,
            kind=kind,
            cmap=cmap,
        )
        from ..viz.grids import file_name

        for name, pic in pictures.items():
            click.echo(os.path.join(out, file_name(name) + ".png"))
            click.echo(f"fxtract: {name}: {pic.kind}, {pic.note}", err=True)


@viz.command(
    name="stats",
    context_settings=CONTEXT_SETTINGS,
    short_help="Per-node statistics; NaN, Inf, dead channels.",
)
@click.argument("source", metavar="STORE|MODEL")
@click.option(
    "--nodes",
    "patterns",
    metavar="PATTERN",
    multiple=True,
    show_default="every node (store: every key)",
    help="Nodes (model) or keys (store). Repeatable.",
)
@click.option(
    "--data",
    metavar="DATA",
    default=None,
    help="With a MODEL: the inputs (an image folder, a file list, a tensor file; see `fxtract extract`).",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="With a MODEL: how many inputs (random normal ones of --input-size without --data).",
)
@click.option(
    "--input-size",
    metavar="C,H,W",
    callback=_parse_input_size,
    default=None,
    show_default="the model's config, else 3,224,224",
    help="With a MODEL and no --data.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    show_default="8 for a model, 1024 for a store",
    help="Inputs per forward, or rows per read of a store.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@click.option(
    "--histograms",
    metavar="FILE.png",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also draw one histogram per node into this PNG.",
)
@click.option("--bins", type=click.IntRange(min=2), default=64, show_default=True, help="Histogram bins.")
@_model_spec_options
def stats_command(
    source: str,
    patterns: tuple[str, ...],
    data: Optional[str],
    samples: int,
    input_size: Optional[tuple[int, ...]],
    batch_size: Optional[int],
    as_json: bool,
    as_csv: bool,
    histograms: Optional[str],
    bins: int,
    weights: Optional[str],
    strategy: str,
) -> None:
    """Mean, std, min, max, zeros, dead channels, NaN and Inf of each node, from a feature store written
    by `fxtract extract` (streamed: bounded memory) or from MODEL run on a few inputs.

    The first node where NaN appears (in execution order) and the dead channels are reported on stderr.

    \b
    Examples:
      fxtract viz stats features/ --csv > stats.csv
      fxtract viz stats torchvision:resnet18 --nodes 'layer*' --data images/ --samples 16 --histograms h.png
    """
    if as_json and as_csv:
        raise click.ClickException("choose one of --json and --csv.")
    with _user_errors(), _warnings_as_lines():
        from ..viz.stats import activation_stats

        if _is_store(source):
            if data is not None or input_size is not None:
                raise click.ClickException("--data and --input-size go with a MODEL, not with a store.")
            from ..store import open_features

            store = open_features(source)
            report = activation_stats(
                store,
                nodes=list(patterns) or None,
                bins=bins if histograms else 0,
                batch_size=batch_size or 1024,
            )
        else:
            if Path(source).is_dir():
                raise click.ClickException(
                    f"{source!r} is a directory but not a feature store (no manifest.json); give a store "
                    "written by fxtract extract, or a MODEL (torchvision:NAME, timm:NAME, file.py:factory)."
                )
            loaded = _load(source, weights)
            batches = _inputs(loaded, data, samples, input_size, batch_size or 8)
            report = activation_stats(
                loaded.model,
                batches,
                nodes=list(patterns) or None,
                bins=bins if histograms else 0,
                strategy=strategy,
                tracer_kwargs=loaded.tracer_kwargs,
            )
        if as_json:
            click.echo(report.to_json())
        elif as_csv:
            click.echo(report.to_csv(), nl=False)
        else:
            click.echo(report.table())
        _echo_problems(report.problems())
        if histograms:
            report.histograms(out=histograms)
            click.echo(f"fxtract: histograms in {histograms}", err=True)


def _inputs(
    loaded: Any, data: Optional[str], samples: int, input_size: Optional[tuple[int, ...]], batch_size: int
) -> list[Any]:
    import torch

    if data is None:
        size = input_size or loaded.input_size
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(samples, *size, generator=generator)
        click.echo(f"fxtract: {samples} random normal inputs of shape {list(size)} (seed 0)", err=True)
        return list(x.split(batch_size))
    if input_size is not None:
        raise click.ClickException(
            "--input-size goes with random inputs; with --data the model's preprocessing decides."
        )
    from .._data import collate, open_source
    from ._models import data_transform

    dataset = open_source(data, transform=data_transform(loaded))
    count = min(samples, len(dataset))
    items = [dataset[i] for i in range(count)]
    for item in items:
        if item.error:
            click.echo(f"fxtract: warning: skipped {dataset.source(item.index)}: {item.error}", err=True)
    good = [i for i in items if not i.error]
    if not good:
        raise click.ClickException(
            f"none of the first {count} samples of {data!r} could be read.", param_hint="--data"
        )
    click.echo(f"fxtract: {len(good)} inputs from {data}", err=True)
    return [collate(good[k : k + batch_size]).inputs for k in range(0, len(good), batch_size)]


@viz.command(name="embed", context_settings=CONTEXT_SETTINGS, short_help="2-D PCA scatter of a stored node.")
@click.argument("store", metavar="STORE", type=click.Path(file_okay=False))
@click.option("--node", required=True, metavar="KEY", help="The stored node (output key) to draw.")
@click.option(
    "--out", metavar="FILE.png", required=True, type=click.Path(dir_okay=False), help="The PNG to write."
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=1024, show_default=True, help="Rows per read."
)
def embed_command(store: str, node: str, out: str, batch_size: int) -> None:
    """A 2-D PCA scatter of the pooled features of --node in STORE, coloured by label when
    the store has labels (two streamed passes: a store larger than memory works).

    \b
    Example:
      fxtract viz embed features/ --node layer4 --out embed.png
    """
    with _user_errors():
        if not _is_store(store):
            raise click.ClickException(
                f"{store!r} is not a feature store (no manifest.json); write one with "
                "fxtract extract MODEL DATA --out DIR."
            )
        from ..store import open_features
        from ..viz.embed import embedding_scatter

        pic = embedding_scatter(open_features(store), node=node, batch_size=batch_size, out=out)
        ratio = pic.extra["explained"]
        click.echo(out)
        click.echo(
            f"fxtract: {pic.note}; PC1 {100 * ratio[0]:.1f}%, PC2 {100 * ratio[1]:.1f}% of the variance",
            err=True,
        )


@viz.command(
    name="graph", context_settings=CONTEXT_SETTINGS, short_help="The graph: DOT, and SVG or an HTML page."
)
@click.argument("model", metavar="MODEL")
@click.option("--nodes", "patterns", metavar="PATTERN", multiple=True, help="Nodes to highlight. Repeatable.")
@click.option(
    "--out",
    metavar="FILE",
    required=True,
    type=click.Path(dir_okay=False),
    help="Base name: FILE.dot, and FILE.svg or FILE.html.",
)
@click.option(
    "--depth",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Modules deeper than this start collapsed.",
)
@click.option(
    "--html", "html", is_flag=True, help="Write the HTML page even when Graphviz's dot is installed."
)
@click.option(
    "--input-size",
    metavar="C,H,W",
    callback=_parse_input_size,
    default=None,
    show_default="the model's config, else 3,224,224",
    help="Input for the shapes (fake tensors).",
)
@click.option("--mode", type=click.Choice(("eval", "train")), default="eval", show_default=True)
@_model_spec_options
def graph_command(
    model: str,
    patterns: tuple[str, ...],
    out: str,
    depth: int,
    html: bool,
    input_size: Optional[tuple[int, ...]],
    mode: str,
    weights: Optional[str],
    strategy: str,
) -> None:
    """Write MODEL's graph: FILE.dot always; FILE.svg when Graphviz's dot is on PATH; otherwise
    (and with --html) FILE.html, a self-contained page (no network): the module hierarchy
    collapsed to --depth, click to expand, a search box, --nodes highlighted, shapes annotated.

    \b
    Example:
      fxtract viz graph timm:convnext_atto --nodes 'stages.2.*' --out convnext --html
    """
    with _user_errors(), _warnings_as_lines():
        from ..viz.graph import model_graph
        from ._models import example_input

        loaded = _load(model, weights)
        size = input_size or loaded.input_size
        graph = model_graph(
            loaded.model,
            example_input(size),
            nodes=list(patterns) or None,
            strategy=strategy,
            mode=mode,
            tracer_kwargs=loaded.tracer_kwargs,
        )
        if graph.note:
            click.echo(f"fxtract: warning: {graph.note}", err=True)
        for path in graph.write(out, depth=depth, html=html):
            click.echo(str(path))
        click.echo(
            f"fxtract: {len(graph):,} nodes ({graph.strategy}), {len(graph.selected)} highlighted", err=True
        )
