"""The optimisation options as a whole: checked up front, and recorded as kohya records them."""

from __future__ import annotations

from dataclasses import replace

from ..config import TrainConfig
from ..lora.network_args import effective_network_args, network_options
from .optimizers import plan_optimizer, resolve_optimizer_class
from .schedulers import check_scheduler


def check_optimization_options(config: TrainConfig) -> None:
    """network_args, optimizer (its package too) and lr schedule: every error before heavy work."""
    network_options(config)
    plan = plan_optimizer(config)
    resolve_optimizer_class(plan)
    check_scheduler(config, plan)


def recorded_optimizer(config: TrainConfig) -> tuple[str, dict]:
    """kohya's ss_optimizer parts: the class path and the arguments it was given."""
    plan = plan_optimizer(config)
    cls = resolve_optimizer_class(plan)
    return f"{cls.__module__}.{cls.__name__}", dict(plan.kwargs)


def metadata_config(config: TrainConfig) -> TrainConfig:
    """The options as kohya's args hold them when it writes the metadata.

    kohya's get_optimizer rewrites some of them for Adafactor with relative_step (the
    schedule becomes "adafactor:<lr>", learning_rate and unet_lr None), and the kohya_ss GUI
    passes conv_dim/conv_alpha inside network_args.
    """
    values: dict = {"network_args": effective_network_args(config)}
    plan = plan_optimizer(config)
    if plan.scheduler_override:
        # (ss_text_encoder_lr keeps its value: kohya reads it before get_optimizer)
        values.update(lr_scheduler=plan.scheduler_override, learning_rate=None, unet_lr=None)
    return replace(config, **values)
