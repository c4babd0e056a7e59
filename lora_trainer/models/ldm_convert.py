"""LDM/SGM-layout tensors -> diffusers/transformers modules that use the caller's tensors.

The tensors are not copied: diffusers' single-file helpers only rename keys (and take
views), open_clip's fused attention is split into views, and the modules are built with
empty parameters and then given the caller's tensors with `assign=True`. Training never
writes to them (they stay frozen).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from ..errors import ModelError
from .ldm_keys import UNET_PREFIX, VAE_PREFIX
from .open_clip_convert import convert_open_clip

# buffers that some transformers versions register as non-persistent and that are
# recomputed at construction anyway; checkpoints may carry broken copies of them
IGNORABLE_KEYS = ("position_ids",)
SIZE_FIX = (
    "the standard SD1.x, SD2.x and SDXL sizes are known; for an SD1.x model of other sizes "
    "put its original .yaml config beside the checkpoint (same name, .yaml)"
)


def build_with_tensors(
    factory: Callable[[], nn.Module], tensors: dict[str, torch.Tensor], what: str
) -> nn.Module:
    """Construct with empty parameters, then adopt `tensors` as the parameters themselves."""
    with init_empty_weights(include_buffers=False):
        module = factory()
    try:
        missing, unexpected = module.load_state_dict(tensors, strict=False, assign=True)
    except RuntimeError as exc:  # size mismatches: a model of another size than the config
        first = str(exc).split("\n\t", 2)[1] if "\n\t" in str(exc) else str(exc)
        raise ModelError(
            f"the {what} weights do not have the sizes of this architecture ({first.strip()})",
            fix=SIZE_FIX,
        ) from None
    missing = [k for k in missing if not k.endswith(IGNORABLE_KEYS)]
    unexpected = [k for k in unexpected if not k.endswith(IGNORABLE_KEYS)]
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise ModelError(
            f"the {what} weights do not fit the expected architecture "
            f"({len(missing)} missing, {len(unexpected)} unexpected, e.g. {example})",
            fix="check that the checkpoint is complete and of the detected model family",
        )
    return module.requires_grad_(False).eval()


def unet_from_ldm(part: dict[str, Any], config: dict[str, Any]) -> UNet2DConditionModel:
    """The diffusers UNet from `model.diffusion_model.*` tensors (prefix removed)."""
    # diffusers' converter wants the prefixed keys; it takes them off again by itself
    converted = convert_ldm_unet_checkpoint({UNET_PREFIX + k: v for k, v in part.items()}, config)
    _check_all_used(part, converted, "UNet")
    return build_with_tensors(lambda: UNet2DConditionModel(**config), converted, "UNet")


def vae_from_ldm(part: dict[str, Any], config: dict[str, Any]) -> AutoencoderKL:
    """The diffusers VAE from `first_stage_model.*` tensors (prefix removed)."""
    converted = convert_ldm_vae_checkpoint({VAE_PREFIX + k: v for k, v in part.items()}, config)
    _check_all_used(part, converted, "VAE")
    return build_with_tensors(lambda: AutoencoderKL(**config), converted, "VAE")


def clip_from_ldm(part: dict[str, Any], config: CLIPTextConfig) -> CLIPTextModel:
    """SD1's / SDXL's first text encoder: already transformers names below the prefix."""
    tensors = {k: v for k, v in part.items() if not k.endswith(IGNORABLE_KEYS)}
    return build_with_tensors(lambda: CLIPTextModel(config), tensors, "text encoder")


def open_clip_from_ldm(
    part: dict[str, Any], config: CLIPTextConfig, with_projection: bool
) -> tuple[nn.Module, list[str]]:
    """SD2's / SDXL's open_clip text tower; also returns the keys it leaves out on purpose."""
    converted = convert_open_clip(part, config.num_hidden_layers, with_projection)
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    module = build_with_tensors(lambda: cls(config), converted.tensors, "text encoder")
    return module, converted.unused


def _check_all_used(part: dict[str, Any], converted: dict[str, Any], what: str) -> None:
    # diffusers' converters rename one key to one key and silently skip names they do
    # not know; a count mismatch means some weights of the checkpoint would be dropped
    if len(converted) != len(part):
        raise ModelError(
            f"{len(part) - len(converted)} of the checkpoint's {what} weights have names "
            "this architecture does not use",
            fix="check that the checkpoint is a standard SD1.x, SD2.x or SDXL base model",
        )


def unet_heads_from_ldm(unet_params: dict[str, Any]) -> list[int] | int:
    """Attention heads per level: diffusers returns None when the LDM config gives head channels."""
    if unet_params.get("num_heads", -1) not in (-1, None):
        return unet_params["num_heads"]
    head_channels = unet_params["num_head_channels"]
    return [unet_params["model_channels"] * m // head_channels for m in unet_params["channel_mult"]]
