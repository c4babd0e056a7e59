"""How many batches, steps and epochs a run has (kohya's arithmetic)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import TrainConfig


@dataclass(frozen=True)
class StepPlan:
    num_samples: int  # images x repeats
    batches_per_epoch: int
    steps_per_epoch: int  # optimizer steps
    total_steps: int
    total_epochs: int


def plan_steps(num_samples: int, batches: int, config: TrainConfig) -> StepPlan:
    """kohya: max_train_epochs, when given, overrides max_train_steps."""
    steps_per_epoch = math.ceil(batches / config.gradient_accumulation_steps)
    if config.max_train_epochs:
        total_steps = config.max_train_epochs * steps_per_epoch
    else:
        total_steps = config.max_train_steps
    total_epochs = math.ceil(total_steps / steps_per_epoch)
    return StepPlan(num_samples, batches, steps_per_epoch, total_steps, total_epochs)
