"""The ``fxtract`` command line: list and describe the nodes of a model.

A thin layer over the public API. torch is imported only inside command bodies,
so ``fxtract --help`` answers at once. Data goes to stdout, information to stderr;
a user mistake is one ``Error: ...`` line and exit status 1, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Optional

import click

from .. import __version__
from .._errors import FxtractError, StrategyError
from .._options import DESCRIBE_MODES as MODES
from .._options import STRATEGIES

if TYPE_CHECKING:  # pragma: no cover
    from .._info import NodeInfo
    from ._models import LoadedModel

__all__ = ["main"]

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn fxtract's errors (user mistakes) into click's one-line ``Error: ...``."""
    try:
        yield
    except FxtractError as e:
        raise click.ClickException(_for_the_cli(" ".join(str(e).split()))) from None


def _for_the_cli(message: str) -> str:
    """The API's advice in the CLI's terms: the inputs come from --input-size, --input or --inputs."""
    message = message.replace("(check example_inputs)", "(check --input-size / --input)")
    message = message.replace("(check the shapes of example_inputs)", "(check --input-size / --input)")
    message = message.replace("pass real example inputs", "pass real inputs with --inputs FILE")
    message = re.sub(r"Proxy\((\w+)\)", "the input's size", message)
    message = re.sub(r"select them with types=\[\w+\] or a pattern", "select them with a pattern", message)
    message = message.replace("example_inputs has keyword arguments", "the inputs have keyword arguments")
    message = re.sub(
        r"example_inputs has (\d+) positional inputs", r"the inputs have \1 positional tensors", message
    )
    message = message.replace(
        "pass the extra ones by name in a dict, or drop them",
        "name the extra ones (--input NAME=SHAPE:DTYPE) or drop them",
    )
    if "required positional argument" in message or "gives no value for forward() argument" in message:
        message = message.replace("example_inputs gives no value", "the inputs give no value")
        message += (
            " Give every input with --input NAME=SHAPE:DTYPE (repeatable, e.g. --input input_ids=1,16:int64) "
            "or --inputs FILE (a .pt or .safetensors of ready tensors)."
        )
    if "AssertionError" in message and "check --input-size" in message:
        message += " A model built for one input size takes it as an argument: --model-arg image_size=N."
    return message


class _BadParameter(click.BadParameter):
    """A bad option value, shown as one ``Error: ...`` line (no usage banner)."""

    def show(self, file: Any = None) -> None:
        click.ClickException.show(self, file)


class _UsageError(click.UsageError):
    """A wrong combination of options, shown as one ``Error: ...`` line."""

    def show(self, file: Any = None) -> None:
        click.ClickException.show(self, file)


