"""A tiny, seeded SD2-shaped model: linear projections, open_clip-style text encoder, v-prediction."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from .arch_configs import ModelConfigs
from .assets import load_openclip_tokenizer, sd15_scheduler_config
from .bundle import ModelBundle, ModelSource
from .tiny import TINY_TEXT, TINY_UNET, TINY_VAE

TINY_SD2_NAME = "builtin:tiny-sd2"

# SD1's tiny UNet with SD2's differences: Linear proj_in/proj_out, and a text encoder
# that is open_clip's tower minus its last block (gelu, pads with id 0).
TINY_SD2_UNET = dict(TINY_UNET, use_linear_projection=True)
TINY_SD2_TEXT = dict(TINY_TEXT, hidden_act="gelu")


def tiny_sd2_configs() -> ModelConfigs:
    """The tiny SD2 architecture, e.g. to convert its LDM-layout tensors."""
    scheduler = dict(sd15_scheduler_config(), prediction_type="v_prediction")
    return ModelConfigs(
        "sd2", dict(TINY_SD2_UNET), dict(TINY_VAE), [CLIPTextConfig(**TINY_SD2_TEXT)], scheduler
    )


def build_tiny_sd2(seed: int = 0) -> ModelBundle:
    """UNet, CLIP-style text encoder and VAE initialised from `seed`; trained for v-prediction."""
    configs = tiny_sd2_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**configs.unet)
        vae = AutoencoderKL(**configs.vae)
        text_encoder = CLIPTextModel(configs.text_encoders[0])
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False).eval()
    return ModelBundle(
        arch="sd2",
        unet=unet,
        text_encoders=[text_encoder],
        tokenizers=[load_openclip_tokenizer()],
        vae=vae,
        scheduler_config=configs.scheduler,
        source=ModelSource(name=TINY_SD2_NAME),
        scale_factor=configs.scale_factor,
        prediction_type=configs.prediction_type,
    )
