"""The exceptions fxtract raises. Importing this module does not import torch."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, Optional

__all__ = [
    "FxtractError",
    "FxtractTypeError",
    "FxtractValueError",
    "NodeNotFoundError",
    "ReturnNodesError",
    "ShapeInferenceError",
    "StrategyError",
    "TraceError",
    "did_you_mean",
    "suggest",
    "summarize",
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
    """Symbolic tracing failed; the message names the module where and the remedies.

    Attributes:
        module_path: path of the innermost module whose code failed (``""``: the top level
            or unknown); the automatic-leaves fallback makes it a leaf.
        module_type: that module's class (``None`` when unknown).
        cause: the exception torch raised.
    """

    def __init__(
        self,
        message: str = "",
        *,
        module_path: str = "",
        module_type: Optional[type] = None,
        cause: Optional[BaseException] = None,
    ) -> None:
        super().__init__(message)
        self.module_path = module_path
        self.module_type = module_type
        self.cause = cause


class StrategyError(FxtractError, ValueError):
    """A strategy cannot do what was asked (a missing ``example_inputs``, a name at another granularity).

    Attributes:
        needs_inputs: the call would work with ``example_inputs`` (a strategy that runs the
            model was left); the CLI then retries with an input.
    """

    def __init__(self, message: str = "", *, needs_inputs: bool = False) -> None:
        super().__init__(message)
        self.needs_inputs = needs_inputs


class FxtractTypeError(FxtractError, TypeError):
    """An argument has the wrong type."""


class FxtractValueError(FxtractError, ValueError):
    """An argument has a bad value."""


class ShapeInferenceError(FxtractValueError):
    """Output shapes cannot be inferred on fake tensors (the message names the node or module call).

    Attributes:
        data_dependent: the code needs tensor values that fake tensors do not have (then
            strategy ``"auto"`` goes on to the next strategy); ``False``: a wrong input shape.
        reason: where and why, in one short line.
    """

    def __init__(self, message: str = "", *, data_dependent: bool = False, reason: str = "") -> None:
        super().__init__(message)
        self.data_dependent = data_dependent
        self.reason = reason


def summarize(e: BaseException) -> str:
    """``"TypeName: first line"`` of ``e``'s cause (or ``e``), at most 200 characters.

    Example:
        >>> summarize(TraceError("wrapper", cause=ValueError("bad\\nmore")))
        'ValueError: bad'
    """
    cause: Any = getattr(e, "cause", None) or e
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {text}"[:200]


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