def _parse_input_size(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Any:
    if value is None:
        return None
    from ._inputs import parse_shape

    try:
        return parse_shape(value, "input size")
    except FxtractError as e:
        raise _BadParameter(str(e), ctx=ctx, param=param) from None


def _parse_inputs(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    from ._inputs import parse_input_spec

    try:
        return [parse_input_spec(v) for v in value]
    except FxtractError as e:
        raise _BadParameter(str(e), ctx=ctx, param=param) from None


def _parse_model_args(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    from ._inputs import parse_model_arg

    args: dict[str, Any] = {}
    try:
        for text in value:
            key, arg = parse_model_arg(text)
            if key in args:
                raise _BadParameter(f"{key} is given twice.", ctx=ctx, param=param)
            args[key] = arg
    except FxtractError as e:
        raise _BadParameter(str(e), ctx=ctx, param=param) from None
    return args


# Shared by every command that builds a model (nodes, describe, extract, viz).
WEIGHTS_OPTION = click.option(
    "--weights",
    metavar="DEFAULT|PATH",
    default=None,
    show_default="none: random weights, offline",
    help="DEFAULT: the library's pretrained weights (downloads); or a state dict file.",
)
# The short form, for commands whose --help points to `fxtract nodes --help` for the long one.
STRATEGY_OPTION = click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default="auto",
    show_default=True,
    help="How nodes are found (see `fxtract nodes --help`).",
)


def _model_options(func: Any) -> Any:
    """MODEL, the input options, --model-arg, --weights, --mode and --strategy, shared by every command."""
    func = click.option(
        "--strategy",
        type=click.Choice(STRATEGIES),
        default="auto",
        show_default=True,
        help="How nodes are found: fx (symbolic tracing, op level), export (torch.export, op level) or "
        "hooks (module calls only); auto tries fx, FX with automatic leaves, export, then hooks. "
        "export and hooks run the model on fake tensors of the inputs.",
    )(func)
    func = click.option(
        "--mode",
        type=click.Choice(MODES),
        default="eval",
        show_default=True,
        help="Graph to use: traced in train mode, in eval mode, or both (their union).",
    )(func)
    func = WEIGHTS_OPTION(func)
    func = click.option(
        "--model-arg",
        "model_args",
        metavar="KEY=VALUE",
        multiple=True,
        callback=_parse_model_args,
        help="Argument for the model's builder (image_size=64; int, float, true/false, none or text); "
        "with hf-config: a config field. Repeatable.",
    )(func)
    func = click.option(
        "--inputs",
        "inputs_file",
        metavar="FILE",
        default=None,
        help="Ready tensors: a .safetensors file (keyword inputs) or a torch.save file (a tensor, a tuple "
        "of positional inputs or a dict of keyword inputs).",
    )(func)
    func = click.option(
        "--input",
        "input_specs",
        metavar="[NAME=]SHAPE[:DTYPE]",
        multiple=True,
        callback=_parse_inputs,
        help="One input tensor, whole shape with the batch dim: input_ids=1,16:int64 is a keyword input, "
        "1,3,64,64 a positional one (dtype float32 unless given). Repeatable. Nothing is allocated.",
    )(func)
    func = click.option(
        "--input-size",
        metavar="C,H,W",
        callback=_parse_input_size,
        default=None,
        show_default="the model's config, else 3,224,224",
        help="Size of one input sample (float32); a batch dim of 1 is added. Nothing is allocated: "
        "shapes come from meta tensors.",
    )(func)
    func = click.argument("model", metavar="MODEL")(func)
    return func


def _load(spec: str, weights: Optional[str], model_args: Optional[dict[str, Any]] = None) -> LoadedModel:
    from ._models import load_model

    click.echo(f"fxtract: loading {spec} ...", err=True)
    loaded = load_model(spec, weights=weights, model_args=model_args)
    n_params = sum(p.numel() for p in loaded.model.parameters())
    click.echo(f"fxtract: {type(loaded.model).__name__}, {_count(n_params)} parameters", err=True)
    return loaded


# A forward that needs tensor values cannot run on meta inputs; below this size it runs once on zeros.
_MAX_REAL_INPUT_BYTES = 64 * 2**20


def _describe(loaded: LoadedModel, example: Any, **kwargs: Any) -> list[NodeInfo]:
    """``fxtract.describe``; its own warnings (strategy used, real forward) as ``fxtract:`` lines."""
    from .._api import describe
    from .._errors import StrategyError
    from ._inputs import real_zeros

    with warnings.catch_warnings(record=True) as caught:
        try:
            infos = describe(loaded.model, example, tracer_kwargs=loaded.tracer_kwargs, **kwargs)
        except StrategyError as e:
            if "example_inputs are on the meta device" not in str(e):
                raise
            zeros = real_zeros(example, max_bytes=_MAX_REAL_INPUT_BYTES)
            if zeros is None:
                raise StrategyError(
                    f"{e} These inputs are over {_MAX_REAL_INPUT_BYTES >> 20} MiB, so the CLI does not make "
                    "zeros of them: pass smaller ones (--input-size / --input) or your own with --inputs FILE."
                ) from None
            click.echo("fxtract: the forward needs tensor values: it runs on zeros of these shapes", err=True)
            infos = describe(loaded.model, zeros, tracer_kwargs=loaded.tracer_kwargs, **kwargs)
    for w in caught:
        if w.filename == __file__:  # describe's warnings point at their caller: here
            click.echo(f"fxtract: warning: {' '.join(str(w.message).split())}", err=True)
        else:  # torch's and the model's own, as Python shows them
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return infos


def _input(
    loaded: LoadedModel,
    input_size: Optional[tuple[int, ...]],
    input_specs: Sequence[Any] = (),
    inputs_file: Optional[str] = None,
) -> Any:
    """The example inputs: ready tensors of --inputs, else meta tensors (no data) of the specs."""
    from ._inputs import InputSpec, load_inputs, meta_inputs, summarize_inputs

    given = [
        o for o, v in (("--input-size", input_size), ("--input", input_specs), ("--inputs", inputs_file)) if v
    ]
    if len(given) > 1:
        raise _UsageError(f"{' and '.join(given)} both give the inputs: use one of them.")
    if inputs_file:
        example = load_inputs(inputs_file)
        click.echo(f"fxtract: inputs {summarize_inputs(example)} (from {inputs_file})", err=True)
        return example
    if input_specs:
        specs = list(input_specs)
    elif input_size is None and loaded.inputs is not None:
        specs = list(loaded.inputs)
    else:
        specs = [InputSpec(None, (1, *(input_size or loaded.input_size)))]
    example = meta_inputs(specs)
    label = ", ".join(s.label() for s in specs)
    click.echo(f"fxtract: inputs {label} (meta tensors: shapes only, nothing allocated)", err=True)
    return example


# ---------------------------------------------------------------------------------------------
# Formatting


def _count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _shapes(info: NodeInfo) -> str:
    return ", ".join(_shape(s) for s in info.shapes) if info.shapes else "-"


def _dtypes(info: NodeInfo) -> str:
    return ", ".join(dict.fromkeys(info.dtypes)) if info.dtypes else "-"


def _table(rows: list[list[str]], header: Optional[list[str]] = None, right: Sequence[int] = ()) -> str:
    """Rows as aligned columns (``right``: indices of right-aligned columns)."""
    all_rows = ([header] if header else []) + rows
    if not all_rows:
        return ""
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(all_rows[0]))]
    lines = []
    for row in all_rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _modes_note(info: NodeInfo) -> str:
    return "" if info.modes == "both" else f"{info.modes} only"


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


