"""The public calls (layer L4): validate, build one :class:`~fxtract._strategies.Request`, run the chain.

Everything every strategy shares happens here, once: argument checks, the expansion of
glob / ``re:`` return nodes, and the attributes of the extractor (``strategy``,
``train_return_nodes``, ``eval_return_nodes``, ``auto_leaves``, ``feature_info``).
The dataset tier (store, extraction, distributed, viz) imports the public calls from here.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Optional, Union

from torch import nn

from ._checks import raise_bad_inputs, return_node_pairs
from ._describe import describe_nodes
from ._errors import ReturnNodesError, StrategyError, summarize
from ._feature_info import feature_rows
from ._info import NodeInfoList
from ._inputs import check_model, normalize_inputs
from ._naming import _warn_graph_differences
from ._options import DESCRIBE_MODES, MODES, NAMINGS, STRATEGIES, check_choice
from ._select import Patterns, check_patterns, expand_patterns
from ._strategies import REGISTRY, Builder, Request, Strategy, run

__all__ = [
    "create_feature_extractor",
    "describe",
    "feature_info",
    "get_graph_node_names",
    "normalize_return_nodes",
]


def get_graph_node_names(
    model: nn.Module,
    tracer_kwargs: Optional[dict[str, Any]] = None,
    suppress_diff_warning: bool = False,
    concrete_args: Optional[dict[str, Any]] = None,
    *,
    naming: str = "fxtract",
    strategy: str = "auto",
    example_inputs: Any = None,
) -> tuple[list[str], list[str]]:
    """Node names of ``model`` in execution order, for train and for eval mode.

    Drop-in for ``torchvision.models.feature_extraction.get_graph_node_names``.

    Args:
        model: the model; it is traced twice and left exactly as it was.
        tracer_kwargs: options for :class:`NodePathTracer` / ``torch.fx.Tracer``
            (``leaf_modules`` by class, instance or path pattern, ``autowrap_functions``...).
            Never modified.
        suppress_diff_warning: do not warn when the two graphs differ.
        concrete_args: arguments of ``forward`` to fix while tracing.
        naming: ``"fxtract"`` or ``"torchvision"`` (see "About node names" in the README).
        strategy: ``"auto"``, ``"fx"``, ``"export"`` or ``"hooks"`` (see
            :func:`create_feature_extractor`). ``"auto"`` warns, as the other calls do, when
            it falls back (automatic leaves, export or hooks).
        example_inputs: inputs for the ``"export"`` and ``"hooks"`` strategies.

    Returns:
        ``(train_names, eval_names)``.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
        >>> get_graph_node_names(m)[1]
        ['input', '0', '1']
    """
    check_model(model)
    check_choice("naming", naming, NAMINGS)
    req = Request(
        model,
        example_inputs=example_inputs,
        tracer_kwargs=tracer_kwargs,
        concrete_args=concrete_args,
        naming=naming,
    )
    outcome = run(strategy, req, "node_names", lambda s, r: s.node_names(r))
    train, eval_ = outcome.result
    if outcome.auto_leaves and example_inputs is not None:
        train, eval_ = _with_calls_inside(req, (train, eval_), outcome.auto_leaves)
    if not suppress_diff_warning and train and eval_:  # an empty mode did not run: it warned
        _warn_graph_differences(train, eval_)
    return train, eval_


ReturnNodes = Union[Iterable[str], Mapping[str, str]]


def _to_dict(nodes: ReturnNodes, arg: str) -> dict[str, str]:
    pairs = return_node_pairs(nodes, arg)
    if not pairs:
        raise ReturnNodesError(f"{arg} is empty: name at least one node (see fxtract.get_graph_node_names).")
    out: dict[str, str] = {}
    by_key: dict[str, str] = {}
    for query, key in pairs:
        if key in by_key and by_key[key] != query:
            raise ReturnNodesError(
                f"{arg} maps both {by_key[key]!r} and {query!r} to the output key {key!r}; give each its own key."
            )
        by_key[key] = query
        out[query] = key
    return out


def normalize_return_nodes(
    return_nodes: Optional[ReturnNodes],
    train_return_nodes: Optional[ReturnNodes],
    eval_return_nodes: Optional[ReturnNodes],
) -> tuple[dict[str, str], dict[str, str]]:
    """``(train, eval)`` dicts of ``{query: output key}``, with torchvision's rules as clear errors."""
    if return_nodes is None and train_return_nodes is None and eval_return_nodes is None:
        raise ReturnNodesError(
            "no return nodes: pass return_nodes (a list of names or a dict {name: output key}), or both "
            "train_return_nodes and eval_return_nodes. List names with fxtract.get_graph_node_names(model)."
        )
    if (train_return_nodes is None) != (eval_return_nodes is None):
        raise ReturnNodesError(
            "train_return_nodes and eval_return_nodes go together: pass both (they may be equal), "
            "or pass return_nodes alone."
        )
    if return_nodes is not None and train_return_nodes is not None:
        raise ReturnNodesError(
            "pass either return_nodes, or train_return_nodes with eval_return_nodes, not both."
        )
    if return_nodes is not None:
        nodes = _to_dict(return_nodes, "return_nodes")
        return nodes, dict(nodes)
    assert train_return_nodes is not None and eval_return_nodes is not None  # for type checkers
    return _to_dict(train_return_nodes, "train_return_nodes"), _to_dict(
        eval_return_nodes, "eval_return_nodes"
    )


