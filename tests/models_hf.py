"""Tiny Hugging Face transformers models (random weights, built offline from configs)."""

from __future__ import annotations

from typing import Any, Callable

import torch

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
SEQ2SEQ = {
    "vocab_size": 100,
    "d_model": 32,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "decoder_start_token_id": 1,
}


def _ids() -> torch.Tensor:
    return torch.randint(3, 99, (2, 9))


def _image() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32)


def _zoo(T: Any) -> dict[str, tuple[Callable[[], torch.nn.Module], Callable[[], dict[str, Any]]]]:
    """``{name: (build the model, make its inputs)}``; ``T`` is the transformers module."""
    decoder = {"vocab_size": 100, "num_key_value_heads": 1, **SMALL}
    t5 = {"vocab_size": 100, "d_model": 32, "d_kv": 16, "d_ff": 64, "num_layers": 2, "num_heads": 2}
    return {
        "llama": (lambda: T.LlamaModel(T.LlamaConfig(**decoder)), lambda: {"input_ids": _ids()}),
        "mistral": (lambda: T.MistralModel(T.MistralConfig(**decoder)), lambda: {"input_ids": _ids()}),
        "qwen2": (lambda: T.Qwen2Model(T.Qwen2Config(**decoder)), lambda: {"input_ids": _ids()}),
        "roberta": (
            lambda: T.RobertaModel(T.RobertaConfig(vocab_size=100, **SMALL)),
            lambda: {"input_ids": _ids(), "attention_mask": torch.ones(2, 9, dtype=torch.long)},
        ),
        "distilbert": (
            lambda: T.DistilBertModel(
                T.DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64)
            ),
            lambda: {"input_ids": _ids()},
        ),
        "t5_encoder": (lambda: T.T5EncoderModel(T.T5Config(**t5)), lambda: {"input_ids": _ids()}),
        "t5": (
            lambda: T.T5Model(T.T5Config(**t5)),
            lambda: {"input_ids": _ids(), "decoder_input_ids": _ids()},
        ),
        "bart": (lambda: T.BartModel(T.BartConfig(**SEQ2SEQ)), lambda: {"input_ids": _ids()}),
        "vit": (
            lambda: T.ViTModel(T.ViTConfig(image_size=32, patch_size=8, **SMALL)),
            lambda: {"pixel_values": _image()},
        ),
        "swin": (
            lambda: T.SwinModel(
                T.SwinConfig(
                    image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4
                )
            ),
            lambda: {"pixel_values": _image()},
        ),
        "convnext": (
            lambda: T.ConvNextModel(T.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)),
            lambda: {"pixel_values": _image()},
        ),
        "resnet": (
            lambda: T.ResNetModel(T.ResNetConfig(hidden_sizes=[8, 16], depths=[1, 1], embedding_size=8)),
            lambda: {"pixel_values": _image()},
        ),
        "wav2vec2": (
            lambda: T.Wav2Vec2Model(
                T.Wav2Vec2Config(
                    **SMALL,
                    conv_dim=(8, 8),
                    conv_stride=(5, 2),
                    conv_kernel=(10, 3),
                    num_conv_pos_embeddings=8,
                    num_conv_pos_embedding_groups=2,
                )
            ),
            lambda: {"input_values": torch.randn(2, 400)},
        ),
        "whisper_encoder": (
            lambda: (
                T.WhisperModel(T.WhisperConfig(num_mel_bins=8, max_source_positions=16, **SEQ2SEQ)).encoder
            ),
            lambda: {"input_features": torch.randn(2, 8, 32)},
        ),
        "clip_text": (
            lambda: T.CLIPTextModel(T.CLIPTextConfig(vocab_size=100, max_position_embeddings=16, **SMALL)),
            lambda: {"input_ids": _ids()},
        ),
    }


HF_MODELS = [
    "llama",
    "mistral",
    "qwen2",
    "roberta",
    "distilbert",
    "t5_encoder",
    "t5",
    "bart",
    "vit",
    "swin",
    "convnext",
    "resnet",
    "wav2vec2",
    "whisper_encoder",
    "clip_text",
]


def build_hf(name: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model (eval mode) and its example inputs."""
    import transformers

    build, inputs = _zoo(transformers)[name]
    torch.manual_seed(0)
    return build().eval(), inputs()
