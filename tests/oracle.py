"""Eager forward-hook oracle: what each module call really returned (cloned)."""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn
from torch.utils import _pytree as pytree

from fxtract._naming import UniqueNamer


def _clone(x):
    """A copy of every tensor in ``x``, containers of the same types (namedtuple, ModelOutput...)."""
    return pytree.tree_map_only(torch.Tensor, lambda t: t.detach().clone(), x)


def module_outputs(model: nn.Module, *args, **kwargs) -> dict[str, object]:
    """``{call name: output}`` for every submodule call, names as fxtract gives them (``P``, ``P_1``)."""
    namer = UniqueNamer([n for n, _ in model.named_modules()])
    calls: dict[str, list] = defaultdict(list)
    order: list[tuple[str, int]] = []
    handles = []
    for path, mod in model.named_modules():
        if not path:
            continue

        def hook(m, a, out, path=path):
            calls[path].append(_clone(out))

        def pre(m, a, path=path):
            order.append((path, len(order)))

        handles.append(mod.register_forward_hook(hook))
        handles.append(mod.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    out = {}
    seen: dict[str, int] = defaultdict(int)
    for path, _ in order:
        name = namer.claim(path, owns_base=True)
        out[name] = calls[path][seen[path]]
        seen[path] += 1
    return out


def assert_same(a, b, name):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), name
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), name
        for x, y in zip(a, b):
            assert_same(x, y, name)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), name
        for k in a:
            assert_same(a[k], b[k], f"{name}[{k}]")
    else:
        assert a == b, name
