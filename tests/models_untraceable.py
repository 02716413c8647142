"""Models FX cannot trace whole (the fallback corpus)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn


class SumBranch(nn.Module):
    """Data-dependent control flow: only hooks can follow it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.c = nn.Linear(8, 8)

    def forward(self, x):
        h = self.a(x)
        if h.abs().sum() > 0:  # always true, but FX cannot know
            h = self.b(h)
        return self.c(h)


class TinyDino(nn.Module):
    """A DINO-style ViT: ``interpolate_pos_encoding`` branches on the input size."""

    def __init__(self, dim: int = 32, patch: int = 8, grid: int = 4) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(
            [nn.TransformerEncoderLayer(dim, 2, dim * 2, dropout=0.0, batch_first=True) for _ in range(2)]
        )
        self.norm = nn.LayerNorm(dim)

    def interpolate_pos_encoding(self, x, h, w):
        n = x.shape[1] - 1
        big_n = self.pos_embed.shape[1] - 1
        if n == big_n and w == h:
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        side = int(math.sqrt(big_n))
        patch_pos = patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=(h // 8, w // 8), mode="bicubic", align_corners=False)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, cls_pos.shape[-1])
        return torch.cat((cls_pos, patch_pos), dim=1)

    def forward(self, x):
        b, _, h, w = x.shape
        t = self.patch_embed(x).flatten(2).transpose(1, 2)
        t = torch.cat((self.cls_token.expand(b, -1, -1), t), dim=1)
        t = t + self.interpolate_pos_encoding(t, h, w)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)


# The corpus's real models (torchvision, Hugging Face tiny configs).
REAL_MODELS = [
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "raft_small",
    "bert_tiny",
    "gpt2_tiny",
    "vit_tiny",
    "clip_vision_tiny",
]


def build_real(name):
    """One of the corpus's real models, random weights: ``(model, inputs)``."""
    import torchvision

    torch.manual_seed(0)
    if name == "fasterrcnn_mobilenet_v3_large_320_fpn":
        model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None
        )
        return model, ([torch.rand(3, 160, 160)],)
    if name == "raft_small":  # RAFT needs >= 128 px
        return torchvision.models.optical_flow.raft_small(weights=None), (
            torch.rand(1, 3, 128, 128),
            torch.rand(1, 3, 128, 128),
        )
    transformers = pytest.importorskip("transformers")
    ids = {"input_ids": torch.randint(0, 100, (2, 7))}
    pixels = {"pixel_values": torch.randn(2, 3, 32, 32)}
    vision = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    vision.update(image_size=32, patch_size=8)
    if name == "bert_tiny":
        cfg = transformers.BertConfig(
            vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
        )
        return transformers.BertModel(cfg), {**ids, "attention_mask": torch.ones(2, 7, dtype=torch.long)}
    if name == "gpt2_tiny":
        cfg = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=16)
        return transformers.GPT2Model(cfg), ids
    if name == "vit_tiny":
        return transformers.ViTModel(transformers.ViTConfig(**vision)), pixels
    return transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**vision)), pixels
