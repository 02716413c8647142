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


def _state_of(value):
    """What ``snapshot`` keeps of one attribute value: tensors by identity and bytes."""
    if isinstance(value, torch.Tensor):
        t = value.detach()
        data = None if t.device.type == "meta" else t.clone()
        return ("tensor", id(value), type(value), t.dtype, t.shape, t.stride(), value.requires_grad, data)
    if isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in value):
        return (type(value), id(value), [_state_of(v) for v in value])  # LSTM _flat_weights
    if isinstance(value, dict) and not isinstance(value, nn.Module):
        return (type(value), id(value), {k: _state_of(v) for k, v in value.items()})
    if isinstance(value, (int, float, bool, str, type(None), torch.dtype, torch.device)):
        return ("value", value)
    return ("object", id(value), type(value))


def snapshot(model: nn.Module) -> dict:
    """A deep record of ``model``: every module's attributes (tensors by identity and value,
    parameters, buffers, LSTM flat weights, hooks, flags), to compare with :func:`assert_unchanged`."""
    out = {}
    for path, m in model.named_modules(remove_duplicate=False):
        out[path] = {
            "__class__": type(m),
            **{k: _state_of(v) for k, v in vars(m).items() if k != "_modules"},
            "_modules": {k: id(v) for k, v in m._modules.items()},
        }
    return out


def _diff(a, b, where):
    if type(a) is not type(b):
        return [f"{where}: {a!r:.80} -> {b!r:.80}"]
    if isinstance(a, torch.Tensor):
        same = a.shape == b.shape and a.dtype == b.dtype
        same = same and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
        return [] if same else [f"{where}: tensor values changed"]
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(map(str, a.keys() ^ b.keys()))} added or removed"]
        return [d for k in a for d in _diff(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} -> {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r:.80} -> {b!r:.80}"]


def assert_unchanged(model: nn.Module, before: dict) -> None:
    """Fail, naming every difference, if ``model`` differs from its :func:`snapshot` ``before``."""
    diffs = _diff(before, snapshot(model), type(model).__name__)
    assert not diffs, "the model was changed: " + "; ".join(diffs[:10])
