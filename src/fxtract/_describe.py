"""Assembly of :func:`fxtract.describe`: choose names over the chosen strategy's views, one NodeInfo each.

Strategy-agnostic: the views come from :func:`fxtract._strategies.run` (task ``"views"``),
whichever strategy made them (see :class:`fxtract._strategies.base.ModeView`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from ._errors import NodeNotFoundError
from ._fake import param_count
from ._info import NodeInfo, NodeInfoList
from ._naming import last_call_under
from ._select import Patterns, select_nodes
from ._strategies import ModeViews, Request, Strategy, run

__all__ = ["choose_names", "describe_nodes"]


def describe_nodes(
    req: Request, strategy: str, nodes: Optional[Patterns], exclude: Patterns, *, stacklevel: int = 4
) -> NodeInfoList:
    """:func:`fxtract.describe` once its arguments are checked: ``req.modes`` are the modes described."""
    used = req.modes

    def views_and_names(s: Strategy, r: Request) -> tuple[ModeViews, list[str]]:
        # Inside the chain: a requested name inside an automatic leaf makes auto go on (#11.1).
        mv = s.views(r)
        return mv, choose_names(mv.views, used, nodes, exclude)

    outcome = run(strategy, req, "views", views_and_names, stacklevel=stacklevel)
    mv, chosen = outcome.result
    message = ""
    if mv.real_forward:
        message = (
            f"describe() ran a real forward because {next(iter(mv.real_forward.values()))}: the shapes come "
            f"from a forward under torch.no_grad() in {' and '.join(mv.real_forward)} mode, which used "
            "activation memory (model, buffers and RNG state restored)."
        )
    what = {"export": "export", "hooks": "forward"}.get(outcome.strategy, "trace")
    _warn_skipped(mv.skipped, used, message, what, stacklevel)
    return NodeInfoList(
        _infos(mv.views, used, chosen),
        strategy=outcome.strategy,
        auto_leaves=outcome.auto_leaves,
        real_forward=tuple(mv.real_forward),
    )


def _merge_orders(first: Sequence[str], second: Sequence[str]) -> list[str]:
    """``first``, with the names only in ``second`` inserted after their predecessor there."""
    present = set(first)
    after: dict[Optional[str], list[str]] = {}
    anchor: Optional[str] = None
    for name in second:
        if name not in present:
            after.setdefault(anchor, []).append(name)
        anchor = name
    out = list(after.get(None, ()))
    for name in first:
        out.append(name)
        out.extend(_chain(name, after))
    return out


def _chain(name: str, after: dict[Optional[str], list[str]]) -> Iterable[str]:
    for extra in after.get(name, ()):
        yield extra
        yield from _chain(extra, after)


def choose_names(
    views: dict[str, Any], used: tuple[str, ...], nodes: Optional[Patterns], exclude: Patterns
) -> list[str]:
    """The chosen names, in execution order (the eval order, train-only names merged in)."""
    order = (
        views[used[-1]].names if len(used) == 1 else _merge_orders(views["eval"].names, views["train"].names)
    )
    if nodes is None:
        graph_nodes = [n for n in order if any(n in views[m].node_names for m in used)]
        return select_nodes(graph_nodes, order, exclude=exclude, strict=True)
    types: dict[str, type] = {}
    for m in used:
        types.update(views[m].types)
    patterns = [nodes] if isinstance(nodes, str) else list(nodes)
    # Paths of modules never called themselves, placed right after the call standing for them.
    after: dict[str, list[str]] = {}
    for p in patterns:
        stand_in = _stand_in(views, used, p) if isinstance(p, str) else None
        if stand_in is not None:
            after.setdefault(stand_in, []).append(p)
    rest = [p for p in patterns if not any(p in v for v in after.values())]
    chosen = select_nodes(rest, order, exclude=exclude, name_types=types, strict=True) if rest else []
    if not after:
        return chosen
    position = {n: i for i, n in enumerate(order)}
    containers = [(position[s], p) for s, ps in after.items() for p in ps]
    merged = sorted([(position.get(n, len(order)), n) for n in chosen] + containers, key=lambda x: x[0])
    return list(dict.fromkeys(n for _, n in merged))


def _stand_in(views: dict[str, Any], used: tuple[str, ...], name: str) -> Optional[str]:
    """The call standing for ``name`` if it is the path of a module never called itself (a
    ModuleList that forward iterates): the extractor returns that call's output for it."""
    for m in ("eval", "train"):
        view = views.get(m)
        if m not in used or view is None or name in view.node_names or name in getattr(view, "calls", {}):
            continue
        call = last_call_under(view.calls.values(), name)
        if call is not None:
            return call.name
    return None


def _infos(views: dict[str, Any], used: tuple[str, ...], chosen: list[str]) -> list[NodeInfo]:
    in_train, in_eval = set(views["train"].names), set(views["eval"].names)
    infos = []
    for name in chosen:
        stand_in = name if name in in_train or name in in_eval else _stand_in(views, used, name)
        if stand_in is None:  # pragma: no cover - _select only chooses known names
            raise NodeNotFoundError(f"node {name!r} is not in the model's graph.")
        modes = (
            "both"
            if stand_in in in_train and stand_in in in_eval
            else ("train" if stand_in in in_train else "eval")
        )
        view = views["eval"] if "eval" in used and stand_in in in_eval else views["train"]
        info = view.info(stand_in, modes)
        if stand_in != name:
            module = view.model.get_submodule(name) if name in dict(view.model.named_modules()) else None
            info = dataclasses.replace(
                info,
                name=name,
                kind="module",
                target=type(module).__name__ if module is not None else info.target,
                params=param_count(view.model, name) if module is not None else info.params,
            )
        infos.append(info)
    return infos


def _warn_skipped(
    skipped: dict[str, str], used: tuple[str, ...], message: str, what: str, stacklevel: int
) -> None:
    """One warning: ``message``, and the modes whose graph failed (``NodeInfo.modes`` is partial)."""
    parts = [message] if message else []
    for m, reason in skipped.items():
        parts.append(
            f"{'The' if parts else 'describe(): the'} {m}-mode {what} failed ({reason}), so "
            f"NodeInfo.modes only reflects {' and '.join(used)} mode."
        )
    if parts:
        warnings.warn(" ".join(parts), stacklevel=stacklevel)
