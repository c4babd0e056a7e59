"""Mixed precision as kohya runs it: base weights, LoRA weights, autocast and loss scaling."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..config import TrainConfig
from ..models.bundle import ModelBundle

HALF_TYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Precision:
    """dtypes of one run (kohya's prepare_dtype, full_fp16/full_bf16 and no_half_vae)."""

    autocast_dtype: torch.dtype | None  # None: no autocast (mixed_precision "no")
    weight_dtype: torch.dtype  # frozen UNet and text encoder weights
    vae_dtype: torch.dtype
    lora_dtype: torch.dtype  # fp32, or the half type with full_fp16 / full_bf16
    loss_scaling: bool  # fp16 needs a gradient scaler

    @classmethod
    def from_config(cls, config: TrainConfig) -> Precision:
        half = HALF_TYPES.get(config.mixed_precision)
        weight = half or torch.float32
        full = getattr(config, "full_fp16", False) or getattr(config, "full_bf16", False)
        vae = torch.float32 if getattr(config, "no_half_vae", False) else weight
        return cls(half, weight, vae, weight if full else torch.float32, half is torch.float16)

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)


def cast_base_weights(bundle: ModelBundle, precision: Precision) -> None:
    """Frozen weights in the run's dtype: UNet and text encoders, and the VAE (kohya's vae_dtype)."""
    bundle.unet.to(dtype=precision.weight_dtype)
    for text_encoder in bundle.text_encoders:
        text_encoder.to(dtype=precision.weight_dtype)
    bundle.vae.to(dtype=precision.vae_dtype)


def make_grad_scaler(precision: Precision, device: torch.device) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16; with fp16 LoRA weights (full_fp16) it must unscale fp16 gradients."""
    if not precision.loss_scaling:
        return None
    scaler = torch.amp.GradScaler(device.type)
    if precision.lora_dtype == torch.float16:
        allow_fp16_gradients(scaler)
    return scaler


def allow_fp16_gradients(scaler: torch.amp.GradScaler) -> None:
    """kohya's patch for full_fp16: torch refuses to unscale fp16 gradients unless told it may."""
    original = scaler._unscale_grads_

    def unscale_grads(optimizer, inv_scale, found_inf, allow_fp16):
        return original(optimizer, inv_scale, found_inf, True)

    scaler._unscale_grads_ = unscale_grads
