"""The one fallback chain: fx -> fx with automatic leaves -> export -> hooks."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable, Optional

from torch import nn

from .._errors import NodeNotFoundError, ShapeInferenceError, StrategyError, TraceError, summarize
from .._inputs import require_inputs
from .._options import STRATEGIES, check_choice
from .base import TASKS, Request, Strategy
from .export import ExportStrategy
from .fx import FxStrategy
from .hooks import HooksStrategy

__all__ = ["MAX_AUTO_LEAVES", "REGISTRY", "Outcome", "run"]

REGISTRY: dict[str, Strategy] = {s.name: s for s in (FxStrategy(), ExportStrategy(), HooksStrategy())}
# A model with more failing modules than this is not worth tracing piecewise.
MAX_AUTO_LEAVES = 64

_ASKED = {
    "node_names": "list the names",
    "extractor": "build the extractor",
    "views": "name the nodes",
}


@dataclass
class Outcome:
    """What :func:`run` returns: the task's result, the strategy that produced it, the automatic leaves."""

    result: Any
    strategy: str
    auto_leaves: dict[str, str] = dataclasses.field(default_factory=dict)


def _falls_through(e: Exception) -> bool:
    """Errors after which "auto" tries the next strategy: tracing failed, or fake tensors lack values."""
    return isinstance(e, TraceError) or (isinstance(e, ShapeInferenceError) and e.data_dependent)


def run(
    strategy: str,
    req: Request,
    task: str,
    do: Callable[[Strategy, Request], Any],
    *,
    stacklevel: int = 3,
) -> Outcome:
    """Do ``task`` with ``strategy``: ``do(strategy_object, request)`` returns its result.

    With ``"auto"``: fx, fx with automatic leaves, export, hooks. A strategy that needs
    ``example_inputs`` for ``task`` is skipped when none were given; if none is left, a
    :class:`StrategyError` (``needs_inputs=True``) says to pass them. A
    :class:`TraceError`, or a data-dependent :class:`ShapeInferenceError`, goes on to the
    next strategy; one warning names the strategy used and why the earlier ones failed,
    whatever the task. With an explicit strategy nothing is caught.
    """
    check_choice("strategy", strategy, STRATEGIES)
    assert task in TASKS, task
    if strategy != "auto":
        chosen = REGISTRY[strategy]
        if task in chosen.needs_inputs:
            require_inputs(strategy, req.example_inputs)
        return Outcome(do(chosen, req), strategy)
    fx = REGISTRY["fx"]
    req = dataclasses.replace(req, auto=True)
    why: list[str] = []
    try:
        return Outcome(do(fx, req), "fx")
    except (TraceError, ShapeInferenceError) as e:
        if not _falls_through(e):
            raise
        why.append(f"fx: {summarize(e) if isinstance(e, TraceError) else str(e)[:200]}")
        first = e
    if isinstance(first, TraceError):
        tried: set[str] = set()
        try:
            result, leaves = _with_auto_leaves(req, lambda r: do(fx, r), first, tried)
        except (TraceError, ShapeInferenceError) as e:
            if not _falls_through(e):
                raise
            why.append(f"automatic leaves: {summarize(e) if isinstance(e, TraceError) else str(e)[:200]}")
        except NodeNotFoundError:
            hidden = _inside_leaves([*req.train_nodes, *req.eval_nodes], tried)
            crossing = _shared_across_leaves(req.model, tried) if req.example_inputs is not None else None
            if not hidden and crossing is None:
                raise
            # The chain goes on: export and hooks see the calls inside those modules (#11.1), and
            # number the calls of a module shared with a leaf over all of them.
            why.append(
                f"automatic leaves: {', '.join(hidden)} inside {', '.join(sorted(tried))}"
                if hidden
                else f"automatic leaves: {crossing}"
            )
        else:
            crossing = _shared_across_leaves(req.model, leaves) if req.example_inputs is not None else None
            if crossing is None:
                warnings.warn(
                    "FX could not trace some modules, so they became leaves (their outputs are still "
                    "available by path): " + "; ".join(f"{p} ({r})" for p, r in leaves.items()),
                    stacklevel=stacklevel,
                )
                return Outcome(result, "fx", leaves)
            # FX does not see the calls inside a leaf, so it would number this module's other calls
            # unlike export and hooks (the sweep's duplicate names): the chain goes on.
            why.append(f"automatic leaves: {crossing}")
    rest = [REGISTRY["export"], REGISTRY["hooks"]]
    for i, chosen in enumerate(rest):
        if task in chosen.needs_inputs and req.example_inputs is None:
            why.append(f"{chosen.name}: skipped (no example_inputs)")
            continue
        try:
            result = do(chosen, req)
        except (TraceError, ShapeInferenceError) as e:
            if i == len(rest) - 1 or not _falls_through(e):
                raise
            why.append(f"{chosen.name}: {summarize(e)}")
            continue
        warnings.warn(
            f"fxtract used strategy={chosen.name!r}; earlier strategies failed: " + " | ".join(why),
            stacklevel=stacklevel,
        )
        return Outcome(result, chosen.name)
    failed = "; ".join(w for w in why if not w.endswith("(no example_inputs)"))
    raise StrategyError(
        f"FX cannot trace {type(req.model).__name__} ({failed}), even with automatic leaves; pass "
        f"example_inputs=... so fxtract can {_ASKED[task]} with torch.export or hooks.",
        needs_inputs=True,
    ) from first


def _inside_leaves(queries: list[str], leaves: set[str]) -> list[str]:
    """The queries that name a module (or op) inside one of the automatic leaves."""
    return sorted({q for q in queries if any(q.startswith(f"{leaf}.") for leaf in leaves)})


def _with_auto_leaves(
    req: Request, attempt: Callable[[Request], Any], first_error: TraceError, tried: set[str]
) -> tuple[Any, dict[str, str]]:
    """Retry ``attempt`` with the innermost failing module made a leaf, until it succeeds.

    ``tried`` is filled with the leaves of the last attempt.
    """
    leaves: dict[str, str] = {}
    error = first_error
    while True:
        path = error.module_path
        if not path or path in leaves or len(leaves) >= MAX_AUTO_LEAVES:
            raise error
        leaves[path] = summarize(error)
        tried.clear()
        tried.update(leaves)
        try:
            return attempt(dataclasses.replace(req, leaf_paths=req.leaf_paths | set(leaves))), leaves
        except TraceError as e:
            error = e


def _shared_across_leaves(model: nn.Module, leaves: Iterable[str]) -> Optional[str]:
    """A module inside an automatic leaf that is also registered outside every leaf, if any."""
    paths: dict[int, list[str]] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        paths.setdefault(id(m), []).append(name)
    modules = dict(model.named_modules())
    found = [leaf for leaf in leaves if leaf in modules]
    prefixes = [p for leaf in found for p in paths[id(modules[leaf])]]

    def under(path: str) -> bool:
        return any(path.startswith(f"{p}.") for p in prefixes)

    for leaf in found:
        for m in modules[leaf].modules():
            if m is modules[leaf]:
                continue
            outside = [p for p in paths[id(m)] if not under(p)]
            if outside:
                inside = next(p for p in paths[id(m)] if under(p))
                return f"{inside!r} inside the leaf {leaf!r} is also {outside[0]!r}, outside it"
    return None
