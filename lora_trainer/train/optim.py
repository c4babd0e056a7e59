"""Optimizer and learning-rate schedule, as kohya builds them."""

from __future__ import annotations

import torch
from diffusers.optimization import get_scheduler

from ..config import TrainConfig
from ..lora.network import LoraNetwork


def param_groups(network: LoraNetwork, config: TrainConfig) -> list[dict]:
    """One group per part: UNet at unet_lr, text encoders at text_encoder_lr (else learning_rate)."""
    groups = []
    for part in network.part_names:
        lr = config.unet_lr if part == "unet" else config.text_encoder_lr
        groups.append(
            {"params": network.parameters(part), "lr": lr or config.learning_rate, "name": part}
        )
    return groups


def build_optimizer(network: LoraNetwork, config: TrainConfig) -> torch.optim.Optimizer:
    # torch's AdamW defaults (weight_decay 0.01) are what kohya's "AdamW" gives too
    return torch.optim.AdamW(param_groups(network, config), lr=config.learning_rate)


def optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    """kohya's ss_optimizer form: the class path, e.g. torch.optim.adamw.AdamW."""
    cls = type(optimizer)
    return f"{cls.__module__}.{cls.__name__}"


def warmup_steps(config: TrainConfig, total_steps: int) -> int:
    """kohya: a value below 1 is a fraction of the total steps."""
    value = config.lr_warmup_steps
    return int(value * total_steps) if 0 < value < 1 else int(value)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    return get_scheduler(
        config.lr_scheduler,
        optimizer,
        num_warmup_steps=warmup_steps(config, total_steps),
        num_training_steps=total_steps,
        num_cycles=config.lr_scheduler_num_cycles,
        power=config.lr_scheduler_power,
    )
