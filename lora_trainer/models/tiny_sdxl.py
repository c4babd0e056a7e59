"""A tiny, seeded SDXL-shaped model: two text encoders, size/crop conditioning, SDXL's block layout."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from .arch_configs import ModelConfigs
from .assets import load_clip_tokenizer, load_openclip_tokenizer, sd15_scheduler_config
from .bundle import ModelBundle, ModelSource
from .tiny import TINY_TEXT, TINY_VAE

TINY_SDXL_NAME = "builtin:tiny-sdxl"
TIME_EMBED_DIM = 8  # SDXL: 256 per size/crop number

TINY_SDXL_TEXT1 = dict(TINY_TEXT)
TINY_SDXL_TEXT2 = dict(TINY_TEXT, hidden_act="gelu", projection_dim=32)
# SDXL's levels (no attention at the first), 2 ResNets per down level, linear projections,
# transformer depth 2 at the deepest level and in the middle (SDXL: 1, 2, 10).
TINY_SDXL_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 2,
    "transformer_layers_per_block": [1, 1, 2],
    "attention_head_dim": [2, 4, 4],
    "cross_attention_dim": TINY_SDXL_TEXT1["hidden_size"] + TINY_SDXL_TEXT2["hidden_size"],
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": TIME_EMBED_DIM,
    # pooled text embedding + 6 size/crop numbers, each embedded in TIME_EMBED_DIM
    "projection_class_embeddings_input_dim": TINY_SDXL_TEXT2["projection_dim"] + 6 * TIME_EMBED_DIM,
    "norm_num_groups": 32,
}
TINY_SDXL_VAE = dict(TINY_VAE, scaling_factor=0.13025)


def tiny_sdxl_configs() -> ModelConfigs:
    """The tiny SDXL architecture, e.g. to convert its SGM-layout tensors."""
    texts = [CLIPTextConfig(**TINY_SDXL_TEXT1), CLIPTextConfig(**TINY_SDXL_TEXT2)]
    return ModelConfigs(
        "sdxl", dict(TINY_SDXL_UNET), dict(TINY_SDXL_VAE), texts, sd15_scheduler_config()
    )


def build_tiny_sdxl(seed: int = 0) -> ModelBundle:
    """UNet with added time conditioning, CLIP-L-like and bigG-like text encoders, VAE; from `seed`."""
    configs = tiny_sdxl_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**configs.unet)
        vae = AutoencoderKL(**configs.vae)
        text_encoder_1 = CLIPTextModel(configs.text_encoders[0])
        text_encoder_2 = CLIPTextModelWithProjection(configs.text_encoders[1])
    for module in (unet, vae, text_encoder_1, text_encoder_2):
        module.requires_grad_(False).eval()
    return ModelBundle(
        arch="sdxl",
        unet=unet,
        text_encoders=[text_encoder_1, text_encoder_2],
        tokenizers=[load_clip_tokenizer(), load_openclip_tokenizer()],
        vae=vae,
        scheduler_config=configs.scheduler,
        source=ModelSource(name=TINY_SDXL_NAME),
        scale_factor=configs.scale_factor,
    )
