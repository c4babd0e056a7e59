"""kohya's noise options: noise offset (adaptive, random strength), multires noise, ip noise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import TrainConfig


@dataclass(frozen=True)
class NoiseOptions:
    """The options of kohya's get_noise_noisy_latents_and_timesteps (None/0 = off)."""

    noise_offset: float | None = None
    noise_offset_random_strength: bool = False
    adaptive_noise_scale: float | None = None
    multires_noise_iterations: int | None = None
    multires_noise_discount: float = 0.3
    ip_noise_gamma: float | None = None
    ip_noise_gamma_random_strength: bool = False

    @classmethod
    def from_config(cls, config: TrainConfig) -> NoiseOptions:
        names = cls.__dataclass_fields__
        return cls(**{name: getattr(config, name) for name in names})


@dataclass
class SampledNoise:
    noise: torch.Tensor  # what the UNet learns to predict (epsilon, or inside the v target)
    input_noise: torch.Tensor  # what is added to the latents (noise plus the ip perturbation)


class NoiseSampler:
    """Draws the training noise for a batch of latents, from one seeded generator."""

    def __init__(self, options: NoiseOptions, generator: torch.Generator) -> None:
        self.options = options
        self.generator = generator

    def sample(self, latents: torch.Tensor) -> SampledNoise:
        """kohya's order: Gaussian noise, + offset, -> multires; the ip perturbation last."""
        o = self.options
        noise = self._randn(latents.shape, latents)
        if o.noise_offset:
            strength = o.noise_offset
            if o.noise_offset_random_strength:
                strength = self._rand(latents) * o.noise_offset
            noise = offset_noise(latents, noise, strength, o.adaptive_noise_scale, self._randn)
        if o.multires_noise_iterations:
            noise = pyramid_noise(
                noise, o.multires_noise_iterations, o.multires_noise_discount, self._randn,
                self._rand,
            )  # fmt: skip
        input_noise = noise
        if o.ip_noise_gamma:
            gamma = o.ip_noise_gamma
            if o.ip_noise_gamma_random_strength:
                gamma = self._rand(latents) * o.ip_noise_gamma
            input_noise = noise + gamma * self._randn(latents.shape, latents)
        return SampledNoise(noise, input_noise)

    def _randn(self, shape: torch.Size | tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        out = torch.randn(shape, generator=self.generator, device=self.generator.device)
        return out.to(like.device, like.dtype)

    def _rand(self, like: torch.Tensor) -> torch.Tensor:
        out = torch.rand(1, generator=self.generator, device=self.generator.device)
        return out.to(like.device, like.dtype)


def offset_noise(
    latents: torch.Tensor,
    noise: torch.Tensor,
    offset: float | torch.Tensor,
    adaptive_scale: float | None,
    randn: Callable[..., torch.Tensor],
) -> torch.Tensor:
    """Add one random value per (sample, channel) times `offset` (crosslabs' offset noise).

    With adaptive_noise_scale the offset grows by scale * |channel mean of the latents|,
    clamped at 0 (kohya's apply_noise_offset).
    """
    if adaptive_scale is not None:
        mean = latents.mean(dim=(2, 3), keepdim=True).abs()
        offset = torch.clamp(offset + adaptive_scale * mean, min=0.0)
    return noise + offset * randn((latents.shape[0], latents.shape[1], 1, 1), latents)


def pyramid_noise(
    noise: torch.Tensor,
    iterations: int,
    discount: float,
    randn: Callable[..., torch.Tensor],
    rand: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Multi-resolution noise: coarser noise at random scales, upsampled and added (kohya pyramid_noise_like)."""
    b, c, h, w = noise.shape
    noise = noise.clone()
    for i in range(iterations):
        r = float(rand(noise)) * 2 + 2  # a random shrink factor in [2, 4) instead of always 2
        hn, wn = max(1, int(h / r**i)), max(1, int(w / r**i))
        coarse = randn((b, c, hn, wn), noise)
        noise += F.interpolate(coarse, size=(h, w), mode="bilinear") * discount**i
        if hn == 1 or wn == 1:
            break
    return noise / noise.std()