# ---------------------------------------------------------------------------------------------
# Commands


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="fxtract")
def main() -> None:
    """List, describe and choose the intermediate nodes of a PyTorch model.

    MODEL is torchvision:NAME, timm:NAME, path/to/file.py:FACTORY (a function
    or class, called with the --model-arg values) or hf-config:path/to/config.json
    (a Hugging Face model built from a local config). Weights are random unless
    --weights says otherwise, so nothing is downloaded by default.

    \b
    Examples:
      fxtract nodes torchvision:resnet18
      fxtract nodes timm:convnext_atto --tree --depth 2
      fxtract describe torchvision:resnet18 --nodes 'layer*.relu*'
      fxtract nodes torchvision:vit_b_16 --model-arg image_size=64 --compute
      fxtract describe hf-config:config.json --input input_ids=1,16:int64
    """


@main.command(context_settings=CONTEXT_SETTINGS, short_help="List node names in execution order.")
@_model_options
@click.option("--shapes", is_flag=True, help="Add output shapes (fake tensors: no real forward).")
@click.option(
    "--filter",
    "filters",
    metavar="PATTERN",
    multiple=True,
    help="Only names matching: exact, glob ('layer*.relu*') or 're:REGEX'. Repeatable.",
)
@click.option("--modules", is_flag=True, help="Also list module calls FX traces through (layer1, layer1.0).")
@click.option(
    "--compute",
    is_flag=True,
    help="Hide bookkeeping nodes (getattr, getitem, comparisons, asserts, size queries, parameter reads): "
    "only nodes that compute a tensor.",
)
@click.option("--tree", is_flag=True, help="Print the module hierarchy with output shapes.")
@click.option(
    "--depth",
    type=click.IntRange(min=1),
    default=None,
    show_default="all levels",
    help="With --tree: hide modules deeper than this.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def nodes(
    model: str,
    input_size: Optional[tuple[int, ...]],
    input_specs: list[Any],
    inputs_file: Optional[str],
    model_args: dict[str, Any],
    weights: Optional[str],
    mode: str,
    strategy: str,
    shapes: bool,
    filters: tuple[str, ...],
    modules: bool,
    compute: bool,
    tree: bool,
    depth: Optional[int],
    as_json: bool,
) -> None:
    """List the node names of MODEL in execution order (what create_feature_extractor takes).

    \b
    Example:
      fxtract nodes torchvision:resnet18 --shapes --filter 'layer4.*'
    """
    if depth is not None and not tree:
        raise _UsageError("--depth only applies with --tree.")
    if compute and tree:
        raise _UsageError("--compute lists nodes; --tree shows module calls only: use one of them.")
    with _user_errors():
        loaded = _load(model, weights, model_args)

        def example() -> Any:
            return _input(loaded, input_size, input_specs, inputs_file)

        if tree:
            infos = _describe(loaded, example(), nodes="*", mode=mode, strategy=strategy)
            _print_tree(loaded, _with_ancestors(infos, filters), depth, as_json)
            return
        patterns: Any = list(filters) if filters else ("*" if modules else None)
        options = {"nodes": patterns, "mode": mode, "strategy": strategy}
        # FX lists names without running anything; export and hooks need an input, and so does
        # --compute (a node computes a tensor when its output holds one).
        if shapes or compute or strategy in ("export", "hooks") or input_specs or inputs_file:
            infos = _describe(loaded, example(), **options)
        else:
            try:
                infos = _describe(loaded, None, **options)
            except FxtractError as e:
                if not (
                    isinstance(e, StrategyError) and e.needs_inputs
                ):  # FX failed: auto goes on with an input
                    raise
                infos = _describe(loaded, example(), **options)
        if compute:
            shown = [i for i in infos if not _is_bookkeeping(i)]
            click.echo(f"fxtract: --compute hides {len(infos) - len(shown)} bookkeeping nodes", err=True)
            infos = shown
        if as_json:
            keep_shapes = shapes
            _json([_info_dict(i, keep_shapes) for i in infos])
            return
        rows = []
        for info in infos:
            row = [info.name]
            if shapes:
                row.append(_shapes(info))
            if mode == "both":
                row.append(_modes_note(info))
            rows.append(row)
        click.echo(_table(rows))


