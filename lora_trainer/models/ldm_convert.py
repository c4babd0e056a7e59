"""LDM-layout state dict (checkpoint file or the WebUI's live model) -> diffusers modules.

The tensors are not copied: diffusers' single-file helpers only rename keys (and take
views), and the modules are built with empty parameters and then given the caller's
tensors with `assign=True`. Training never writes to them (they stay frozen).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel

from ..errors import ModelError

SD1_TEXT_KEY = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
SD2_TEXT_KEY = "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"
SDXL_KEY = "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"
UNET_KEY = "model.diffusion_model.input_blocks.0.0.weight"

# keys a model may legitimately lack or carry: buffers that some transformers versions
# register as non-persistent, and that are recomputed at construction anyway
IGNORABLE_KEYS = ("position_ids",)


def detect_arch(state_dict: dict[str, Any]) -> str:
    """'sd1', 'sd2' or 'sdxl' from the keys; ModelError for anything else."""
    if SDXL_KEY in state_dict:
        return "sdxl"
    if SD2_TEXT_KEY in state_dict:
        return "sd2"
    if SD1_TEXT_KEY in state_dict and UNET_KEY in state_dict:
        return "sd1"
    if UNET_KEY not in state_dict:
        raise ModelError(
            "this is not a Stable Diffusion checkpoint in the original (LDM) layout",
            fix="use a full SD1.x checkpoint (.safetensors or .ckpt) as the WebUI loads it",
        )
    raise ModelError(
        "this checkpoint has a UNet but no text encoder that this version knows",
        fix="use a full SD1.x checkpoint, not a UNet-only or pruned-of-text-encoder file",
    )


def build_with_tensors(
    factory: Callable[[], nn.Module], tensors: dict[str, torch.Tensor], what: str
) -> nn.Module:
    """Construct with empty parameters, then adopt `tensors` as the parameters themselves."""
    with init_empty_weights(include_buffers=False):
        module = factory()
    missing, unexpected = module.load_state_dict(tensors, strict=False, assign=True)
    missing = [k for k in missing if not k.endswith(IGNORABLE_KEYS)]
    unexpected = [k for k in unexpected if not k.endswith(IGNORABLE_KEYS)]
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise ModelError(
            f"the {what} weights do not fit the expected architecture "
            f"({len(missing)} missing, {len(unexpected)} unexpected, e.g. {example})",
            fix="check that the checkpoint is a complete SD1.x model",
        )
    still_empty = [n for n, p in module.named_parameters() if p.is_meta]
    if still_empty:
        raise ModelError(
            f"the {what} weights lack {still_empty[0]}", fix="use a complete checkpoint"
        )
    return module.requires_grad_(False).eval()


def sd1_unet(state_dict: dict[str, torch.Tensor], config: dict[str, Any]) -> UNet2DConditionModel:
    converted = convert_ldm_unet_checkpoint(state_dict, config)
    return build_with_tensors(lambda: UNet2DConditionModel(**config), converted, "UNet")


def sd1_vae(state_dict: dict[str, torch.Tensor], config: dict[str, Any]) -> AutoencoderKL:
    converted = convert_ldm_vae_checkpoint(state_dict, config)
    return build_with_tensors(lambda: AutoencoderKL(**config), converted, "VAE")


def sd1_text_encoder(state_dict: dict[str, torch.Tensor], config: CLIPTextConfig) -> CLIPTextModel:
    converted = convert_ldm_clip_checkpoint(state_dict)
    return build_with_tensors(lambda: CLIPTextModel(config), converted, "text encoder")


def unet_heads_from_ldm(unet_params: dict[str, Any]) -> list[int] | int:
    """Attention heads per level: diffusers returns None when the LDM config gives head channels."""
    if unet_params.get("num_heads", -1) not in (-1, None):
        return unet_params["num_heads"]
    head_channels = unet_params["num_head_channels"]
    return [unet_params["model_channels"] * m // head_channels for m in unet_params["channel_mult"]]
