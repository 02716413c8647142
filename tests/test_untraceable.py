"""The fallback corpus: each model's activations equal an eager hook oracle, and the expected strategy is used."""

import warnings

import pytest
import torch

from fxtract import create_feature_extractor, get_graph_node_names

from . import models as M
from . import models_untraceable as U
from .models_hf import HF_MODELS, build_hf
from .oracle import assert_same, module_outputs


def check(model, nodes, inputs, strategy, *, pass_inputs=True):
    model.eval()
    args, kwargs = (inputs, {}) if isinstance(inputs, tuple) else ((), inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = create_feature_extractor(
            model, nodes, example_inputs=inputs if pass_inputs else None, suppress_diff_warning=True
        )
    assert strategy == ex.strategy
    ex.eval()
    oracle = module_outputs(model, *args, **kwargs)
    with torch.no_grad():
        out = ex(*args, **kwargs)
    for n in nodes:
        assert_same(oracle[n], out[n], n)
        assert type(out[n]) is type(oracle[n]), n  # a ModelOutput stays one
    return ex


def test_data_dependent_branch_uses_hooks():
    check(U.SumBranch(), ["a", "b", "c"], (torch.ones(2, 8),), "hooks")


def test_deep_int_uses_automatic_leaves():
    ex = check(M.DeepInt(), ["inner", "inner.0", "head"], (torch.randn(3, 4),), "fx")
    assert list(ex.auto_leaves) == ["inner.0"]


def test_dino_vit_uses_export():
    x = torch.randn(2, 3, 48, 32)
    check(U.TinyDino(), ["blocks.0", "blocks.1", "norm"], (x,), "export")


def test_dino_vit_without_inputs_uses_hooks():
    check(U.TinyDino(), ["blocks.1"], (torch.randn(2, 3, 32, 32),), "hooks", pass_inputs=False)


def test_hf_bert_tiny():
    model, inputs = U.build_real("bert_tiny")
    check(model, ["encoder", "encoder.layer.0", "encoder.layer.1.output"], inputs, "export")


def test_hf_gpt2_tiny():
    model, inputs = U.build_real("gpt2_tiny")
    ex = check(model, ["h.0.mlp", "h.1.attn.c_proj", "ln_f"], inputs, ANY_RUNTIME)
    assert ex.strategy in ("export", "hooks")


def test_hf_llama_tiny_exports_although_it_returns_a_cache():
    # LlamaModel returns a DynamicCache, which torch.export cannot return: fxtract drops it.
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
    )
    model = transformers.LlamaModel(cfg)
    check(model, ["layers.0", "layers.1.mlp", "norm"], {"input_ids": torch.randint(0, 100, (2, 7))}, "export")


def _plain(value):
    """Whether ``value`` holds only tensors and constants (no cache object to compare)."""
    leaves = torch.utils._pytree.tree_leaves(value)
    return all(isinstance(v, (torch.Tensor, int, float, bool, str, type(None))) for v in leaves)


@pytest.mark.parametrize("name", HF_MODELS)
def test_hf_zoo(name):
    # Three first-level modules and three deep ones, each against the hook oracle.
    pytest.importorskip("transformers")
    model, inputs = build_hf(name)
    calls = [n for n, v in module_outputs(model, **inputs).items() if _plain(v)]
    top = [n for n in calls if "." not in n][:3]
    deep = [n for n in calls if n.count(".") >= 2]
    nodes = list(dict.fromkeys(top + deep[:: max(1, len(deep) // 3)][:3]))
    # wav2vec2's data-dependent check runs in train mode only: its eval graph exports (#11.3)
    check(model, nodes, inputs, "export")


def _present(model, *paths):
    """The first of ``paths`` that names a submodule of ``model``."""
    modules = dict(model.named_modules())
    return next(p for p in paths if p in modules)


def test_hf_vit_and_clip_tiny():
    vit, pixels = U.build_real("vit_tiny")
    # transformers renamed the submodules across releases (4.x encoder.layer.0.output, 5.x layers.0.mlp)
    check(
        vit,
        [_present(vit, "encoder.layer.0.output", "layers.0.mlp"), "layernorm"],
        pixels,
        ANY_RUNTIME,
    )
    clip, pixels = U.build_real("clip_vision_tiny")
    check(
        clip,
        [
            _present(clip, "vision_model.encoder.layers.1.mlp", "encoder.layers.1.mlp"),
            _present(clip, "vision_model.post_layernorm", "post_layernorm"),
        ],
        pixels,
        ANY_RUNTIME,
    )


def test_fasterrcnn_uses_hooks():
    model, images = U.build_real("fasterrcnn_mobilenet_v3_large_320_fpn")
    check(model, ["backbone.body", "backbone.fpn", "rpn.head"], images, "hooks")


def test_raft_small_uses_export():
    model, images = U.build_real("raft_small")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    nodes = ["feature_encoder", "context_encoder", "update_block", "update_block_3"]
    check(model, nodes, images, "export")  # FX fails on its loop over flow updates
    pyramid = model.corr_block.corr_pyramid  # export did not leave fake tensors on the model
    assert all(type(t) is torch.Tensor for t in pyramid)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)


def test_get_graph_node_names_falls_back():
    with pytest.warns(UserWarning, match=r"fxtract used strategy='hooks'; earlier strategies failed: fx: "):
        names = get_graph_node_names(
            U.SumBranch(), example_inputs=torch.ones(2, 8), suppress_diff_warning=True
        )
    assert names[1] == ["a", "b", "c"]


class _AnyRuntime(str):
    """A strategy that runs the model (export or hooks), whichever succeeds first."""

    def __eq__(self, other):
        return other in ("export", "hooks")

    __hash__ = str.__hash__


ANY_RUNTIME = _AnyRuntime("export|hooks")


def test_feature_info_for_every_strategy():
    x = torch.randn(2, 3, 48, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_export = create_feature_extractor(U.TinyDino(), ["blocks.0"], example_inputs=x)
        by_hooks = create_feature_extractor(U.SumBranch(), ["c"], example_inputs=torch.ones(2, 8))
        by_leaves = create_feature_extractor(M.DeepInt(), ["inner"], example_inputs=torch.randn(3, 4))
    assert by_export.strategy == "export"
    assert by_export.feature_info == [
        {"name": "blocks.0", "num_chs": 32, "reduction": 8, "shape": (2, 25, 32), "key": "blocks.0"}
    ]
    assert by_hooks.strategy == "hooks"
    assert by_hooks.feature_info == [
        {"name": "c", "num_chs": 8, "reduction": None, "shape": (2, 8), "key": "c"}
    ]
    assert by_leaves.auto_leaves and by_leaves.feature_info[0]["shape"] == (3, 4)
