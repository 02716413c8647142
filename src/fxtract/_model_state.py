"""Leaving the user's model as it was: attributes, train/eval flags, buffers, parameters.

Every strategy runs the model's code (tracing, exporting, fake or real forwards); these
context managers and snapshots put back whatever that code changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Callable

import torch
from torch import fx, nn

__all__ = ["ModelSnapshot", "buffers_restored", "stand_ins", "training_mode"]


class ModelSnapshot:
    """Shallow copy of every module's attributes, restored after tracing.

    Python code in ``forward`` may assign attributes (``self.cache = x``); FX runs it on
    Proxies, which would leave Proxies in the user's model. The contents of list and dict
    attributes that hold tensors are kept too (``nn.LSTM`` rebuilds ``_flat_weights`` from
    the stand-in parameters of a fake forward). Values are compared by identity: ``==`` on a list of
    tensors is ambiguous.
    """

    _DICTS = ("_parameters", "_buffers", "_modules")

    def __init__(self, root: nn.Module) -> None:
        self._saved = []
        for m in root.modules():
            inner = {k: dict(m.__dict__[k]) for k in self._DICTS if k in m.__dict__}
            attrs = dict(m.__dict__)
            contents = {
                k: (v, list(v) if isinstance(v, list) else dict(v))
                for k, v in attrs.items()
                if k not in self._DICTS and type(v) in (list, dict)
            }
            self._saved.append((m, attrs, inner, contents))

    def restore(self) -> None:
        for m, attrs, inner, contents in self._saved:
            if not _same_items(m.__dict__, attrs):
                m.__dict__.clear()
                m.__dict__.update(attrs)
            for k, v in inner.items():
                d = m.__dict__[k]
                if not _same_items(d, v):
                    d.clear()
                    d.update(v)
            for obj, items in contents.values():
                if not _holds_tensor(obj) and not _holds_tensor(items):
                    continue  # a record the forward keeps on purpose (a list of strings)
                if isinstance(obj, list) and (
                    len(obj) != len(items) or any(a is not b for a, b in zip(obj, items))
                ):
                    obj[:] = items
                elif isinstance(obj, dict) and not _same_items(obj, items):
                    obj.clear()
                    obj.update(items)


def _holds_tensor(c: Any) -> bool:
    return any(isinstance(v, (torch.Tensor, fx.Proxy)) for v in (c.values() if isinstance(c, dict) else c))


def _same_items(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k] is b[k] for k in a)


@contextlib.contextmanager
def training_mode(model: nn.Module, mode: bool) -> Iterator[None]:
    """Put ``model`` in train/eval mode, then restore every submodule's own flag.

    Never relies on the return value of ``model.train()`` (some models return None).
    """
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.train(mode)
        yield
    finally:
        for m, flag in saved:
            m.training = flag


@contextlib.contextmanager
def buffers_restored(model: nn.Module) -> Iterator[None]:
    """Undo what a forward does to the model's buffers (BatchNorm's running stats in train mode)."""
    saved = [
        (module, name, buf, buf.clone())
        for module in model.modules()
        for name, buf in module._buffers.items()
        if buf is not None
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for module, name, buf, value in saved:
                buf.copy_(value)
                module._buffers[name] = buf  # a forward may have re-assigned the attribute


@contextlib.contextmanager
def stand_ins(model: nn.Module, convert: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Put ``convert(t)`` in place of every parameter and buffer ``t`` of ``model``, then restore.

    Each module once (a module with two paths, a block shared by two stages, is one
    module) and each tensor converted once (tied weights stay tied). Unlike
    ``torch.func.functional_call``, which swaps a shared module once per path and restores
    it in the wrong order, this always puts the user's own tensors back.
    """
    slots = [
        (store, key, t)
        for m in model.modules()
        for store in (m._parameters, m._buffers)
        for key, t in store.items()
        if t is not None
    ]
    converted: dict[int, torch.Tensor] = {}
    try:
        for store, key, t in slots:
            if id(t) not in converted:
                converted[id(t)] = convert(t)
            store[key] = converted[id(t)]  # type: ignore[assignment]
        yield
    finally:
        for store, key, t in slots:
            store[key] = t
