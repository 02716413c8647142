"""Toy models and a store stand-in for the tests of ``fxtract.viz``."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ConvNet(nn.Module):
    """Conv, batch norm, ReLU, a residual add, pooling and a head: channel maps of several sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.block(x)
        return self.head(x.mean(dim=(2, 3)))


class Poisoned(nn.Module):
    """Finite until ``poison`` (log of negatives), NaN from there on."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 6)
        self.fc2 = nn.Linear(6, 6)
        self.fc3 = nn.Linear(6, 3)

    def forward(self, x):
        x = self.fc1(x)
        x = self.fc2(x)
        y = torch.log(x - 100.0)  # NaN here
        return self.fc3(y)


class TinyAttention(nn.Module):
    """Tokens (B, T, C) and attention probabilities (B, H, T, T)."""

    def __init__(self, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, t, c)
        return self.proj(out)


class FakeArray:
    """A store key as ``DATASET_SPEC.md`` defines it: ``iter_batches`` streams; ``numpy()`` is refused."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.ragged = False
        self.requested: list[int] = []

    def __len__(self) -> int:
        return len(self._data)

    def iter_batches(self, batch_size: int = 1024):
        self.requested.append(batch_size)
        for start in range(0, len(self._data), batch_size):
            yield self._data[start : start + batch_size].copy()

    def numpy(self):  # the statistics must stream
        raise AssertionError("the whole key was loaded")


class FakeStore:
    """The reading side of ``fxtract.store.FeatureStore``: keys, items, labels, classes."""

    def __init__(self, arrays: dict[str, np.ndarray], labels=None, classes=None) -> None:
        self._arrays = {k: FakeArray(v) for k, v in arrays.items()}
        self.labels = labels
        self.classes = classes
        self.manifest = {"keys": list(arrays)}

    def keys(self) -> list[str]:
        return list(self._arrays)

    def __getitem__(self, key: str) -> FakeArray:
        return self._arrays[key]

    def __len__(self) -> int:
        return len(next(iter(self._arrays.values())))
