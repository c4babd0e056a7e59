"""Noise options (offset, adaptive, random strength, multires, ip noise), zero terminal SNR, timesteps."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from lora_trainer.config import TrainConfig, config_from_dict
from lora_trainer.errors import ConfigError
from lora_trainer.models.assets import sd15_scheduler_config
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.train.noise import NoiseSchedule, training_noise_schedule
from lora_trainer.train.noise_options import NoiseOptions, NoiseSampler

SHAPE = (2, 4, 16, 16)


def _sample(seed: int = 0, **options):
    latents = torch.randn(SHAPE, generator=torch.Generator().manual_seed(99)) + 0.5
    sampler = NoiseSampler(NoiseOptions(**options), torch.Generator().manual_seed(seed))
    return latents, sampler.sample(latents)


def test_plain_noise_is_the_generators_gaussian():
    _, out = _sample()
    gen = torch.Generator().manual_seed(0)
    torch.testing.assert_close(out.noise, torch.randn(SHAPE, generator=gen))
    assert out.input_noise is out.noise


def test_noise_offset_shifts_each_sample_and_channel_by_one_value():
    _, out = _sample(noise_offset=0.5)
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(SHAPE, generator=gen)
    offset = torch.randn(SHAPE[0], SHAPE[1], 1, 1, generator=gen)
    torch.testing.assert_close(out.noise, base + 0.5 * offset)
    channel_mean_shift = (out.noise - base).mean(dim=(2, 3))
    torch.testing.assert_close(channel_mean_shift, 0.5 * offset[:, :, 0, 0])


def test_noise_offset_random_strength_draws_the_strength():
    _, out = _sample(noise_offset=0.5, noise_offset_random_strength=True)
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(SHAPE, generator=gen)
    strength = torch.rand(1, generator=gen) * 0.5
    offset = torch.randn(SHAPE[0], SHAPE[1], 1, 1, generator=gen)
    torch.testing.assert_close(out.noise, base + strength * offset)


def test_adaptive_noise_scale_adds_the_latent_channel_means():
    latents, out = _sample(noise_offset=0.1, adaptive_noise_scale=0.5)
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(SHAPE, generator=gen)
    offset = torch.randn(SHAPE[0], SHAPE[1], 1, 1, generator=gen)
    per_channel = (0.1 + 0.5 * latents.mean(dim=(2, 3), keepdim=True).abs()).clamp(min=0)
    torch.testing.assert_close(out.noise, base + per_channel * offset)


def test_negative_adaptive_scale_is_clamped_at_zero_offset():
    _, out = _sample(noise_offset=0.01, adaptive_noise_scale=-100.0)
    gen = torch.Generator().manual_seed(0)
    torch.testing.assert_close(out.noise, torch.randn(SHAPE, generator=gen))


def _neighbour_correlation(noise: torch.Tensor) -> float:
    a, b = noise[..., :, :-1].flatten(), noise[..., :, 1:].flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def test_multires_noise_adds_low_frequencies_and_keeps_unit_variance():
    _, plain = _sample()
    _, multi = _sample(multires_noise_iterations=6, multires_noise_discount=0.8)
    assert abs(_neighbour_correlation(plain.noise)) < 0.1
    assert _neighbour_correlation(multi.noise) > 0.15
    assert float(multi.noise.std()) == pytest.approx(1.0, abs=1e-5)
    _, weak = _sample(multires_noise_iterations=6, multires_noise_discount=0.1)
    assert _neighbour_correlation(weak.noise) < _neighbour_correlation(multi.noise)


def test_ip_noise_gamma_perturbs_the_input_but_not_the_target():
    _, out = _sample(ip_noise_gamma=0.1)
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(SHAPE, generator=gen)
    extra = torch.randn(SHAPE, generator=gen)
    torch.testing.assert_close(out.noise, base)
    torch.testing.assert_close(out.input_noise, base + 0.1 * extra)


def test_ip_noise_gamma_random_strength():
    _, out = _sample(ip_noise_gamma=0.1, ip_noise_gamma_random_strength=True)
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(SHAPE, generator=gen)
    strength = torch.rand(1, generator=gen) * 0.1
    extra = torch.randn(SHAPE, generator=gen)
    torch.testing.assert_close(out.input_noise, base + strength * extra)


def test_options_are_read_from_the_config():
    config = config_from_dict(
        {"noise_offset": 0.05, "adaptive_noise_scale": 0.01, "ip_noise_gamma": 0.1,
         "multires_noise_iterations": 6, "multires_noise_discount": 0.2}
    )  # fmt: skip
    options = NoiseOptions.from_config(config)
    assert (options.noise_offset, options.adaptive_noise_scale, options.ip_noise_gamma) == (
        0.05, 0.01, 0.1,
    )  # fmt: skip
    assert (options.multires_noise_iterations, options.multires_noise_discount) == (6, 0.2)


def test_zero_terminal_snr_matches_diffusers_rescaled_betas():
    schedule = NoiseSchedule(sd15_scheduler_config(), zero_terminal_snr=True)
    reference = DDPMScheduler.from_config(
        {**sd15_scheduler_config(), "rescale_betas_zero_snr": True}
    )
    torch.testing.assert_close(schedule.scheduler.betas, reference.betas)
    assert float(schedule.scheduler.alphas_cumprod[-1]) == 0.0
    plain = NoiseSchedule(sd15_scheduler_config())
    assert float(plain.scheduler.alphas_cumprod[-1]) > 0
    # kohya computes the SNR table before the rescale: weights keep the original values
    torch.testing.assert_close(schedule.all_snr, plain.all_snr)
    # the last timestep is pure noise: the noisy latent no longer holds the image
    latents, noise = torch.ones(1, 4, 2, 2), torch.zeros(1, 4, 2, 2)
    assert torch.count_nonzero(schedule.add_noise(latents, noise, torch.tensor([999]))) == 0


def test_timesteps_stay_in_min_max_range():
    schedule = NoiseSchedule(sd15_scheduler_config(), min_timestep=100, max_timestep=200)
    t = schedule.sample_timesteps(4000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert int(t.min()) == 100 and int(t.max()) == 199  # max is exclusive, as in kohya
    fixed = NoiseSchedule(sd15_scheduler_config(), min_timestep=500, max_timestep=500)
    t = fixed.sample_timesteps(8, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert t.tolist() == [500] * 8
    full = NoiseSchedule(sd15_scheduler_config())
    t = full.sample_timesteps(4000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert int(t.min()) < 10 and int(t.max()) > 990


def test_v_parameterization_or_the_model_chooses_the_target():
    bundle = build_tiny_sd1()
    assert not training_noise_schedule(bundle, TrainConfig()).v_prediction
    bundle.prediction_type = "v_prediction"
    schedule = training_noise_schedule(bundle, TrainConfig())
    latents, noise, t = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2), torch.tensor([300])
    a = schedule.scheduler.alphas_cumprod[300]
    torch.testing.assert_close(
        schedule.target(latents, noise, t), a.sqrt() * noise - (1 - a).sqrt() * latents
    )


@pytest.mark.parametrize(
    "values, message",
    [
        ({"adaptive_noise_scale": 0.1}, "needs noise_offset"),
        ({"noise_offset": -0.1}, "noise_offset"),
        ({"min_timestep": 1000}, "0 to 999"),
        ({"max_timestep": 0}, "1 to 1000"),
        ({"min_timestep": 600, "max_timestep": 500}, "above max_timestep"),
        ({"multires_noise_discount": 0}, "multires_noise_discount"),
        ({"ip_noise_gamma": -1}, "ip_noise_gamma"),
    ],
)
def test_noise_option_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(values)
