"""Stage 3b, fall back: pick a strategy for models FX cannot trace whole.

``"auto"`` tries, in order: plain FX; FX with automatic leaves (the innermost module
whose code FX cannot trace becomes a leaf, repeatedly); ``torch.export`` when
``example_inputs`` is given; forward hooks (module granularity, any model).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Callable, Optional

from torch import nn

from ._errors import FxtractTypeError, FxtractValueError, StrategyError, TraceError
from ._naming import _warn_graph_differences, trace_modes

STRATEGIES = ("auto", "fx", "export", "hooks")
# A model with more failing modules than this is not worth tracing piecewise.
MAX_AUTO_LEAVES = 64


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise FxtractValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")


def _needs_inputs(strategy: str, example_inputs: Any) -> None:
    if example_inputs is None:
        raise StrategyError(
            f"strategy={strategy!r} runs the model, so it needs example_inputs=... (a tensor, a tuple of "
            "positional arguments, or a dict of keyword arguments)."
        )


def _short(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or e
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {text}"[:200]


def _with_auto_leaves(
    model: nn.Module, attempt: Callable[[set[str]], Any], first_error: TraceError
) -> tuple[Any, dict[str, str]]:
    """Retry ``attempt`` with the innermost failing module made a leaf, until it succeeds."""
    leaves: dict[str, str] = {}
    error = first_error
    while True:
        path = getattr(error, "module_path", "")
        if not path or path in leaves or len(leaves) >= MAX_AUTO_LEAVES:
            raise error
        leaves[path] = _short(error)
        try:
            return attempt(set(leaves)), leaves
        except TraceError as e:
            error = e


def create(
    model: nn.Module,
    train_nodes: Mapping[str, str],
    eval_nodes: Mapping[str, str],
    *,
    tracer_kwargs: Optional[dict[str, Any]],
    suppress_diff_warning: bool,
    concrete_args: Optional[dict[str, Any]],
    naming: str,
    strategy: str,
    example_inputs: Any,
) -> nn.Module:

    extractor = _create(
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
    if getattr(extractor, "feature_info", None) is not None:  # the export strategy's own
        return extractor
    extractor.feature_info = None
    if example_inputs is not None:
        extractor.feature_info = _feature_info(model, extractor, eval_nodes, example_inputs, tracer_kwargs)
    return extractor


def _feature_info(
    model: nn.Module,
    extractor: nn.Module,
    eval_nodes: Mapping[str, str],
    example_inputs: Any,
    tracer_kwargs: Optional[dict[str, Any]],
) -> Optional[list[dict[str, Any]]]:
    """timm-style channels / reduction of the eval outputs, from fake tensors (no forward)."""
    from ._describe import feature_info

    strategy = getattr(extractor, "strategy", "auto")
    leaves = list(getattr(extractor, "auto_leaves", None) or ())
    if leaves:  # the modules that became leaves, by path, so describe traces what the extractor did
        tracer_kwargs = dict(tracer_kwargs or {})
        tracer_kwargs["leaf_modules"] = [*tracer_kwargs.get("leaf_modules", ()), *leaves]
    keys = dict(getattr(extractor, "eval_return_nodes", None) or eval_nodes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the extractor's own creation already warned
            infos = feature_info(
                model, list(keys), example_inputs, strategy=strategy, tracer_kwargs=tracer_kwargs
            )
    except Exception as e:  # best-effort: the extractor itself is fine
        warnings.warn(f"extractor.feature_info is unavailable: {_short(e)}", stacklevel=4)
        return None
    return [{**i, "key": keys.get(i["name"], i["name"])} for i in infos]


def _create(
    model: nn.Module,
    train_nodes: Mapping[str, str],
    eval_nodes: Mapping[str, str],
    *,
    tracer_kwargs: Optional[dict[str, Any]],
    suppress_diff_warning: bool,
    concrete_args: Optional[dict[str, Any]],
    naming: str,
    strategy: str,
    example_inputs: Any,
) -> nn.Module:
    from ._extractor import build_fx_extractor

    check_strategy(strategy)
    if not isinstance(model, nn.Module):
        raise FxtractTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")

    def fx_attempt(leaf_paths: set[str]) -> nn.Module:
        return build_fx_extractor(
            model,
            train_nodes,
            eval_nodes,
            tracer_kwargs=tracer_kwargs,
            suppress_diff_warning=suppress_diff_warning,
            concrete_args=concrete_args,
            naming=naming,
            leaf_paths=leaf_paths,
        )

    if strategy == "export":
        _needs_inputs(strategy, example_inputs)
        return _export_extractor(model, train_nodes, eval_nodes, example_inputs)
    if strategy == "hooks":
        return _hooks_extractor(model, train_nodes, eval_nodes)
    try:
        return fx_attempt(set())
    except TraceError as e:
        if strategy == "fx":
            raise
        first = e
    why = [f"fx: {_short(first)}"]
    try:
        extractor, leaves = _with_auto_leaves(model, fx_attempt, first)
    except TraceError as e:
        why.append(f"automatic leaves: {_short(e)}")
    else:
        extractor.strategy = "fx"
        extractor.auto_leaves = leaves
        warnings.warn(
            "FX could not trace some modules, so they became leaves (their outputs are still available by "
            "path): " + "; ".join(f"{p} ({r})" for p, r in leaves.items()),
            stacklevel=3,
        )
        return extractor
    if example_inputs is not None:
        try:
            extractor = _export_extractor(model, train_nodes, eval_nodes, example_inputs)
        except TraceError as e:
            why.append(f"export: {_short(e)}")
        else:
            _warn_fallback("export", why)
            return extractor
    else:
        why.append("export: skipped (no example_inputs)")
    extractor = _hooks_extractor(model, train_nodes, eval_nodes)
    _warn_fallback("hooks", why)
    return extractor


def _warn_fallback(used: str, why: list[str]) -> None:
    warnings.warn(
        f"fxtract used strategy={used!r}; earlier strategies failed: " + " | ".join(why), stacklevel=4
    )


def _export_extractor(
    model: nn.Module, train: Mapping[str, str], eval_: Mapping[str, str], inputs: Any
) -> nn.Module:
    from ._describe import export_feature_rows
    from ._export import create_export_extractor, trace_export

    traces = trace_export(model, inputs)
    extractor = create_export_extractor(model, dict(train), dict(eval_), inputs, traces=traces)
    try:  # from the fake values export recorded: no second export
        rows = export_feature_rows(traces["eval"], eval_, inputs)
    except Exception as e:  # best-effort: the extractor itself is fine
        warnings.warn(f"extractor.feature_info is unavailable: {_short(e)}", stacklevel=4)
    else:
        extractor.feature_info = [{**r, "key": eval_[r["name"]]} for r in rows]
    return extractor


def _hooks_extractor(model: nn.Module, train: Mapping[str, str], eval_: Mapping[str, str]) -> nn.Module:
    from ._hooks import HookFeatureExtractor

    return HookFeatureExtractor(model, dict(train), dict(eval_))


def graph_node_names(
    model: nn.Module,
    tracer_kwargs: Optional[dict[str, Any]],
    suppress_diff_warning: bool,
    concrete_args: Optional[dict[str, Any]],
    *,
    naming: str,
    strategy: str,
    example_inputs: Any,
) -> tuple[list[str], list[str]]:
    check_strategy(strategy)
    if strategy == "export":
        _needs_inputs(strategy, example_inputs)
        from ._export import export_node_names

        train, eval_ = export_node_names(model, example_inputs)
    elif strategy == "hooks":
        _needs_inputs(strategy, example_inputs)
        from ._hooks import hook_node_names

        train, eval_ = hook_node_names(model, example_inputs)
    else:
        train, eval_ = _fx_names(model, tracer_kwargs, concrete_args, naming, strategy, example_inputs)
    if not suppress_diff_warning:
        _warn_graph_differences(train, eval_)
    return train, eval_


def _fx_names(
    model: nn.Module,
    tracer_kwargs: Optional[dict[str, Any]],
    concrete_args: Optional[dict[str, Any]],
    naming: str,
    strategy: str,
    example_inputs: Any,
) -> tuple[list[str], list[str]]:
    def attempt(leaf_paths: set[str]) -> tuple[list[str], list[str]]:
        traced = trace_modes(
            model, tracer_kwargs, naming=naming, concrete_args=concrete_args, leaf_paths=leaf_paths
        )
        return tuple(list(traced[m][0].node_to_qualname.values()) for m in ("train", "eval"))  # type: ignore[return-value]

    try:
        return attempt(set())
    except TraceError as e:
        if strategy == "fx":
            raise
        first = e
    try:
        names, _ = _with_auto_leaves(model, attempt, first)
        return names
    except TraceError:
        pass
    if example_inputs is None:
        raise StrategyError(
            f"FX cannot trace {type(model).__name__} ({_short(first)}), even with automatic leaves; "
            "pass example_inputs=... so fxtract can list names with torch.export or hooks."
        ) from first
    from ._export import export_node_names
    from ._hooks import hook_node_names

    try:
        return export_node_names(model, example_inputs)
    except TraceError:
        return hook_node_names(model, example_inputs)
