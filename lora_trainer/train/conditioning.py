"""Text and image inputs of the UNet: prompt embeddings and VAE latents."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.bundle import ModelBundle


def tokenize(bundle: ModelBundle, captions: list[str], device: torch.device) -> torch.Tensor:
    """Token ids padded to the tokenizer's 77 positions (longer captions are cut, as in kohya)."""
    tokenizer = bundle.tokenizer
    ids = tokenizer(
        captions,
        padding="max_length",
        truncation=True,
        max_length=tokenizer.model_max_length,
        return_tensors="pt",
    ).input_ids
    return ids.to(device)


def encode_prompts(bundle: ModelBundle, captions: list[str], device: torch.device) -> torch.Tensor:
    """SD1 conditioning: the text encoder's last hidden state."""
    ids = tokenize(bundle, captions, device)
    return bundle.text_encoder(ids, return_dict=True).last_hidden_state


@dataclass
class Conditioning:
    """What the UNet is conditioned on besides the noisy latents and the timestep."""

    context: torch.Tensor  # encoder_hidden_states
    added_cond_kwargs: dict[str, torch.Tensor] | None = None  # SDXL: text_embeds, time_ids


def encode_conditioning(
    bundle: ModelBundle, captions: list[str], extra: dict, device: torch.device
) -> Conditioning:
    """The UNet's conditioning for a batch of captions (and per-sample extras)."""
    return Conditioning(encode_prompts(bundle, captions, device))


@torch.no_grad()
def encode_latents(
    bundle: ModelBundle, pixels: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Sample latents from the VAE posterior and scale them like the model expects."""
    vae = bundle.vae
    pixels = pixels.to(device=vae.device, dtype=vae.dtype)
    dist = vae.encode(pixels).latent_dist
    noise = torch.randn(dist.mean.shape, generator=generator, device=generator.device)
    latents = dist.mean + dist.std * noise.to(dist.mean.device, dist.mean.dtype)
    return latents * bundle.scale_factor
