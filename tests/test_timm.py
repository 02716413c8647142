"""timm models without timm's own FX leaf registrations: fxtract traces them (or falls back)."""

import warnings

import pytest
import torch

from fxtract import create_feature_extractor

from .oracle import assert_same, module_outputs

timm = pytest.importorskip("timm")

CI = ["resnet18", "vit_tiny_patch16_224", "convnext_atto", "mobilevit_xxs", "swin_tiny_patch4_window7_224"]
SWEEP = [
    "resnet18",
    "resnet50d",
    "resnext26ts",
    "seresnet18",
    "regnety_002",
    "efficientnet_b0",
    "mobilenetv3_small_050",
    "mobilevit_xxs",
    "mobilevitv2_050",
    "ghostnet_050",
    "mixnet_s",
    "densenet121",
    "dla34",
    "dpn68",
    "hrnet_w18_small",
    "cspresnet50",
    "convnext_atto",
    "convnextv2_atto",
    "vit_tiny_patch16_224",
    "deit_tiny_patch16_224",
    "beit_base_patch16_224",
    "eva02_tiny_patch14_224",
    "swin_tiny_patch4_window7_224",
    "swinv2_cr_tiny_ns_224",
    "levit_128s",
    "coat_lite_tiny",
    "crossvit_tiny_240",
    "maxvit_rmlp_nano_rw_256",
    "poolformer_s12",
    "efficientformer_l1",
    "edgenext_xx_small",
    "tiny_vit_5m_224",
    "fastvit_t8",
    "repvit_m1",
    "nest_tiny",
]


def _check(name):
    model = timm.create_model(name, pretrained=False).eval()
    size = model.pretrained_cfg.get("input_size", (3, 224, 224))
    x = torch.randn(1, *size)
    oracle = module_outputs(model, x)
    # The modules timm itself offers as features (what users ask for).
    top = [f["module"] for f in model.feature_info if f["module"] in oracle][-4:]
    top = top or [n for n in oracle if "." not in n][-4:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = create_feature_extractor(model, top, example_inputs=(x,), suppress_diff_warning=True)
    ex.eval()
    with torch.no_grad():
        out = ex(x)
    for n in top:
        assert_same(oracle[n], out[n], f"{name}:{n}")
    return ex.strategy


@pytest.mark.parametrize("name", CI)
def test_timm_ci(name):
    assert _check(name) in ("fx", "export", "hooks")


@pytest.mark.slow
@pytest.mark.parametrize("name", SWEEP)
def test_timm_sweep(name):
    try:
        timm.create_model(name, pretrained=False)
    except Exception:
        pytest.skip(f"{name} is not in this timm")
    _check(name)
