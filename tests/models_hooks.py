"""Toy models for the "hooks" strategy tests (one small class per behaviour under test)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.fc(x))


class Nested(nn.Module):
    """A nested module called twice, a leaf called twice, and a module ``relu_1`` beside ``relu``."""

    def __init__(self) -> None:
        super().__init__()
        self.block = Block()
        self.relu = nn.ReLU()
        self.relu_1 = nn.Tanh()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.block(x)
        x = self.block(x - 1)
        x = self.relu(x)
        x = self.relu_1(x)
        x = self.relu(x + 1)
        return self.head(x)


NESTED_NAMES = [
    "block",
    "block.fc",
    "block.act",
    "block_1",
    "block.fc_1",
    "block.act_1",
    "relu",
    "relu_1",
    "relu_2",  # relu's 2nd call: `relu_1` is another module's path
    "head",
]


class DataDependent(nn.Module):
    """Python control flow on tensor values: FX cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Linear(4, 4)
        self.neg = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        if x.sum() > 0:
            x = self.pos(x)
        else:
            x = self.neg(x)
        return self.out(x)


class ShapeToInt(nn.Module):
    """``int(x.shape[0])`` drives a Python loop: FX cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        n = int(x.shape[0])
        rows = [self.fc(x[i]) for i in range(n)]
        return self.out(torch.stack(rows))


class ModeProbe(nn.Linear):
    """A Linear that records the training flag it ran with."""

    seen: list

    def forward(self, x):
        self.seen = [*getattr(self, "seen", []), self.training]
        return super().forward(x)


class TrainEval(nn.Module):
    """Module calls differ between train and eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = ModeProbe(4, 4)
        self.noise = nn.Dropout(0.5)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.fc(x)
        if self.training:
            x = self.noise(x)
        return self.head(x)


@dataclass
class Pair:
    a: torch.Tensor
    b: torch.Tensor


class Structured(nn.Module):
    """Returns a tuple, a dict and a dataclass."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        a, b = self.fc(x), self.fc(x) * 2
        if self.kind == "tuple":
            return a, (b, 3)
        if self.kind == "dict":
            return {"a": a, "b": [b]}
        return Pair(a, b)


class InPlaceAfter(nn.Module):
    """``part``'s outputs are modified in place after it returns."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.part = Structured(kind)
        self.last = nn.Linear(4, 4)

    def forward(self, x):
        out = self.part(x)
        if isinstance(out, tuple):
            a, b = out[0], out[1][0]
        elif isinstance(out, dict):
            a, b = out["a"], out["b"][0]
        else:
            a, b = out.a, out.b
        a.mul_(0)
        b.add_(100)
        return self.last(a + b)


class Swallow(nn.Module):
    """Catches every Exception around a submodule call (early stop must get through)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.after = nn.Linear(4, 4)

    def forward(self, x):
        try:
            x = self.fc(x)
        except Exception:
            x = x * 0
        return self.after(x)
