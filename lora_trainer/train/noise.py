"""Noise schedule, timesteps and the loss target of denoising-diffusion training."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDPMScheduler

from ..config import TrainConfig
from ..models.bundle import ModelBundle


class NoiseSchedule:
    """The DDPM forward process of SD training (scaled_linear 0.00085..0.012, 1000 steps)."""

    def __init__(
        self,
        scheduler_config: dict[str, Any],
        prediction_type: str = "epsilon",
        *,
        zero_terminal_snr: bool = False,
        min_timestep: int | None = None,
        max_timestep: int | None = None,
    ) -> None:
        self.scheduler = DDPMScheduler.from_config(scheduler_config)
        self.prediction_type = prediction_type
        self.num_timesteps = self.scheduler.config.num_train_timesteps
        # kohya computes the SNR table (min_snr_gamma, debiased estimation, v-pred scaling)
        # *before* it rescales the betas for zero terminal SNR, so those weights keep the
        # original schedule's finite SNR at the last timestep; we do the same.
        self.all_snr = snr_table(self.scheduler.alphas_cumprod)
        if zero_terminal_snr:
            rescale_zero_terminal_snr(self.scheduler)
        self.min_timestep = 0 if min_timestep is None else min_timestep
        self.max_timestep = self.num_timesteps if max_timestep is None else max_timestep

    @property
    def v_prediction(self) -> bool:
        return self.prediction_type == "v_prediction"

    def sample_timesteps(
        self, batch: int, generator: torch.Generator, device: torch.device
    ) -> torch.Tensor:
        """Uniform integer timesteps in [min_timestep, max_timestep) (kohya: the max itself if equal)."""
        low, high = self.min_timestep, self.max_timestep
        if low < high:
            t = torch.randint(low, high, (batch,), generator=generator, device=generator.device)
        else:
            t = torch.full((batch,), high, dtype=torch.long)
        return t.to(device)

    def add_noise(
        self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        return self.scheduler.add_noise(latents, noise, timesteps)

    def target(
        self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """What the UNet should predict: the noise (epsilon) or the velocity (v)."""
        if self.v_prediction:
            return self.scheduler.get_velocity(latents, noise, timesteps)
        return noise

    def snr(self, timesteps: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) of each timestep (kohya's all_snr)."""
        return self.all_snr[timesteps.cpu()].to(timesteps.device)


def snr_table(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """(sqrt(alpha_bar) / sqrt(1 - alpha_bar))^2 for every timestep."""
    return (alphas_cumprod.sqrt() / (1.0 - alphas_cumprod).sqrt()) ** 2


def zero_terminal_snr_betas(betas: torch.Tensor) -> torch.Tensor:
    """Rescale betas so the last timestep is pure noise (Lin et al. 2023, arXiv 2305.08891)."""
    root = (1 - betas).cumprod(0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    # shift so the last value is 0, then scale so the first keeps its value
    root = (root - last) * (first / (first - last))
    alphas_cumprod = root**2
    alphas = torch.cat([alphas_cumprod[:1], alphas_cumprod[1:] / alphas_cumprod[:-1]])
    return 1 - alphas


def rescale_zero_terminal_snr(scheduler: DDPMScheduler) -> None:
    """kohya's zero_terminal_snr: new betas, alphas and alphas_cumprod on the scheduler."""
    scheduler.betas = zero_terminal_snr_betas(scheduler.betas)
    scheduler.alphas = 1.0 - scheduler.betas
    scheduler.alphas_cumprod = torch.cumprod(scheduler.alphas, dim=0)


def training_noise_schedule(bundle: ModelBundle, config: TrainConfig) -> NoiseSchedule:
    """The run's schedule: the model's prediction type (or v_parameterization), kohya's options."""
    v_pred = (
        getattr(config, "v_parameterization", False) or bundle.prediction_type == "v_prediction"
    )
    return NoiseSchedule(
        bundle.scheduler_config,
        "v_prediction" if v_pred else "epsilon",
        zero_terminal_snr=config.zero_terminal_snr,
        min_timestep=config.min_timestep,
        max_timestep=config.max_timestep,
    )


def noise_warnings(config: TrainConfig, schedule: NoiseSchedule) -> list[str]:
    """kohya's advice that does not stop training."""
    if config.zero_terminal_snr and not schedule.v_prediction:
        return [
            "zero_terminal_snr without v-prediction: the last timestep has no signal left to "
            "predict noise from; kohya expects v_parameterization with it"
        ]
    return []