@main.command(
    name="describe",
    context_settings=CONTEXT_SETTINGS,
    short_help="Table of nodes: kind, target, shape, dtype, params.",
)
@_model_options
@click.option(
    "--nodes",
    "patterns",
    metavar="PATTERN",
    multiple=True,
    show_default="every node",
    help="Nodes to describe: exact name, glob ('layer*.relu*') or 're:REGEX'. Repeatable.",
)
@click.option("--exclude", metavar="PATTERN", multiple=True, help="Leave out these nodes. Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def describe_command(
    model: str,
    input_size: Optional[tuple[int, ...]],
    input_specs: list[Any],
    inputs_file: Optional[str],
    model_args: dict[str, Any],
    weights: Optional[str],
    mode: str,
    strategy: str,
    patterns: tuple[str, ...],
    exclude: tuple[str, ...],
    as_json: bool,
) -> None:
    """Print a table of MODEL's nodes: kind, target, output shape, dtype, parameters.

    Shapes come from running the graph on fake tensors: no real forward, no
    activation memory, so huge models are described quickly.

    \b
    Example:
      fxtract describe torchvision:resnet18 --nodes 'layer*' --exclude 're:.*bn\\d'
    """
    with _user_errors():
        loaded = _load(model, weights, model_args)
        example = _input(loaded, input_size, input_specs, inputs_file)
        infos = _describe(
            loaded, example, nodes=list(patterns) or None, exclude=exclude, mode=mode, strategy=strategy
        )
        if as_json:
            _json([i.to_dict() for i in infos])
            return
        header = ["name", "kind", "target", "shape", "dtype", "params"]
        if mode == "both":
            header.append("modes")
        rows = []
        for info in infos:
            params = f"{info.params:,}" if info.kind == "module" else "-"
            row = [info.name, info.kind, info.target, _shapes(info), _dtypes(info), params]
            if mode == "both":
                row.append(info.modes)
            rows.append(row)
        click.echo(_table(rows, header, right=(5,)))


