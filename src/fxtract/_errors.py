"""The exceptions fxtract raises. Importing this module does not import torch."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, Optional

__all__ = [
    "ForwardError",
    "FxtractError",
    "NotScriptableError",
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


class ForwardError(FxtractError, RuntimeError):
    """The model's own forward failed on the ``example_inputs`` fxtract ran it with."""


class NoModeRunsError(StrategyError, ForwardError):
    """Strategy hooks: the model's forward fails on ``example_inputs`` in train and in eval mode.

    Both a :class:`StrategyError` (no mode can be listed, #11.3) and a :class:`ForwardError`
    (the model's own forward failed, #12): callers of either keep catching it.
    """


class NotScriptableError(FxtractError, RuntimeError):
    """``torch.jit.script`` of an extractor whose code TorchScript cannot compile (strategies hooks, export)."""


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

    def __init__(
        self, message: str = "", *, data_dependent: bool = False, reason: str = "", bad_inputs: bool = False
    ) -> None:
        super().__init__(message)
        self.data_dependent = data_dependent
        self.reason = reason
        self.bad_inputs = bad_inputs  # the model's forward rejects example_inputs (not best-effort)


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
