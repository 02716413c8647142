"""Tiny models and data for the distributed tests (also loaded by the CLI as ``FILE.py:tiny_conv``)."""

from __future__ import annotations

import os
import signal

import torch
from torch import nn


class TinyConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.relu(self.conv(x))
        return self.head(x.mean((2, 3)))


def tiny_conv() -> nn.Module:
    torch.manual_seed(0)
    return TinyConv()


def tiny_images(n: int = 23) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))


class KilledAt(torch.utils.data.Dataset):
    """``tiny_images``; reading sample ``FXTRACT_TEST_KILL_AT`` SIGKILLs the process (a crash mid-run)."""

    def __init__(self, n: int = 23) -> None:
        self.images = tiny_images(n)
        self.targets = [i % 2 for i in range(n)]  # labels without reading the samples

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        if os.environ.get("FXTRACT_TEST_KILL_AT") == str(i):
            os.kill(os.getpid(), signal.SIGKILL)
        return self.images[i]


class BadSample(KilledAt):
    """``tiny_images`` where sample ``bad`` cannot be read."""

    def __init__(self, n: int = 23, bad: int = 5) -> None:
        super().__init__(n)
        self.bad = bad

    def __getitem__(self, i: int) -> torch.Tensor:
        if i == self.bad:
            raise OSError(f"truncated file img{i}.jpg")
        return super().__getitem__(i)
