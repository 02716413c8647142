"""torchvision model zoos for parity and oracle tests (weights=None, built offline)."""

from __future__ import annotations

import torchvision

# Representative CI subset: residual, inverted residual, dense, transformer, shifted windows,
# inception-style branches, squeeze-excitation, and maxvit's many-node graph.
CLASSIFICATION_CI = [
    "resnet18",
    "mobilenet_v3_small",
    "densenet121",
    "vit_b_16",
    "swin_t",
    "googlenet",
    "efficientnet_b0",
    "regnet_y_400mf",
    "convnext_tiny",
]


def classification_all() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def video_all() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models.video))


def build(name: str, **kwargs):
    kw = {"weights": None, **kwargs}
    if name in ("googlenet", "inception_v3"):
        kw.setdefault("init_weights", False)
        kw.setdefault("aux_logits", False) if name == "googlenet" else None
    return torchvision.models.get_model(name, **kw)
