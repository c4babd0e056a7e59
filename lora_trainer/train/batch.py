"""One training batch: latents (encoded now or from a cache), captions, loss weights, per-sample extras.

A sample (a dict from the dataset) carries one of:
- "pixel_values": [3, H, W] in [-1, 1]; the VAE encodes the batch now;
- "latent_mean" and "latent_std": a cached VAE posterior; a latent is drawn from it now,
  with the same random numbers the VAE path would use, so both give the same loss;
- "latents": a latent already drawn and scaled, used as it is.
and may carry "loss_weight" (prior_loss_weight for regularization images), the SDXL size
extras "original_size" (h, w), "crop_top_left" (top, left), "target_size" (h, w), and
"conditioning": the cached text-encoder output for its caption (batch of one).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from ..models.bundle import ModelBundle
from .conditioning import SIZE_EXTRAS, Conditioning, encode_latents


@dataclass
class Batch:
    latents: torch.Tensor  # scaled, on the training device
    captions: list[str]
    loss_weights: torch.Tensor  # per sample: 1, or prior_loss_weight for regularisation images
    extra: dict[str, Any] = field(default_factory=dict)  # SIZE_EXTRAS as LongTensor [B, 2]
    conditioning: Conditioning | None = None  # cached text-encoder outputs: skip the encoder


def make_batch(
    samples: list[dict], bundle: ModelBundle, generator: torch.Generator, device: torch.device
) -> Batch:
    """Collate dataset samples; cached latents and cached conditioning skip the VAE and text encoder."""
    latents = batch_latents(samples, bundle, generator)
    weights = torch.tensor([float(s.get("loss_weight", 1.0)) for s in samples])
    conditioning = None
    if all("conditioning" in s for s in samples):
        conditioning = concat_conditioning([s["conditioning"] for s in samples], device)
    return Batch(
        latents.to(device),
        [s["caption"] for s in samples],
        weights.to(device),
        collate_extras(samples, device),
        conditioning,
    )


def batch_latents(
    samples: list[dict], bundle: ModelBundle, generator: torch.Generator
) -> torch.Tensor:
    """The batch's scaled latents, from whichever form the samples carry."""
    kinds = {_latent_kind(s) for s in samples}
    if len(kinds) != 1:
        raise ValueError(f"a batch mixes latent forms: {sorted(kinds)}")
    kind = kinds.pop()
    if kind == "latents":
        return torch.stack([s["latents"] for s in samples])
    if kind == "moments":
        mean = torch.stack([s["latent_mean"] for s in samples])
        std = torch.stack([s["latent_std"] for s in samples])
        return sample_posterior(bundle, mean, std, generator)
    return encode_latents(bundle, torch.stack([s["pixel_values"] for s in samples]), generator)


def sample_posterior(
    bundle: ModelBundle, mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """A scaled latent drawn from a cached posterior exactly as encode_latents draws it."""
    vae = bundle.vae
    mean = mean.to(device=vae.device, dtype=vae.dtype)
    std = std.to(device=vae.device, dtype=vae.dtype)
    noise = torch.randn(mean.shape, generator=generator, device=generator.device)
    return (mean + std * noise.to(mean.device, mean.dtype)) * bundle.scale_factor


def _latent_kind(sample: dict) -> str:
    if "latents" in sample:
        return "latents"
    if "latent_mean" in sample:
        return "moments"
    return "pixels"


def collate_extras(samples: list[dict], device: torch.device) -> dict[str, torch.Tensor]:
    """Per-sample size extras as LongTensor [B, 2] (kohya's original_sizes_hw, crop_top_lefts, target_sizes_hw)."""
    return {
        name: torch.tensor([list(s[name]) for s in samples], dtype=torch.long, device=device)
        for name in SIZE_EXTRAS
        if all(name in s for s in samples)
    }


def concat_conditioning(parts: list[Conditioning], device: torch.device) -> Conditioning:
    """Cached single-sample conditionings joined along the batch dimension, on `device`."""
    values = {}
    for f in dataclasses.fields(parts[0]):
        items = [getattr(p, f.name) for p in parts]
        values[f.name] = _concat(items, device)
    return type(parts[0])(**values)


def _concat(items: list[Any], device: torch.device) -> Any:
    first = items[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(items).to(device)
    if isinstance(first, dict):
        return {k: _concat([item[k] for item in items], device) for k in first}
    return first  # None, or a setting shared by the whole batch
