"""Fake and meta tensors: where a model lives, stand-ins, shapes of outputs, what fakes cannot do.

Shared by the strategies' describe views: no activation is allocated and the model's own
tensors are never read or written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any, Optional

import torch
from torch import nn
from torch.utils import _pytree as pytree

__all__ = [
    "dtype_name",
    "has_meta",
    "model_placement",
    "needs_values",
    "param_count",
    "qualified_name",
    "quiet_fake_tensor_log",
    "shapes_dtypes",
    "tensors",
    "to_meta",
]


def model_placement(model: nn.Module) -> tuple[bool, torch.device]:
    """Whether any parameter or buffer is on ``meta``, and the model's device."""
    tensors = [*model.parameters(), *model.buffers()]
    on_meta = any(t.is_meta for t in tensors)
    device = next((t.device for t in tensors if not t.is_meta), torch.device("cpu"))
    return on_meta, device


def to_meta(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_meta else torch.empty_like(t, device="meta")


def has_meta(value: Any) -> bool:
    return any(isinstance(t, torch.Tensor) and t.is_meta for t in pytree.tree_leaves(value))


def _dim(d: Any) -> Any:
    """A size as an ``int``; a size no example fixes (export's ``u0``) as its symbol's name."""
    try:
        return int(d)
    except Exception:  # an unbacked SymInt
        return str(d)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in ``value``, in pytree order; unregistered dataclasses are opened too."""
    out: list[torch.Tensor] = []
    for leaf in pytree.tree_leaves(value):
        if isinstance(leaf, torch.Tensor):
            out.append(leaf)
        elif dataclasses.is_dataclass(leaf) and not isinstance(leaf, type):
            out.extend(tensors([getattr(leaf, f.name) for f in dataclasses.fields(leaf)]))
    return out


def shapes_dtypes(value: Any) -> tuple[tuple[tuple[int, ...], ...], tuple[str, ...]]:
    found = tensors(value)
    return (
        tuple(tuple(_dim(d) for d in t.shape) for t in found),
        tuple(dtype_name(t.dtype) for t in found),
    )


def needs_values(e: BaseException) -> bool:
    """Whether ``e`` (or its cause) says the code needs tensor values that fake or meta tensors lack.

    ``if x.sum() > 0``, ``x.item()``, ``x.tolist()``, ``x.numpy()``, ``nonzero`` and ops
    without a fake kernel raise these; a wrong input shape does not.
    """
    from torch._subclasses import fake_tensor

    kinds: tuple[type, ...] = (
        fake_tensor.DataDependentOutputException,
        fake_tensor.DynamicOutputShapeException,
        fake_tensor.UnsupportedOperatorException,
        fake_tensor.UnsupportedFakeTensorException,
    )
    with contextlib.suppress(ImportError):
        from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

        kinds = (*kinds, GuardOnDataDependentSymNode)
    texts = (
        "data-dependent",
        "not supported for tensor subclasses",
        "cannot be called on meta tensors",
        "cannot access data pointer",
        "cannot access storage",
    )
    seen: set[int] = set()
    err: Optional[BaseException] = e
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, kinds) or any(t in str(err).lower() for t in texts):
            return True
        err = err.__cause__ or err.__context__ or getattr(err, "cause", None)
    return False


@contextlib.contextmanager
def quiet_fake_tensor_log(*names: str) -> Iterator[None]:
    """FakeTensorMode logs a traceback for each failing op; our error says it in one line.

    ``names``: more loggers to silence (export's symbolic shapes log a failing graph).
    """
    loggers = [logging.getLogger(n) for n in ("torch._subclasses.fake_tensor", *names)]
    saved = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        yield
    finally:
        for lg, disabled in zip(loggers, saved):
            lg.disabled = disabled


def param_count(model: nn.Module, path: str) -> int:
    """Number of parameters of the submodule at ``path`` (0 if there is none)."""
    try:
        module = model.get_submodule(path)
    except AttributeError:
        return 0
    return sum(p.numel() for p in module.parameters())


def qualified_name(target: Any) -> str:
    name = getattr(target, "__name__", None)
    if name is None:
        return repr(target)
    module = getattr(target, "__module__", None)
    if module in (None, "builtins"):
        return name
    if module == "_operator":
        module = "operator"
    return f"{module}.{name}"
