"""Noise, timesteps and the loss target of denoising-diffusion training."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDPMScheduler


class NoiseSchedule:
    """The DDPM forward process of SD training (scaled_linear 0.00085..0.012, 1000 steps)."""

    def __init__(self, scheduler_config: dict[str, Any], prediction_type: str = "epsilon") -> None:
        self.scheduler = DDPMScheduler.from_config(scheduler_config)
        self.prediction_type = prediction_type
        self.num_timesteps = self.scheduler.config.num_train_timesteps

    def sample_timesteps(
        self, batch: int, generator: torch.Generator, device: torch.device
    ) -> torch.Tensor:
        """Uniform integer timesteps in [0, num_timesteps)."""
        t = torch.randint(
            0, self.num_timesteps, (batch,), generator=generator, device=generator.device
        )
        return t.to(device)

    def add_noise(
        self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        return self.scheduler.add_noise(latents, noise, timesteps)

    def target(
        self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """What the UNet should predict: the noise (epsilon) or the velocity (v)."""
        if self.prediction_type == "v_prediction":
            return self.scheduler.get_velocity(latents, noise, timesteps)
        return noise
