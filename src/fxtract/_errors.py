"""The exceptions fxtract raises. Importing this module does not import torch."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "FxtractError",
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


class FxtractTypeError(FxtractError, TypeError):
    """An argument has the wrong type."""


class FxtractValueError(FxtractError, ValueError):
    """An argument has a bad value."""


def suggest(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` candidates close to ``word``, best first ("did you mean")."""
    pool = list(dict.fromkeys(candidates))
    close = difflib.get_close_matches(word, pool, n=n, cutoff=0.6)
    if len(close) < n:
        # Names are dotted paths: also offer names that share the longest leading path.
        parts = word.split(".")
        for depth in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:depth]) + "."
            extra = [c for c in pool if c.startswith(prefix) and c not in close]
            if extra:
                close.extend(extra[: n - len(close)])
                break
    return close[:n]


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A ``" Did you mean 'a', 'b'?"`` fragment, or ``""`` when nothing is close."""
    close = suggest(word, candidates)
    if not close:
        return ""
    return " Did you mean " + ", ".join(repr(c) for c in close) + "?"
