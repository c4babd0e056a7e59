"""The training loss: kohya's loss types, Huber schedules and per-timestep weightings."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..errors import ConfigError
from .noise import NoiseSchedule

# kohya limits the SNR to 1000 where it divides by it (the SNR at t=0 is huge)
SNR_CAP = 1000.0


@dataclass(frozen=True)
class LossOptions:
    """kohya's loss options (train_util / custom_train_functions)."""

    loss_type: str = "l2"
    huber_schedule: str = "snr"
    huber_c: float = 0.1
    huber_scale: float = 1.0
    min_snr_gamma: float | None = None
    scale_v_pred_loss_like_noise_pred: bool = False
    v_pred_like_loss: float | None = None
    debiased_estimation_loss: bool = False

    @classmethod
    def from_config(cls, config: TrainConfig) -> LossOptions:
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})


def huber_threshold(
    options: LossOptions, timesteps: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """Per-sample Huber c for "huber"/"smooth_l1" (kohya's get_huber_threshold_if_needed)."""
    c, scale = options.huber_c, options.huber_scale
    if options.huber_schedule == "exponential":
        alpha = -math.log(c) / schedule.num_timesteps
        return torch.exp(-alpha * timesteps.float()) * scale
    if options.huber_schedule == "snr":
        # note: kohya applies no huber_scale here
        alphas_cumprod = schedule.scheduler.alphas_cumprod[timesteps.cpu()]
        sigmas = ((1.0 - alphas_cumprod) / alphas_cumprod) ** 0.5
        return ((1 - c) / (1 + sigmas) ** 2 + c).to(timesteps.device)
    return torch.full(timesteps.shape, c * scale, device=timesteps.device)


def elementwise_loss(
    pred: torch.Tensor, target: torch.Tensor, loss_type: str, huber_c: torch.Tensor | None = None
) -> torch.Tensor:
    """kohya's conditional_loss with reduction "none"."""
    if loss_type == "l2":
        return F.mse_loss(pred, target, reduction="none")
    if loss_type == "l1":
        return F.l1_loss(pred, target, reduction="none")
    if huber_c is None:
        raise ValueError(f"loss_type {loss_type} needs a Huber threshold")
    c = huber_c.view(-1, *([1] * (pred.ndim - 1)))
    pseudo = torch.sqrt((pred - target) ** 2 + c**2) - c
    if loss_type == "huber":
        return 2 * c * pseudo
    if loss_type == "smooth_l1":
        return 2 * pseudo
    raise ValueError(f"unknown loss_type {loss_type!r}")


class DenoisingLoss:
    """Per-sample loss (mean over all but the batch), times loss_weights and kohya's timestep weightings."""

    def __init__(self, config: TrainConfig, schedule: NoiseSchedule) -> None:
        self.options = LossOptions.from_config(config)
        self.schedule = schedule
        check_prediction_type(self.options, schedule)

    def __call__(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        timesteps: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        o = self.options
        huber_c = None
        if o.loss_type in ("huber", "smooth_l1"):
            huber_c = huber_threshold(o, timesteps, self.schedule)
        per_element = elementwise_loss(pred.float(), target.float(), o.loss_type, huber_c)
        per_sample = per_element.mean(dim=list(range(1, per_element.ndim))) * weights
        return self.weight_per_timestep(per_sample, timesteps).mean()

    def weight_per_timestep(self, loss: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """kohya's post_process_loss, in its order: min-SNR, v-pred scale, v-pred-like term, debiased."""
        o, schedule = self.options, self.schedule
        weighted = o.min_snr_gamma or o.scale_v_pred_loss_like_noise_pred or o.v_pred_like_loss
        if not (weighted or o.debiased_estimation_loss):
            return loss
        snr = schedule.snr(timesteps).float()
        capped = torch.minimum(snr, torch.full_like(snr, SNR_CAP))
        if o.min_snr_gamma:
            clipped = torch.minimum(snr, torch.full_like(snr, o.min_snr_gamma))
            loss = loss * clipped / (snr + 1 if schedule.v_prediction else snr)
        if o.scale_v_pred_loss_like_noise_pred:
            loss = loss * capped / (capped + 1)
        if o.v_pred_like_loss:
            # kohya: loss + loss / scale * v_pred_like_loss, scale = snr / (snr + 1)
            loss = loss + loss / (capped / (capped + 1)) * o.v_pred_like_loss
        if o.debiased_estimation_loss:
            loss = loss * (1 / (capped + 1) if schedule.v_prediction else 1 / capped.sqrt())
        return loss


def check_prediction_type(options: LossOptions, schedule: NoiseSchedule) -> None:
    """kohya's rules that need to know whether the model predicts v (known once it is loaded)."""
    if options.scale_v_pred_loss_like_noise_pred and not schedule.v_prediction:
        raise ConfigError(
            "scale_v_pred_loss_like_noise_pred needs a v-prediction model",
            fix="remove it, or set v_parameterization for a v-prediction model",
        )
    if options.v_pred_like_loss and schedule.v_prediction:
        raise ConfigError(
            "v_pred_like_loss cannot be used with a v-prediction model",
            fix="remove v_pred_like_loss (it adds a v-like loss to noise-prediction training)",
        )
