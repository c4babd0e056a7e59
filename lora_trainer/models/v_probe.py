"""Tell an SD2 768-v checkpoint from a 512 one by its weights, as the WebUI does on load."""

from __future__ import annotations

import torch
from torch import nn

# The WebUI (modules/sd_models_config.py, is_using_v_parameterization_for_sd2) runs the
# UNet once on a flat grey latent at the last timestep with a flat context: an epsilon
# model returns roughly the noise-free input's complement, a v model a strongly negative
# mean. We run the same input through the same weights, so both answer alike.
PROBE_VALUE = 0.5
PROBE_TIMESTEP = 999
PROBE_THRESHOLD = -1.0


@torch.no_grad()
def probe_is_v_prediction(unet: nn.Module) -> bool | None:
    """True for a v-prediction UNet, False for epsilon; None when the probe cannot run here."""
    param = next(unet.parameters())
    if param.is_meta:
        return None
    latents = torch.full((1, unet.config.in_channels, 8, 8), PROBE_VALUE, dtype=param.dtype)
    context = torch.full((1, 2, unet.config.cross_attention_dim), PROBE_VALUE, dtype=param.dtype)
    timestep = torch.tensor([PROBE_TIMESTEP], device=param.device)
    try:
        out = unet(latents.to(param.device), timestep, context.to(param.device)).sample
    except RuntimeError:  # e.g. half-precision kernels missing on this device
        return None
    value = (out.float() - latents.to(out.device).float()).mean().item()
    if value != value:  # NaN: no answer
        return None
    return value < PROBE_THRESHOLD
