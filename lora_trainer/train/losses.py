"""The training loss between the UNet's prediction and its target."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import TrainConfig
from .noise import NoiseSchedule


class DenoisingLoss:
    """Per-sample mean squared error, weighted per sample (kohya's loss_weights), then averaged."""

    def __init__(self, config: TrainConfig, schedule: NoiseSchedule) -> None:
        self.config = config
        self.schedule = schedule

    def __call__(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        timesteps: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        per_element = F.mse_loss(pred.float(), target.float(), reduction="none")
        per_sample = per_element.mean(dim=list(range(1, per_element.ndim)))
        return (per_sample * weights).mean()