def create_feature_extractor(
    model: nn.Module,
    return_nodes: Optional[ReturnNodes] = None,
    train_return_nodes: Optional[ReturnNodes] = None,
    eval_return_nodes: Optional[ReturnNodes] = None,
    tracer_kwargs: Optional[dict[str, Any]] = None,
    suppress_diff_warning: bool = False,
    concrete_args: Optional[dict[str, Any]] = None,
    *,
    naming: str = "fxtract",
    strategy: str = "auto",
    example_inputs: Any = None,
) -> nn.Module:
    """A module that returns ``{output key: activation}`` for the requested nodes.

    Drop-in for ``torchvision.models.feature_extraction.create_feature_extractor``.
    The result is a :class:`DualGraphModule` (an ``fx.GraphModule``) when FX can
    trace the model, with everything the outputs do not need pruned.

    A requested name is an exact node name (``layer1.0.relu_1``) or a module path
    (``layer1``), which resolves to what that module call returned (``P_1`` is its
    second call). Returned activations are never changed by later in-place ops.

    Args:
        model: the model. It is never modified; parameters are shared with the result.
        return_nodes: a list of names, or a dict ``{name: output key}``.
        train_return_nodes: names for train mode (with ``eval_return_nodes``).
        eval_return_nodes: names for eval mode (with ``train_return_nodes``).
        tracer_kwargs: ``torch.fx.Tracer`` options; ``leaf_modules`` takes classes,
            instances or path patterns (``"blocks.*.attn"``). Never modified.
        suppress_diff_warning: do not warn when the train and eval graphs differ.
        concrete_args: ``forward`` arguments to fix while tracing.
        naming: ``"fxtract"`` or ``"torchvision"`` (README, "About node names").
        strategy: ``"auto"`` (default: fx, then automatic leaves, then export when
            ``example_inputs`` is given, then hooks), ``"fx"``, ``"export"`` or ``"hooks"``.
        example_inputs: inputs for the ``"export"`` and ``"hooks"`` strategies: a tuple
            of positional arguments, a dict of keyword arguments, or one object.

    Returns:
        An ``nn.Module``; ``.strategy`` says which strategy built it.

    Raises:
        NodeNotFoundError: a name is not in the graph (with suggestions).
        ReturnNodesError: inconsistent or empty return nodes.
        TraceError: ``strategy="fx"`` and FX cannot trace the model.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(inplace=True))
        >>> ex = create_feature_extractor(m, {"0": "conv", "1": "act"})
        >>> out = ex(torch.randn(1, 3, 8, 8))
        >>> bool((out["conv"] < 0).any()), bool((out["act"] >= 0).all())
        (True, True)
    """
    check_model(model)
    check_choice("naming", naming, NAMINGS)
    train_nodes, eval_nodes = normalize_return_nodes(return_nodes, train_return_nodes, eval_return_nodes)
    if example_inputs is not None:
        normalize_inputs(example_inputs, model)  # they bind to forward, or a clear error now
    req = Request(
        model,
        train_nodes,
        eval_nodes,
        example_inputs=example_inputs,
        tracer_kwargs=tracer_kwargs,
        concrete_args=concrete_args,
        naming=naming,
        suppress_diff_warning=suppress_diff_warning,
    )
    outcome = run(strategy, req, "extractor", _build)
    builder, train, eval_, extractor = outcome.result
    extractor.strategy = outcome.strategy
    extractor.train_return_nodes = train
    extractor.eval_return_nodes = eval_
    extractor.auto_leaves = dict(outcome.auto_leaves)
    extractor.feature_info = _feature_info(builder, extractor, eval_, example_inputs)
    return extractor


