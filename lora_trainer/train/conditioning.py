"""Text and image inputs of the UNet: prompt embeddings (SD1, SD2, SDXL) and VAE latents.

What each family conditions on, as kohya trains it:
- SD1/SD2: the text encoder's last hidden state (SD2's encoder already ends at open_clip's
  penultimate block), or with clip_skip = k the k-th state from the end through the
  final layer norm.
- SDXL: both encoders' penultimate hidden states (no final layer norm) side by side, the
  second encoder's pooled, projected EOS state, and per sample the original size, the
  crop's top-left corner and the target size (`added_cond_kwargs`). clip_skip does not
  apply (kohya warns and ignores it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..models.bundle import DEFAULT_RESOLUTIONS, ModelBundle
from .token_chunks import join_windows, token_windows

# per-sample SDXL extras: (height, width), (top, left), (height, width)
SIZE_EXTRAS = ("original_size", "crop_top_left", "target_size")


@dataclass(frozen=True)
class PromptOptions:
    """How captions become conditioning: kohya's clip_skip and max_token_length, SDXL's default size."""

    clip_skip: int | None = None
    max_token_length: int | None = None  # None (75), 150 or 225 tokens between BOS and EOS
    resolution: tuple[int, int] | None = None  # (width, height) when a batch has no size extras

    @classmethod
    def from_config(cls, config: Any) -> PromptOptions:
        """The options of a TrainConfig (the training resolution is SDXL's default size)."""
        return cls(config.clip_skip, config.max_token_length, tuple(config.resolution_wh))


@dataclass
class Conditioning:
    """What the UNet is conditioned on besides the noisy latents and the timestep."""

    context: torch.Tensor  # encoder_hidden_states
    added_cond_kwargs: dict[str, torch.Tensor] | None = None  # SDXL: text_embeds, time_ids


def encode_conditioning(
    bundle: ModelBundle,
    captions: list[str],
    extra: dict[str, Any] | None,
    device: torch.device,
    options: PromptOptions | None = None,
) -> Conditioning:
    """The UNet's conditioning for a batch of captions and their per-sample extras (SDXL sizes)."""
    options = options or PromptOptions()
    cond = encode_text(bundle, captions, device, options)
    return add_size_conditioning(bundle, cond, extra, len(captions), options)


def encode_text(
    bundle: ModelBundle, captions: list[str], device: torch.device, options: PromptOptions
) -> Conditioning:
    """The text part only (SDXL: without time_ids), e.g. to cache it per caption."""
    if bundle.is_sdxl:
        return _encode_sdxl(bundle, captions, device, options.max_token_length)
    ids = token_windows(bundle.tokenizer, captions, options.max_token_length)
    hidden = last_states(bundle.text_encoder, _flat(ids, device), options.clip_skip)
    return Conditioning(join_windows(hidden, len(captions)))


def encode_prompts(
    bundle: ModelBundle,
    captions: list[str],
    device: torch.device,
    options: PromptOptions | None = None,
) -> torch.Tensor:
    """The context (encoder_hidden_states) alone; SDXL's UNet also needs encode_conditioning's extras."""
    return encode_text(bundle, captions, device, options or PromptOptions()).context


def add_size_conditioning(
    bundle: ModelBundle,
    cond: Conditioning,
    extra: dict[str, Any] | None,
    batch: int,
    options: PromptOptions,
) -> Conditioning:
    """SDXL: add `time_ids` from the batch's size extras (the training resolution where absent)."""
    if not bundle.is_sdxl:
        return cond
    width, height = options.resolution or (DEFAULT_RESOLUTIONS["sdxl"],) * 2
    device = cond.context.device
    time_ids = size_time_ids(extra or {}, batch, (height, width)).to(device)
    added = dict(cond.added_cond_kwargs or {}, time_ids=time_ids)
    return Conditioning(cond.context, added)


def size_time_ids(extra: dict[str, Any], batch: int, default_hw: tuple[int, int]) -> torch.Tensor:
    """[batch, 6]: original (h, w), crop (top, left), target (h, w), in diffusers' and SGM's order."""
    defaults = {"original_size": default_hw, "crop_top_left": (0, 0), "target_size": default_hw}
    columns = []
    for name in SIZE_EXTRAS:
        value = extra.get(name)
        pairs = torch.as_tensor(defaults[name] if value is None else value).reshape(-1, 2)
        if pairs.shape[0] == 1:
            pairs = pairs.expand(batch, 2)
        elif pairs.shape[0] != batch:
            raise ValueError(f"{name} has {pairs.shape[0]} entries for a batch of {batch}")
        columns.append(pairs.to(torch.float32))
    return torch.cat(columns, dim=1)


def _flat(ids: torch.Tensor, device: torch.device) -> torch.Tensor:
    return ids.reshape(-1, ids.shape[-1]).to(device)


def last_states(text_encoder: nn.Module, ids: torch.Tensor, clip_skip: int | None) -> torch.Tensor:
    """SD1/SD2: last hidden state, or the clip_skip-th from the end through the final layer norm."""
    if not clip_skip or clip_skip == 1:
        return text_encoder(ids, return_dict=True).last_hidden_state
    out = text_encoder(ids, output_hidden_states=True, return_dict=True)
    return text_encoder.text_model.final_layer_norm(out.hidden_states[-clip_skip])


def _encode_sdxl(
    bundle: ModelBundle, captions: list[str], device: torch.device, max_token_length: int | None
) -> Conditioning:
    tok1, tok2 = bundle.tokenizers
    ids1 = token_windows(tok1, captions, max_token_length)
    ids2 = token_windows(tok2, captions, max_token_length)
    return encode_sdxl_windows(bundle, ids1, ids2, device)


def encode_sdxl_windows(
    bundle: ModelBundle, ids1: torch.Tensor, ids2: torch.Tensor, device: torch.device
) -> Conditioning:
    """SDXL's context and pooled output from both tokenizers' [batch, windows, 77] ids."""
    first, second = bundle.text_encoders
    batch = ids1.shape[0]
    ids2 = _flat(ids2, device)
    out1 = first(_flat(ids1, device), output_hidden_states=True, return_dict=True)
    out2 = second(ids2, output_hidden_states=True, return_dict=True)
    context = torch.cat(
        [join_windows(out1.hidden_states[-2], batch), join_windows(out2.hidden_states[-2], batch)],
        dim=-1,
    )
    pooled = _pooled(second, out2.last_hidden_state, ids2, bundle.tokenizers[1].eos_token_id)
    pooled = pooled.reshape(batch, -1, pooled.shape[-1])[:, 0]  # kohya: the first window's
    return Conditioning(context, {"text_embeds": pooled})


def _pooled(
    text_encoder: nn.Module, last: torch.Tensor, ids: torch.Tensor, eos_id: int
) -> torch.Tensor:
    """The projected state at each sequence's first EOS (kohya's pooling; not argmax of ids)."""
    index = (ids == eos_id).int().argmax(dim=1).to(last.device)
    state = last[torch.arange(last.shape[0], device=last.device), index]
    projection = text_encoder.text_projection
    return projection(state.to(projection.weight.dtype)).to(last.dtype)


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
