"""Full-size SD1.5 / SD2 / SDXL modules with no weights allocated, for key and shape tests."""

from __future__ import annotations

from accelerate import init_empty_weights
from diffusers import UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from lora_trainer.models import assets
from lora_trainer.models.bundle import ModelBundle, ModelSource


def empty_bundle(arch: str) -> ModelBundle:
    """The architecture's real-size UNet and text encoders on the meta device."""
    with init_empty_weights():
        if arch == "sd1":
            unet = UNet2DConditionModel(**assets.sd15_unet_config())
            encoders = [CLIPTextModel(assets.sd15_text_encoder_config())]
        elif arch == "sd2":
            unet = UNet2DConditionModel(**assets.sd2_unet_config())
            encoders = [CLIPTextModel(assets.sd2_text_encoder_config())]
        else:
            unet = UNet2DConditionModel(**assets.sdxl_unet_config())
            encoders = [
                CLIPTextModel(assets.sd15_text_encoder_config()),
                CLIPTextModelWithProjection(assets.sdxl_text_encoder_2_config()),
            ]
    tokenizers = [None] * len(encoders)
    return ModelBundle(arch, unet, encoders, tokenizers, None, {}, ModelSource("empty"))
