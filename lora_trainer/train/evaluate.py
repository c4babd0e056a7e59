"""Loss on a fixed batch: a noise-free way to see whether training helped."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..models.bundle import ModelBundle
from .conditioning import SIZE_EXTRAS, PromptOptions, encode_conditioning, encode_latents
from .noise import NoiseSchedule


@torch.no_grad()
def fixed_batch_loss(
    bundle: ModelBundle, dataset: Dataset, samples: int = 8, seed: int = 0
) -> float:
    """Mean denoising loss over the first `samples` items with noise and timesteps fixed by `seed`.

    The training loss jumps with every random timestep; on the same noised batch the
    model before and after training can be compared directly.
    """
    gen = torch.Generator().manual_seed(seed)
    items = [dataset[i] for i in range(min(samples, len(dataset)))]
    device = next(bundle.unet.parameters()).device
    latents = encode_latents(bundle, torch.stack([s["pixel_values"] for s in items]), gen).to(
        device
    )
    noise = torch.randn(latents.shape, generator=gen).to(device)
    schedule = NoiseSchedule(bundle.scheduler_config, bundle.prediction_type)
    timesteps = schedule.sample_timesteps(len(items), gen, device)
    # SDXL's size conditioning: the samples' own sizes, else the latents' size
    extra = {n: [s[n] for s in items] for n in SIZE_EXTRAS if all(n in s for s in items)}
    options = PromptOptions(resolution=(latents.shape[-1] * 8, latents.shape[-2] * 8))
    cond = encode_conditioning(bundle, [s["caption"] for s in items], extra, device, options)
    noisy = schedule.add_noise(latents, noise, timesteps)
    added = cond.added_cond_kwargs
    pred = bundle.unet(noisy, timesteps, cond.context, added_cond_kwargs=added).sample
    return F.mse_loss(pred.float(), schedule.target(latents, noise, timesteps).float()).item()
