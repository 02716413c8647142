"""The exceptions fxtract raises. Importing this module does not import torch."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ForwardError",
    "FxtractError",
    "NotScriptableError",
    "NodeNotFoundError",
    "ReturnNodesError",
    "StrategyError",
    "TraceError",
    "suggest",
]


class FxtractError(Exception):
    """Base class of every error fxtract raises on purpose.

    Each concrete error also subclasses the builtin that callers already catch
    (``ValueError``, ``TypeError`` or ``RuntimeError``).
    """


class NodeNotFoundError(FxtractError, ValueError):
    """A requested node name or pattern names nothing in the model's graph."""


class ReturnNodesError(FxtractError, ValueError, AssertionError):
    """``return_nodes`` / ``train_return_nodes`` / ``eval_return_nodes`` are inconsistent.

    Also an ``AssertionError``: older torchvision releases asserted on these
    mistakes, and code written against them catches that.
    """


class TraceError(FxtractError, RuntimeError):
    """Symbolic tracing failed; the message names the module where and the remedies."""


class StrategyError(FxtractError, ValueError):
    """A strategy cannot do what was asked (a missing ``example_inputs``, a name at another granularity)."""


class ForwardError(FxtractError, RuntimeError):
    """The model's own forward failed on the ``example_inputs`` fxtract ran it with."""


class NotScriptableError(FxtractError, RuntimeError):
    """``torch.jit.script`` of an extractor whose code TorchScript cannot compile (strategies hooks, export)."""


class FxtractTypeError(FxtractError, TypeError):
    """An argument has the wrong type."""


class FxtractValueError(FxtractError, ValueError):
    """An argument has a bad value."""


def suggest(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` candidates close to ``word``, best first ("did you mean").

    Names are dotted paths: after the close spellings come the names that share the most
    leading and trailing parts with ``word`` (``layer1.0.relu`` -> ``layer1.0.act1`` and
    ``layer2.0.relu`` rank above ``layer4.1``).

    Example:
        >>> suggest("layer1.0.conv9", ["layer1.0.conv1", "layer4.1", "layer1.0.bn1"], n=2)
        ['layer1.0.conv1', 'layer1.0.bn1']
        >>> suggest("blocks.9.relu", ["stem", "blocks.0.conv", "blocks.0.relu"], n=1)
        ['blocks.0.relu']
    """
    pool = list(dict.fromkeys(candidates))
    close = difflib.get_close_matches(word, pool, n=n, cutoff=0.6)
    parts = word.split(".")
    if len(close) < n and len(parts) > 1:
        scored = []
        for c in pool:
            if c in close:
                continue
            shared = _shared(parts, c.split("."))
            if shared:
                scored.append((-shared, -difflib.SequenceMatcher(None, word, c).ratio(), c))
        close.extend(c for *_, c in sorted(scored)[: n - len(close)])
    return close[:n]


def _shared(parts: list[str], other: list[str]) -> int:
    """How many leading plus trailing dotted parts two names share (the last part may be a close spelling)."""
    lead = 0
    for a, b in zip(parts, other):
        if a != b:
            break
        lead += 1
    if lead >= min(len(parts), len(other)):
        return lead
    tail = 0
    for a, b in zip(reversed(parts[lead:]), reversed(other[lead:])):
        if a != b:
            break
        tail += 1
    if not tail and difflib.SequenceMatcher(None, parts[-1], other[-1]).ratio() >= 0.75:
        tail = 1  # ``relu_1`` / ``relu``: the same kind of node elsewhere
    return lead + tail


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A ``" Did you mean 'a', 'b'?"`` fragment, or ``""`` when nothing is close."""
    close = suggest(word, candidates)
    if not close:
        return ""
    return " Did you mean " + ", ".join(repr(c) for c in close) + "?"
