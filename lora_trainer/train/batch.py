"""One training batch: latents (encoded now or read from a cache), captions, loss weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..models.bundle import ModelBundle
from .conditioning import encode_latents


@dataclass
class Batch:
    latents: torch.Tensor  # scaled, on the training device
    captions: list[str]
    loss_weights: torch.Tensor  # per sample: 1, or prior_loss_weight for regularisation images
    extra: dict[str, Any] = field(default_factory=dict)  # per-architecture inputs (SDXL sizes...)


def make_batch(
    samples: list[dict], bundle: ModelBundle, generator: torch.Generator, device: torch.device
) -> Batch:
    """Collate dataset samples; samples carrying "latents" skip the VAE."""
    if "latents" in samples[0]:
        latents = torch.stack([s["latents"] for s in samples])
    else:
        latents = encode_latents(
            bundle, torch.stack([s["pixel_values"] for s in samples]), generator
        )
    weights = torch.tensor([float(s.get("loss_weight", 1.0)) for s in samples])
    return Batch(latents.to(device), [s["caption"] for s in samples], weights.to(device))
