"""Toy models for the extraction tests (tiny: they run on 32 px inputs in milliseconds)."""

from __future__ import annotations

import time
from typing import Optional

import torch
from torch import nn


class TinyNet(nn.Module):
    """conv -> relu -> strided conv -> relu -> global pool -> linear: 3x32x32 -> 3 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 2)
        self.b = nn.Linear(4, 3)

    def forward(self, x):
        return self.a(x), {"b": self.b(x), "sum": self.a(x).sum(1, keepdim=True)}


class PairNet(nn.Module):
    """A submodule returning a tuple holding a dict: stored as sub-keys."""

    def __init__(self) -> None:
        super().__init__()
        self.pair = Pair()

    def forward(self, x):
        a, rest = self.pair(x)
        return a.sum() + rest["b"].sum()


class Tokens(nn.Module):
    """input_ids + attention_mask -> (batch, tokens, 5) embeddings: a Hugging Face-like call."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 5)
        self.mix = nn.Linear(5, 5)

    def forward(self, input_ids, attention_mask):
        return self.mix(self.embed(input_ids)) * attention_mask.unsqueeze(-1)


class SlowNet(nn.Module):
    """TinyNet that sleeps in forward (a run long enough to be killed in the middle), or raises
    KeyboardInterrupt (Ctrl-C) at its ``interrupt_at``-th call."""

    def __init__(self, delay: float = 0.0, interrupt_at: Optional[int] = None) -> None:
        super().__init__()
        self.net = TinyNet()
        self.delay = delay
        self.interrupt_at = interrupt_at
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        time.sleep(self.delay)
        return self.net(x)
