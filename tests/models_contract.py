"""Toy models every strategy (fx, export, hooks) can run: the contract test compares them."""

import torch
from torch import nn

from .models_hooks import Block, Nested


class Stages(nn.Module):
    """A ``ModuleList`` that ``forward`` iterates: ``stages`` itself is never called."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.stages = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


# name: (model factory, example input, module calls to extract, a glob, what the glob matches)
CONTRACT_MODELS = {
    "nested": (
        Nested,
        lambda: torch.randn(3, 4),
        ["block", "block_1", "block.fc_1", "relu", "relu_1", "relu_2", "head"],
        "re:relu(_[0-9]+)?",
        ["relu", "relu_1", "relu_2"],
    ),
    "stages": (
        Stages,
        lambda: torch.randn(3, 4),
        ["stem", "stages.0", "stages.1.act", "head"],
        "stages.*.fc",
        ["stages.0.fc", "stages.1.fc"],
    ),
}
