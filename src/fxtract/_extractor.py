"""``create_feature_extractor``: a drop-in for torchvision's, that returns the right tensors."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Optional, Union

from torch import fx, nn

from ._errors import FxtractTypeError, ReturnNodesError
from ._graph_module import DualGraphModule
from ._naming import NodePathTracer, _warn_graph_differences, trace_modes
from ._rewrite import (
    available_names,
    build_output,
    drop_needless_clones,
    is_compute,
    protect_outputs,
    prune,
    resolve,
)

__all__ = ["create_feature_extractor"]

ReturnNodes = Union[Iterable[str], Mapping[str, str]]


def _to_dict(nodes: ReturnNodes, arg: str) -> dict[str, str]:
    if isinstance(nodes, str):
        nodes = [nodes]
    if isinstance(nodes, Mapping):
        pairs = [(str(k), str(v)) for k, v in nodes.items()]
    else:
        try:
            pairs = [(str(n), str(n)) for n in nodes]
        except TypeError:
            raise FxtractTypeError(
                f"{arg} must be a list of node names or a dict {{node name: output key}}, "
                f"got {type(nodes).__name__}."
            ) from None
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
    from ._fallback import create

    train_nodes, eval_nodes = normalize_return_nodes(return_nodes, train_return_nodes, eval_return_nodes)
    return create(
        model,
        train_nodes,
        eval_nodes,
        tracer_kwargs=tracer_kwargs,
        suppress_diff_warning=suppress_diff_warning,
        concrete_args=concrete_args,
        naming=naming,
        strategy=strategy,
        example_inputs=example_inputs,
    )


def expand_queries(tracer: NodePathTracer, queries: Mapping[str, str], mode: str) -> dict[str, str]:
    """Expand glob / ``re:`` patterns into concrete names (each its own output key)."""
    if not any(_is_pattern(q) for q in queries):
        return dict(queries)
    from ._select import select_nodes

    names = available_names(tracer)
    types = {c.name: c.module_type for c in tracer.module_calls}
    # A node name or module path with glob characters (a ModuleList "x[0]" that is never called
    # itself) is that name, not a pattern: resolve() knows it.
    literal = set(names) | {path for path, _ in tracer.root.named_modules()}
    out: dict[str, str] = {}
    for query, key in queries.items():
        if not _is_pattern(query) or query in literal:
            out[query] = key
            continue
        if key != query:
            raise ReturnNodesError(
                f"pattern {query!r} matches several nodes, so it cannot map to one output key {key!r}; "
                "pass patterns in a list."
            )
        for name in select_nodes([query], names, name_types=types):
            out.setdefault(name, name)
    return out


def _rename_constants(graph: fx.Graph, constants: dict[str, Any]) -> dict[str, Any]:
    renamed = {}
    for node in graph.nodes:
        if node.op == "get_attr" and node.target in constants:
            new = f"{node.target}_eval"
            renamed[new] = constants[node.target]
            node.target = new
    return renamed


def _is_pattern(query: str) -> bool:
    return query.startswith("re:") or any(c in query for c in "*?[")


def build_fx_extractor(
    model: nn.Module,
    train_nodes: Mapping[str, str],
    eval_nodes: Mapping[str, str],
    *,
    tracer_kwargs: Optional[dict[str, Any]],
    suppress_diff_warning: bool,
    concrete_args: Optional[dict[str, Any]],
    naming: str,
    leaf_paths: Iterable[str] = (),
) -> DualGraphModule:
    """Trace both modes, rewrite each graph to return the requested values, prune, wrap."""
    traced = trace_modes(
        model, tracer_kwargs, naming=naming, concrete_args=concrete_args, leaf_paths=leaf_paths
    )
    graphs: dict[str, fx.Graph] = {}
    resolved: dict[str, dict[str, str]] = {}
    stats: dict[str, Any] = {}
    clones: dict[str, int] = {}
    for mode, queries in (("train", train_nodes), ("eval", eval_nodes)):
        tracer, graph = traced[mode]
        concrete = expand_queries(tracer, queries, mode)
        values, read_at = resolve(tracer, concrete, mode)
        build_output(graph, {key: values[q] for q, key in concrete.items()})
        protect_outputs(graph, model, {concrete[q]: node for q, node in read_at.items()})
        stats[mode] = dict(prune(graph, model, tracer))
        clones[mode] = drop_needless_clones(graph, model)
        stats[mode].update(nodes_after=len(graph.nodes), compute_after=sum(map(is_compute, graph.nodes)))
        graphs[mode] = graph
        resolved[mode] = concrete
    if not suppress_diff_warning:
        _warn_graph_differences(traced["train"][0], traced["eval"][0])
    skipped = sorted(set(traced["train"][0].skipped_hooks) | set(traced["eval"][0].skipped_hooks))
    if skipped:
        warnings.warn(
            "these hooks are on modules that FX traces through, so the extractor will not run them: "
            + "; ".join(skipped)
            + ". Make those modules leaves (tracer_kwargs={'leaf_modules': [...]}) to keep their hooks.",
            stacklevel=3,
        )
    # Both traces name their constants _tensor_constant0...: give the eval graph's their own names.
    train_constants = traced["train"][0].tensor_constants
    eval_constants = _rename_constants(graphs["eval"], traced["eval"][0].tensor_constants)
    constants = {**train_constants, **eval_constants}
    gm = DualGraphModule(
        model,
        graphs["train"],
        graphs["eval"],
        class_name=type(model).__name__,
        training=model.training,
        constants=constants,
    )
    gm.strategy = "fx"
    gm.train_return_nodes = resolved["train"]
    gm.eval_return_nodes = resolved["eval"]
    gm.prune_stats = stats
    gm.num_clones = clones
    gm.auto_leaves = {}
    gm.skipped_hooks = skipped
    return gm
