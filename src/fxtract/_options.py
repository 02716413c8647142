"""The one copy of fxtract's option vocabularies (torch-free: the CLI's ``--help`` uses them)."""

from __future__ import annotations

from collections.abc import Sequence

from ._errors import FxtractValueError

__all__ = ["DESCRIBE_MODES", "MODES", "NAMINGS", "STRATEGIES", "check_choice"]

# "auto" runs the chain fx -> automatic leaves -> export -> hooks (see fxtract._strategies).
STRATEGIES = ("auto", "fx", "export", "hooks")
# The two modes every strategy traces: each has its own graph.
MODES = ("train", "eval")
# describe() can also show the union of both graphs.
DESCRIBE_MODES = ("train", "eval", "both")
NAMINGS = ("fxtract", "torchvision")


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    """Raise :class:`FxtractValueError` unless ``value`` is one of ``choices``.

    Example:
        >>> check_choice("strategy", "hooks", STRATEGIES)
        >>> check_choice("strategy", "jit", STRATEGIES)
        Traceback (most recent call last):
        ...
        fxtract._errors.FxtractValueError: strategy must be one of ('auto', 'fx', 'export', 'hooks'), got 'jit'.
    """
    if value not in choices:
        raise FxtractValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")
