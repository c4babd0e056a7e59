"""A tiny, seeded SD1-shaped model for the demo and tests (same block structure as SD1.5)."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from .arch_configs import ModelConfigs
from .assets import load_clip_tokenizer, sd15_scheduler_config
from .bundle import ModelBundle, ModelSource

TINY_NAME = "builtin:tiny-sd1"

# Widths cut down from SD1.5; levels, attention placement and layer counts per level kept,
# so kohya's block indices and every LoRA target kind exist (conv proj_in/proj_out too).
TINY_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 2,
    "attention_head_dim": [4, 8],
    "cross_attention_dim": 32,
    "norm_num_groups": 32,
}
TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [32, 64, 64, 64],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 64,
}
TINY_TEXT = {
    "vocab_size": 49408,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 32,
}


def tiny_sd1_configs() -> ModelConfigs:
    """The tiny SD1 architecture, e.g. to convert its LDM-layout tensors."""
    return ModelConfigs(
        "sd1",
        dict(TINY_UNET),
        dict(TINY_VAE),
        [CLIPTextConfig(**TINY_TEXT)],
        sd15_scheduler_config(),
    )


def build_tiny_sd1(seed: int = 0) -> ModelBundle:
    """UNet with cross-attention, CLIP text encoder and 8x VAE, initialised from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**TINY_UNET)
        vae = AutoencoderKL(**TINY_VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(**TINY_TEXT))
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False).eval()
    return ModelBundle(
        arch="sd1",
        unet=unet,
        text_encoders=[text_encoder],
        tokenizers=[load_clip_tokenizer()],
        vae=vae,
        scheduler_config=sd15_scheduler_config(),
        source=ModelSource(name=TINY_NAME),
    )