def _with_calls_inside(
    req: Request, names: tuple[list[str], list[str]], leaves: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """FX's names with the module calls inside each automatic leaf after its own name (#11.1).

    FX records an automatic leaf as one node; one hooks pass lists the calls inside it, at
    module granularity. ``create_feature_extractor`` serves them with export or hooks.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calls = REGISTRY["hooks"].node_names(req)
    except StrategyError:
        return names
    out = []
    for fx_names, mode_calls in zip(names, calls):
        inside = {leaf: [c for c in mode_calls if c.startswith(f"{leaf}.")] for leaf in leaves}
        merged = []
        for name in fx_names:
            merged.append(name)
            merged.extend(inside.pop(name, ()))
        out.append(merged)
    warnings.warn(
        "FX could not trace some modules, so they became leaves; the module calls inside them are "
        "listed from one forward with hooks, and extracting them uses strategy 'export' or 'hooks': "
        + ", ".join(sorted(leaves)),
        stacklevel=3,
    )
    return out[0], out[1]


def _build(strategy: Strategy, req: Request) -> tuple[Builder, dict[str, str], dict[str, str], nn.Module]:
    """Trace, expand the patterns over the names the trace offers, build: the same for every strategy."""
    builder = strategy.extractor(req)
    paths = [p for p, _ in req.model.named_modules()]
    train = expand_patterns(req.train_nodes, lambda: builder.names("train"), literal=paths)
    eval_ = expand_patterns(req.eval_nodes, lambda: builder.names("eval"), literal=paths)
    return builder, train, eval_, builder.build(train, eval_)


def _feature_info(
    builder: Builder, extractor: nn.Module, eval_nodes: dict[str, str], example_inputs: Any
) -> Optional[list[dict[str, Any]]]:
    """timm-style channels / reduction of the eval outputs, from the strategy's own traces (no forward)."""
    if example_inputs is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the extractor's own creation already warned
            shapes = builder.feature_shapes(extractor, eval_nodes)
        rows = feature_rows(shapes, example_inputs)
    except Exception as e:  # best-effort: the extractor itself is fine
        raise_bad_inputs(e)
        warnings.warn(f"extractor.feature_info is unavailable: {summarize(e)}", stacklevel=3)
        return None
    return [{**r, "key": eval_nodes[r["name"]]} for r in rows]


def describe(
    model: nn.Module,
    example_inputs: Any = None,
    *,
    nodes: Optional[Patterns] = None,
    exclude: Patterns = (),
    mode: str = "eval",
    strategy: str = "auto",
    tracer_kwargs: Optional[dict[str, Any]] = None,
) -> NodeInfoList:
    """Describe the nodes of ``model``: kind, target, output shapes and dtypes, parameters.

    The nodes are named as :func:`fxtract.create_feature_extractor` names them with the
    same ``strategy``, and their outputs are computed on fake tensors (``FakeTensorMode``),
    or on ``meta`` tensors when the model's parameters are on the ``meta`` device. No
    activation memory is allocated, no real forward runs (one exception below), and the
    model (parameters, buffers, attributes, train/eval flags) is left exactly as it was.

    Strategies:

    * ``"fx"``: fxtract's FX tracer, every op a node; a model FX cannot trace raises.
    * ``"export"``: ``torch.export`` (non-strict, shapes fixed to ``example_inputs``), every
      ATen op a node (``"function"``), plus the module calls (``"module"``).
    * ``"hooks"``: module calls only (``path``, ``path_1`` for a second call), from the
      model's own forward run on fake tensors. If that forward reads tensor values
      (``if x.sum() > 0``), it cannot run on fake tensors: then one real forward runs
      under ``torch.no_grad()``, with a warning ("ran a real forward because ..."); on a
      model whose parameters are on the meta device that is a :class:`StrategyError`.
    * ``"auto"`` (default): fx, then FX with automatic leaves (the innermost module FX
      cannot trace becomes a leaf), then export, then hooks; one warning says why the
      earlier ones failed. The result's ``.strategy`` says which one was used.

    Args:
        model: the model.
        example_inputs: what ``forward`` takes, as for ``torch.export``: a tensor, a tuple
            of arguments, a dict of keyword arguments or ``(args, kwargs)``. Only shapes,
            dtypes and devices are used (values too, if a real forward has to run);
            ``meta`` tensors are fine. ``None``: skip shape inference (``shapes`` and
            ``dtypes`` are empty); strategies ``"export"`` and ``"hooks"`` need inputs.
        nodes: patterns choosing the nodes (see :func:`fxtract.select_nodes`): exact names,
            globs, ``re:`` regexes; ``"*"`` also lists the module calls that are not graph
            nodes (``layer1``). ``None``: every node of the graph (every module call with
            ``"hooks"``).
        exclude: patterns of the same kinds; their matches are left out.
        mode: ``"eval"``, ``"train"`` (the graph traced in that mode, run in that mode) or
            ``"both"`` (the union; a node in both graphs is described from the eval one).
            ``NodeInfo.modes`` always tells the graphs a node is in: both modes are
            traced (with ``"hooks"``, two fake forwards).
        strategy: ``"auto"``, ``"fx"``, ``"export"`` or ``"hooks"``.
        tracer_kwargs: options for the FX tracer (``leaf_modules``, ``autowrap_functions``...).

    Returns:
        A :class:`NodeInfoList` (a ``list``): one :class:`NodeInfo` per chosen node, in
        execution order; ``.strategy`` is the strategy used, ``.auto_leaves`` the modules
        that became leaves, ``.real_forward`` the modes in which a real forward ran.

    Raises:
        FxtractValueError: a bad ``mode`` or ``strategy``, or the shapes cannot be
            inferred (the message names the node).
        NodeNotFoundError: a name or pattern in ``nodes`` matches nothing.
        TraceError: FX (``"fx"``) or torch.export (``"export"``) cannot trace the model.
        StrategyError: ``"export"`` / ``"hooks"`` without ``example_inputs``, or a
            real forward would be needed on a meta-device model.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU())
        >>> for info in describe(m, torch.zeros(1, 3, 32, 32)):
        ...     print(info.name, info.kind, info.target, info.shapes, info.params)
        input input input ((1, 3, 32, 32),) 0
        0 module Conv2d ((1, 8, 15, 15),) 224
        1 module ReLU ((1, 8, 15, 15),) 0
        >>> infos = describe(m, torch.zeros(1, 3, 32, 32), strategy="hooks")
        >>> infos.strategy, [(i.name, i.shapes) for i in infos]
        ('hooks', [('0', ((1, 8, 15, 15),)), ('1', ((1, 8, 15, 15),))])
    """
    check_choice("strategy", strategy, STRATEGIES)
    nodes, exclude = (
        _listed(nodes),
        _listed(exclude),
    )  # read twice: what was asked (the chain), then the selection
    check_patterns(nodes, "nodes")
    check_patterns(exclude, "exclude")
    check_choice("mode", mode, DESCRIBE_MODES)
    check_model(model)
    used = ("train", "eval") if mode == "both" else (mode,)
    queries = [] if nodes is None else [nodes] if isinstance(nodes, str) else nodes
    asked = {p: p for p in queries if isinstance(p, str)}
    req = Request(model, asked, asked, example_inputs=example_inputs, tracer_kwargs=tracer_kwargs, modes=used)
    return describe_nodes(req, strategy, nodes, exclude)


def _listed(patterns: Any) -> Any:
    """An iterable of patterns as a list (a generator is read more than once); anything else as given."""
    if patterns is None or isinstance(patterns, (str, bytes)):
        return patterns
    try:
        return list(patterns)
    except TypeError:  # not iterable: check_patterns names it
        return patterns


def feature_info(
    model: nn.Module,
    names: Patterns,
    example_inputs: Any,
    *,
    mode: str = "eval",
    strategy: str = "auto",
    tracer_kwargs: Optional[dict[str, Any]] = None,
) -> list[dict[str, Any]]:
    """Channels and reduction of chosen nodes, like timm's ``model.feature_info``.

    For each node: ``{"name", "num_chs", "reduction", "shape"}``, from the first tensor
    the node outputs (shapes from :func:`describe`, on fake tensors). The input's
    spatial size ``(H, W)`` is the last two dims of the first input tensor with at
    least 3 dims. The rules, by the output's number of dims:

    * 4-D: ``NCHW`` (``num_chs`` = dim 1, spatial = dims 2, 3), unless dims 1, 2 are
      spatial (same reduction from ``H`` and ``W``) while dims 2, 3 are not: then
      ``NHWC`` (``num_chs`` = last dim), as in Swin or ConvNeXt's channels-last blocks;
    * 3-D: tokens ``(N, L, C)``: ``num_chs`` = ``C``; the reduction ``r`` is the one for
      which ``L`` minus up to 8 prefix tokens (class / register tokens) is a
      ``(H / r) x (W / r)`` grid, if any;
    * 5-D and more: ``(N, C, ..., H, W)``;
    * 2-D ``(N, C)`` (pooled): ``num_chs`` = ``C``, no reduction.

    ``reduction`` is ``H / h`` rounded to an integer (``h`` the output height), a
    float below 1 for upsampled outputs, ``None`` when there is no spatial grid.

    Args:
        model: the model.
        names: node names or patterns (see :func:`fxtract.select_nodes`).
        example_inputs: as for :func:`describe`.
        mode: ``"eval"`` or ``"train"``.
        strategy: as for :func:`describe`.
        tracer_kwargs: options for the tracer.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU())
        >>> feature_info(m, ["1"], torch.zeros(1, 3, 64, 64))
        [{'name': '1', 'num_chs': 8, 'reduction': 2, 'shape': (1, 8, 32, 32)}]
    """
    check_patterns(names, "names")
    check_choice("mode", mode, MODES)
    infos = describe(
        model, example_inputs, nodes=names, mode=mode, strategy=strategy, tracer_kwargs=tracer_kwargs
    )
    return feature_rows({i.name: i.shapes[0] if i.shapes else () for i in infos}, example_inputs)
