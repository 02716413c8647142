"""Small models for the README's command-line examples (``fxtract nodes examples/models.py:build_model``)."""

from __future__ import annotations

from torch import nn


class SmallNet(nn.Module):
    """Two conv blocks and a classifier; ``width`` and ``num_classes`` are builder arguments."""

    def __init__(self, width: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.block(self.stem(x))
        return self.head(x.mean((2, 3)))


def build_model(width: int = 8, num_classes: int = 10) -> SmallNet:
    """``fxtract nodes examples/models.py:build_model --model-arg width=16``."""
    return SmallNet(width, num_classes)
