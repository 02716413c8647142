"""Toy models for the "export" strategy tests (one small class per behaviour under test)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Repeats(nn.Module):
    """Repeated ops at the top level, a container called twice, a leaf called once."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        self.act = nn.ReLU()

    def forward(self, x):
        x = x + 1
        x = x + 1
        x = self.block(x)
        x = self.block(x)
        return self.act(x) * 2


REPEATS_NODES = ["x", "add", "add_1", "block.0", "block.1", "block.0_1", "block.1_1", "act", "mul"]
REPEATS_CALLS = ["block", "block.0", "block.1", "block_1", "block.0_1", "block.1_1", "act"]


class Pair(nn.Module):
    """Returns a tuple; the second element is computed first."""

    def forward(self, x):
        b = x - 1
        a = x * 2
        return a, b


class TupleModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.pair = Pair()
        self.skip = nn.Identity()

    def forward(self, x):
        a, b = self.pair(self.proj(x))
        return self.skip(a) + b


class InPlace(nn.Module):
    """A leaf's output overwritten later by in-place ops (as resnet's bn1 by relu(inplace))."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.lin(x)
        v = y.view(-1)  # a view: writing through y changes v too
        y = self.act(y)
        y += 1
        return y, v


class BatchNormNet(nn.Module):
    """Batch norm statistics move in train mode; ``head`` runs after ``bn``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)
        self.bn_head = nn.BatchNorm1d(2)

    def forward(self, x):
        x = self.bn(self.conv(x)).mean((2, 3))
        return self.bn_head(self.head(x))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (C // self.heads) ** -0.5
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyDino(nn.Module):
    """A DINO-style ViT: ``interpolate_pos_encoding`` branches in Python on the input size.

    The position embedding is for ``img_size``; other sizes interpolate it. FX cannot trace
    the ``if`` (a Proxy has no truth value); torch.export resolves it for the example size.
    """

    def __init__(self, img_size: int = 16, patch: int = 8, dim: int = 16, depth: int = 2, heads: int = 2):
        super().__init__()
        self.patch = patch
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (img_size // patch) ** 2 + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def interpolate_pos_encoding(self, x, w, h):
        npatch = x.shape[1] - 1
        n = self.pos_embed.shape[1] - 1
        if npatch == n and w == h:
            return self.pos_embed
        class_pos = self.pos_embed[:, :1]
        patch_pos = self.pos_embed[:, 1:]
        dim = x.shape[-1]
        m = int(math.sqrt(n))
        patch_pos = patch_pos.reshape(1, m, m, dim).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=(w // self.patch, h // self.patch), mode="bicubic")
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((class_pos, patch_pos), dim=1)

    def forward(self, x):
        B, _, w, h = x.shape
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x, w, h)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 0]


class NoGrad(nn.Module):
    """A ``torch.no_grad()`` block in forward: export puts it in a subgraph, one per mode."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(4, 4)

    def forward(self, x):
        with torch.no_grad():
            y = self.drop(self.lin(x)) * torch.tensor(2.0)  # a tensor constant, too
        return self.out(y + x)


def tiny_bert():
    """A randomly initialised 2-layer BertModel (no download)."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=100,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    return BertModel(config).eval()


class Point(NamedTuple):
    p: torch.Tensor
    q: torch.Tensor


class _TupleNone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(x), None  # (hidden, attention weights) as HF attention blocks return


class _DictOut(nn.Module):
    def forward(self, x):
        return {"h": x * 2, "size": x.shape[-1]}


class _Named(nn.Module):
    def forward(self, x):
        return Point(x + 1, x - 1)


class Structured(nn.Module):
    """Module calls that return a tuple with None, a dict with an int, a namedtuple."""

    def __init__(self) -> None:
        super().__init__()
        self.a = _TupleNone()
        self.b = _DictOut()
        self.c = _Named()

    def forward(self, x):
        y, _ = self.a(x)
        point = self.c(self.b(y)["h"])
        return point.p * point.q


class Cache:
    """An object torch.export has no pytree for (as a Hugging Face DynamicCache)."""

    def __init__(self, t: torch.Tensor) -> None:
        self.t = t


class _Cached(nn.Module):
    def forward(self, x):
        return {"h": x + 1, "cache": Cache(x)}


class ReturnsObject(nn.Module):
    """A block and the model itself return an object that export cannot return."""

    def __init__(self) -> None:
        super().__init__()
        self.block = _Cached()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        out = self.block(x)
        return self.lin(out["h"]), out["cache"]