# Nodes that move values around or check them, but compute no tensor of their own.
_BOOKKEEPING = frozenset(
    {
        "getattr",
        "operator.getitem",
        "torch._assert",
        "torch._assert_async",
        "size",
        "dim",
        "numel",
        "len",
        "aten.sym_size.int",
        "aten._assert_scalar.default",
        "aten._assert_tensor_metadata.default",
    }
)


def _is_bookkeeping(info: NodeInfo) -> bool:
    """A getattr / getitem / assert / size query, a parameter read, or an op whose output holds no tensor."""
    if info.kind in ("input", "module", "output"):
        return False
    if info.kind == "attribute" or info.target in _BOOKKEEPING:
        return True
    return not info.shapes  # int arithmetic on sizes, comparisons: no tensor comes out


def _info_dict(info: NodeInfo, with_shapes: bool) -> dict[str, Any]:
    data = info.to_dict()
    if not with_shapes:
        del data["shapes"], data["dtypes"]
    return data


# ---------------------------------------------------------------------------------------------
# --tree


def _with_ancestors(infos: list[NodeInfo], filters: Sequence[str]) -> list[NodeInfo]:
    """The infos matching ``filters`` and the module calls that enclose them."""
    if not filters:
        return infos
    from .._select import select_nodes

    by_name = {i.name: i for i in infos}
    keep = set(select_nodes(list(filters), list(by_name), strict=True))
    for name in list(keep):
        parent = by_name[name].parent
        while parent and parent not in keep:
            keep.add(parent)
            parent = by_name[parent].parent if parent in by_name else ""
    return [i for i in infos if i.name in keep]


def _print_tree(loaded: LoadedModel, infos: list[NodeInfo], depth: Optional[int], as_json: bool) -> None:
    calls = [i for i in infos if i.kind == "module"]
    children: dict[str, list[NodeInfo]] = {}
    for info in calls:
        children.setdefault(info.parent, []).append(info)
    root_params = sum(p.numel() for p in loaded.model.parameters())
    root_name = type(loaded.model).__name__

    def count(name: str) -> int:
        return sum(1 + count(c.name) for c in children.get(name, ()))

    if as_json:

        def node(info: NodeInfo, level: int) -> dict[str, Any]:
            data = {k: v for k, v in info.to_dict().items() if k in ("name", "target", "shapes", "params")}
            kids = children.get(info.name, [])
            if depth is not None and level >= depth:
                data["hidden"] = count(info.name)
                kids = []
            data["children"] = [node(c, level + 1) for c in kids]
            return data

        _json(
            {
                "name": "",
                "target": root_name,
                "params": root_params,
                "children": [node(c, 1) for c in children.get("", [])],
            }
        )
        return

    rows = [[root_name, "", "", f"{root_params:,}", ""]]

    def walk(name: str, prefix: str, level: int) -> None:
        kids = children.get(name, [])
        for k, info in enumerate(kids):
            last = k == len(kids) - 1
            hidden = count(info.name) if depth is not None and level >= depth else 0
            rows.append(
                [
                    prefix + ("└─ " if last else "├─ ") + info.name,
                    info.target,
                    _shapes(info),
                    f"{info.params:,}",
                    f"(+{hidden} inside)" if hidden else "",
                ]
            )
            if not hidden:
                walk(info.name, prefix + ("   " if last else "│  "), level + 1)

    walk("", "", 1)
    click.echo(_table(rows, right=(3,)))


from ._extract import extract_command, info_command  # noqa: E402 - the commands need the group's helpers

main.add_command(extract_command)
main.add_command(info_command)
from ._distributed import merge_command  # noqa: E402

main.add_command(merge_command)

from ._viz import viz  # noqa: E402

main.add_command(viz)
