"""Toy models shared by the tests (one small class per behaviour under test)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SubModule(nn.Module):
    """torchvision's naming fixture: repeated ops and a module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x):
        x = x + 1
        x = x + 1
        x = self.relu(x)
        x = self.relu(x)
        return x


class RepeatModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.submodule = SubModule()
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.submodule(x)
        x = x + 1
        x = x + 1
        x = self.relu(x)
        x = self.relu(x)
        return x


REPEAT_MODEL_NODES = [
    "x",
    "submodule.add",
    "submodule.add_1",
    "submodule.relu",
    "submodule.relu_1",
    "add",
    "add_1",
    "relu",
    "relu_1",
]


class SuffixedNames(nn.Module):
    """Module names ending in _<int>, as in torchvision's ViT (``ln_1``, ``ln_2``)."""

    def __init__(self) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(4)
        self.ln_2 = nn.LayerNorm(4)

    def forward(self, x):
        return self.ln_2(self.ln_1(x))


class Collide(nn.Module):
    """A module ``relu_1`` beside a module ``relu`` that is called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.relu_1 = nn.Tanh()

    def forward(self, x):
        x = self.relu(x)
        x = self.relu(x)
        return self.relu_1(x)


class RegexNames(nn.Module):
    """Module names with characters special to regular expressions."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict({"conv(a)": nn.Linear(4, 4), "conv+b": nn.Linear(4, 4)})

    def forward(self, x):
        x = self.blocks["conv(a)"](x)
        x = self.blocks["conv(a)"](x)
        return self.blocks["conv+b"](x)


class Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return F.relu(self.fc(x)) * 2


class SharedCall(nn.Module):
    """A submodule called from its parent and from the top-level forward."""

    def __init__(self) -> None:
        super().__init__()
        self.block = Inner()

    def forward(self, x):
        x = self.block(x)
        x = self.block.fc(x)
        return self.block(x)


class TupleBlock(nn.Module):
    """Returns ``(a(x), b(x))``: torchvision's prefix resolves to ``b(x)`` alone."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x):
        return self.a(x), self.b(x)


class EarlierReturn(nn.Module):
    """Returns a value computed before its last op."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x)
        _ = torch.sigmoid(y)
        return y


class Containers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pair = TupleBlock()
        self.early = EarlierReturn()

    def forward(self, x):
        a, b = self.pair(x)
        return self.early(a + b)
