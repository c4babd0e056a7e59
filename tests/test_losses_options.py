"""Loss types, Huber schedules and timestep weightings, against kohya's formulas by hand."""

from __future__ import annotations

import math

import pytest
import torch

from lora_trainer.config import TrainConfig, config_from_dict
from lora_trainer.errors import ConfigError
from lora_trainer.models.assets import sd15_scheduler_config
from lora_trainer.train.losses import DenoisingLoss
from lora_trainer.train.noise import NoiseSchedule

T = torch.tensor([0, 250, 999])
ONES = torch.ones(3)


@pytest.fixture(scope="module")
def pair():
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(3, 4, 8, 8, generator=gen)
    target = torch.randn(3, 4, 8, 8, generator=gen)
    return pred, target


def _schedule(v: bool = False) -> NoiseSchedule:
    return NoiseSchedule(sd15_scheduler_config(), "v_prediction" if v else "epsilon")


def _alphas_bar(t: torch.Tensor) -> torch.Tensor:
    # SD's scaled_linear betas, written out
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float32) ** 2
    return torch.cumprod(1 - betas, 0)[t]


def _snr(t: torch.Tensor) -> torch.Tensor:
    a = _alphas_bar(t)
    return a / (1 - a)


def _loss(config: TrainConfig, pred, target, v: bool = False, weights=ONES) -> torch.Tensor:
    return DenoisingLoss(config, _schedule(v))(pred, target, T, weights)


def _per_sample(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(1, 2, 3))


def test_l2_is_the_default_and_loss_weights_scale_samples(pair):
    pred, target = pair
    weights = torch.tensor([1.0, 0.5, 2.0])
    expected = (_per_sample((pred - target) ** 2) * weights).mean()
    torch.testing.assert_close(_loss(TrainConfig(), pred, target, weights=weights), expected)


def test_l1(pair):
    pred, target = pair
    expected = _per_sample((pred - target).abs()).mean()
    torch.testing.assert_close(_loss(TrainConfig(loss_type="l1"), pred, target), expected)


@pytest.mark.parametrize("kind", ["huber", "smooth_l1"])
def test_huber_and_smooth_l1_with_a_constant_threshold(pair, kind):
    pred, target = pair
    c = 0.2 * 3.0  # huber_c * huber_scale
    pseudo = torch.sqrt((pred - target) ** 2 + c**2) - c
    elementwise = 2 * c * pseudo if kind == "huber" else 2 * pseudo
    config = TrainConfig(loss_type=kind, huber_schedule="constant", huber_c=0.2, huber_scale=3.0)
    torch.testing.assert_close(_loss(config, pred, target), _per_sample(elementwise).mean())


def _huber_with(c: torch.Tensor, pred, target) -> torch.Tensor:
    c = c.view(-1, 1, 1, 1)
    return _per_sample(2 * c * (torch.sqrt((pred - target) ** 2 + c**2) - c)).mean()


def test_huber_exponential_schedule(pair):
    pred, target = pair
    c = torch.tensor([2.0 * math.exp(math.log(0.1) * t / 1000) for t in T.tolist()])
    config = TrainConfig(loss_type="huber", huber_schedule="exponential", huber_scale=2.0)
    torch.testing.assert_close(_loss(config, pred, target), _huber_with(c, pred, target))


def test_huber_snr_schedule_is_the_default(pair):
    pred, target = pair
    a = _alphas_bar(T)
    sigma = ((1 - a) / a).sqrt()
    c = (1 - 0.1) / (1 + sigma) ** 2 + 0.1
    torch.testing.assert_close(
        _loss(TrainConfig(loss_type="huber"), pred, target), _huber_with(c, pred, target)
    )


def test_min_snr_gamma_weights(pair):
    pred, target = pair
    mse = _per_sample((pred - target) ** 2)
    snr = _snr(T)
    gamma = torch.full_like(snr, 5.0)
    config = TrainConfig(min_snr_gamma=5.0)
    torch.testing.assert_close(
        _loss(config, pred, target), (mse * torch.minimum(snr, gamma) / snr).mean()
    )
    torch.testing.assert_close(
        _loss(config, pred, target, v=True), (mse * torch.minimum(snr, gamma) / (snr + 1)).mean()
    )
    # the weights do change the loss: high-SNR (low t) samples are damped
    assert not torch.allclose(_loss(config, pred, target), _loss(TrainConfig(), pred, target))


def test_debiased_estimation(pair):
    pred, target = pair
    mse = _per_sample((pred - target) ** 2)
    snr = torch.minimum(_snr(T), torch.tensor(1000.0))
    config = TrainConfig(debiased_estimation_loss=True)
    torch.testing.assert_close(_loss(config, pred, target), (mse / snr.sqrt()).mean())
    torch.testing.assert_close(_loss(config, pred, target, v=True), (mse / (snr + 1)).mean())


def test_scale_v_pred_loss_like_noise_pred(pair):
    pred, target = pair
    mse = _per_sample((pred - target) ** 2)
    snr = torch.minimum(_snr(T), torch.tensor(1000.0))
    config = TrainConfig(scale_v_pred_loss_like_noise_pred=True)
    torch.testing.assert_close(_loss(config, pred, target, v=True), (mse * snr / (snr + 1)).mean())
    with pytest.raises(ConfigError, match="needs a v-prediction model"):
        _loss(config, pred, target, v=False)


def test_v_pred_like_loss(pair):
    pred, target = pair
    mse = _per_sample((pred - target) ** 2)
    snr = torch.minimum(_snr(T), torch.tensor(1000.0))
    config = TrainConfig(v_pred_like_loss=0.3)
    expected = (mse + mse / (snr / (snr + 1)) * 0.3).mean()
    torch.testing.assert_close(_loss(config, pred, target), expected)
    with pytest.raises(ConfigError, match="cannot be used with a v-prediction"):
        _loss(config, pred, target, v=True)


def test_weightings_combine_in_kohyas_order(pair):
    pred, target = pair
    mse = _per_sample((pred - target) ** 2)
    snr = _snr(T)
    capped = torch.minimum(snr, torch.tensor(1000.0))
    config = TrainConfig(min_snr_gamma=2.0, debiased_estimation_loss=True, v_pred_like_loss=0.5)
    step = mse * torch.minimum(snr, torch.full_like(snr, 2.0)) / snr
    step = step + step / (capped / (capped + 1)) * 0.5
    step = step / capped.sqrt()
    torch.testing.assert_close(_loss(config, pred, target), step.mean())


@pytest.mark.parametrize(
    "values, message",
    [
        ({"loss_type": "l3"}, "loss_type"),
        ({"huber_schedule": "linear"}, "huber_schedule"),
        ({"huber_c": 0}, "huber_c"),
        ({"min_snr_gamma": -5}, "min_snr_gamma"),
    ],
)
def test_loss_option_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(values)
