"""Step arithmetic for a dataset folder: kohya's count, and the repeats that reach a target."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .regularization import balance_reg_repeats


@dataclass(frozen=True)
class StepEstimate:
    """How many steps a folder layout trains for, as kohya counts them (one bucket)."""

    train_samples: int  # training images x repeats
    reg_samples: int  # regularization samples after kohya's balancing
    epochs: int
    batch_size: int
    gradient_accumulation_steps: int = 1

    @property
    def samples_per_epoch(self) -> int:
        return self.train_samples + self.reg_samples

    @property
    def steps_per_epoch(self) -> int:
        batches = math.ceil(self.samples_per_epoch / self.batch_size)
        return math.ceil(batches / self.gradient_accumulation_steps)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def line(self) -> str:
        """The count, spelled out."""
        text = f"{self.train_samples} images x repeats"
        if self.reg_samples:
            text += f" + {self.reg_samples} regularization samples"
        text += (
            f" = {self.samples_per_epoch} per epoch; batch size {self.batch_size}: "
            f"{self.steps_per_epoch} steps per epoch x {self.epochs} epochs = {self.total_steps} steps"
        )
        if self.batch_size > 1:
            text += " (aspect-ratio buckets can add a few steps: each bucket fills its own batches)"
        return text


def estimate_steps(
    train: list[tuple[int, int]],
    reg: list[tuple[int, int]] = (),
    epochs: int = 1,
    batch_size: int = 1,
    gradient_accumulation_steps: int = 1,
) -> StepEstimate:
    """Steps for folders given as (images, repeats) pairs, training and regularization."""
    if epochs < 1 or batch_size < 1 or gradient_accumulation_steps < 1:
        raise ValueError("epochs, batch size and gradient accumulation must be at least 1")
    train_samples = sum(n * r for n, r in train)
    reg_repeats = [r for n, r in reg for _ in range(n)]
    reg_samples = sum(balance_reg_repeats(train_samples, reg_repeats))
    return StepEstimate(train_samples, reg_samples, epochs, batch_size, gradient_accumulation_steps)


def suggest_repeats(
    num_images: int,
    target_steps: int,
    epochs: int,
    batch_size: int = 1,
    with_reg: bool = False,
) -> int:
    """The repeats (at least 1) whose step count comes nearest `target_steps` (ties: fewer repeats)."""
    if num_images < 1 or target_steps < 1:
        raise ValueError("need at least one image and a positive target")
    factor = 2 if with_reg else 1  # enough regularization images double each epoch

    def steps(repeats: int) -> int:
        return math.ceil(num_images * repeats * factor / batch_size) * epochs

    best = max(1, round(target_steps * batch_size / (num_images * factor * epochs)))
    candidates = {max(1, best + d) for d in (-2, -1, 0, 1, 2)}
    return min(candidates, key=lambda r: (abs(steps(r) - target_steps), r))
