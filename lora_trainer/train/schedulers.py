"""Learning-rate schedules as kohya's train_util.get_scheduler_fix builds them.

The curves are those of transformers' schedule functions (the version kohya pins, which
the WebUI's older transformers lacks some of) and diffusers' piecewise_constant.
"""

from __future__ import annotations

import difflib
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from ..config import TrainConfig
from ..errors import ConfigError
from .optimizers import OptimizerPlan, parse_literal_args

# Each scheduler kohya offers by name, with the extra keyword arguments lr_scheduler_args
# may give it (kohya passes them through to the schedule function).
SCHEDULER_ARGS: dict[str, tuple[str, ...]] = {
    "constant": (),
    "constant_with_warmup": (),
    "linear": (),
    "cosine": ("num_cycles",),
    "cosine_with_restarts": (),
    "polynomial": ("lr_end",),
    "inverse_sqrt": (),
    "cosine_with_min_lr": ("min_lr",),
    "warmup_stable_decay": ("warmup_type", "decay_type"),
    "piecewise_constant": ("step_rules",),
    "adafactor": (),
}
# Names kohya's parser accepts but train_network.py cannot run (a metric, or a TypeError).
UNRUNNABLE = {
    "reduce_lr_on_plateau": "it needs a validation metric that LoRA training does not produce",
    "cosine_warmup_with_min_lr": "kohya passes it arguments it does not take",
}
WSD_SHAPES = ("linear", "cosine", "1-sqrt")


@dataclass(frozen=True)
class StepCounts:
    """kohya's num_warmup_steps / num_decay_steps / num_stable_steps for a run."""

    total: int
    warmup: int
    decay: int

    @property
    def stable(self) -> int:
        return self.total - self.warmup - self.decay


def steps_or_ratio(value: float, total: int) -> int:
    """kohya's int_or_float: a value below 1 is a fraction of the total steps."""
    return int(value * total) if 0 < value < 1 else int(value)


def step_counts(config: TrainConfig, total_steps: int) -> StepCounts:
    return StepCounts(
        total_steps,
        steps_or_ratio(config.lr_warmup_steps, total_steps),
        steps_or_ratio(config.lr_decay_steps, total_steps),
    )


def scheduler_name(config: TrainConfig, plan: OptimizerPlan | None = None) -> str:
    """The schedule kohya runs: Adafactor with relative_step replaces it with "adafactor:<lr>"."""
    if plan is not None and plan.scheduler_override:
        return plan.scheduler_override
    return config.lr_scheduler


def check_scheduler(config: TrainConfig, plan: OptimizerPlan) -> None:
    """Every error kohya's get_scheduler_fix would raise, before any model is loaded."""
    kwargs = parse_literal_args(config.lr_scheduler_args, "lr_scheduler_args")
    warmup = config.lr_warmup_steps
    if plan.schedule_free:  # kohya gives these a do-nothing scheduler, whatever was asked
        return
    if config.lr_scheduler_type:
        resolve_scheduler_class(config.lr_scheduler_type)
        _no_warmup(warmup, config.lr_scheduler_type)
        return
    name = scheduler_name(config, plan)
    base = name.split(":")[0]
    if base == "adafactor":
        if plan.class_name != "Adafactor" or plan.scheduler_override is None:
            raise ConfigError(
                "lr_scheduler adafactor needs optimizer_type Adafactor with relative_step",
                fix='use optimizer_type = "Adafactor" (relative_step is its default), or another lr_scheduler',
            )
        _no_warmup(warmup, "the adafactor schedule")
        return
    if base in UNRUNNABLE:
        raise ConfigError(
            f"lr_scheduler {base} is not supported: {UNRUNNABLE[base]}", fix=_names_hint(base)
        )
    if base not in SCHEDULER_ARGS:
        raise ConfigError(f"unknown lr_scheduler {base!r}", fix=_names_hint(base))
    extra = sorted(set(kwargs) - set(SCHEDULER_ARGS[base]))
    if extra:
        allowed = ", ".join(SCHEDULER_ARGS[base]) or "none"
        raise ConfigError(
            f"lr_scheduler_args {extra[0]!r} is not an argument of the {base} schedule",
            fix=f"arguments it takes: {allowed}",
        )
    if base == "constant":
        _no_warmup(warmup, "lr_scheduler constant", fix='use lr_scheduler = "constant_with_warmup"')
    _check_schedule_values(config, base, kwargs)


def _no_warmup(warmup: float, what: str, fix: str = "set lr_warmup_steps = 0") -> None:
    if warmup:
        raise ConfigError(f"{what} takes no warmup, but lr_warmup_steps is {warmup:g}", fix=fix)


def _names_hint(name: str) -> str:
    close = difflib.get_close_matches(name, SCHEDULER_ARGS, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return "use one of: " + ", ".join(n for n in SCHEDULER_ARGS if n != "adafactor")


def _check_schedule_values(config: TrainConfig, name: str, kwargs: dict[str, Any]) -> None:
    if name == "polynomial" and config.learning_rate <= kwargs.get("lr_end", 1e-7):
        raise ConfigError(
            f"polynomial lr_end {kwargs.get('lr_end', 1e-7)} must be below learning_rate {config.learning_rate}",
            fix="lower lr_end in lr_scheduler_args",
        )
    if name == "cosine_with_min_lr":
        ratio = config.lr_scheduler_min_lr_ratio
        if (ratio is None) == ("min_lr" not in kwargs):
            raise ConfigError(
                "cosine_with_min_lr needs exactly one of lr_scheduler_min_lr_ratio or lr_scheduler_args min_lr",
                fix="set lr_scheduler_min_lr_ratio, e.g. 0.1",
            )
    if name == "warmup_stable_decay":
        for key in ("warmup_type", "decay_type"):
            if kwargs.get(key, "linear") not in WSD_SHAPES:
                raise ConfigError(
                    f"warmup_stable_decay {key} {kwargs[key]!r} is not known",
                    fix="use " + ", ".join(WSD_SHAPES),
                )
    if name == "piecewise_constant" and "step_rules" not in kwargs:
        raise ConfigError(
            "piecewise_constant needs step_rules in lr_scheduler_args",
            fix="""e.g. lr_scheduler_args = ["step_rules='1:100,0.5:200,0.1'"] (multiplier:until_step, ..., last multiplier)""",
        )


def resolve_scheduler_class(path: str) -> type:
    """lr_scheduler_type: a torch.optim.lr_scheduler class name, or a full class path."""
    module_name, _, class_name = path.rpartition(".")
    module_name = module_name or "torch.optim.lr_scheduler"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ConfigError(
            f"lr_scheduler_type {path!r}: module {module_name} cannot be imported",
            fix="give a class of torch.optim.lr_scheduler (e.g. CosineAnnealingLR) or an installed package's class",
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(f"lr_scheduler_type {path!r} is not a class of {module_name}")
    return cls


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int, plan: OptimizerPlan
) -> LRScheduler:
    """kohya's get_scheduler_fix (total steps = optimizer steps, one process)."""
    check_scheduler(config, plan)
    kwargs = parse_literal_args(config.lr_scheduler_args, "lr_scheduler_args")
    if plan.schedule_free:
        return LambdaLR(optimizer, _constant)  # kohya's dummy scheduler: the lr stays as set
    if config.lr_scheduler_type:
        return resolve_scheduler_class(config.lr_scheduler_type)(optimizer, **kwargs)
    name = scheduler_name(config, plan)
    if name.startswith("adafactor"):
        from transformers.optimization import AdafactorSchedule

        return AdafactorSchedule(optimizer, float(name.split(":")[1]))
    if name == "piecewise_constant":
        from diffusers.optimization import get_piecewise_constant_schedule

        return get_piecewise_constant_schedule(optimizer, **kwargs)
    counts = step_counts(config, total_steps)
    lr_lambda = schedule_lambda(name, counts, config, kwargs, optimizer.defaults.get("lr"))
    return LambdaLR(optimizer, lr_lambda)


def schedule_lambda(
    name: str,
    counts: StepCounts,
    config: TrainConfig,
    kwargs: dict[str, Any],
    initial_lr: float | None,
) -> Callable[[int], float]:
    """The multiplier of the learning rate at each step, for the schedules kohya names."""
    w, t = counts.warmup, counts.total
    cycles = config.lr_scheduler_num_cycles
    if name == "constant":
        return _constant
    if name == "constant_with_warmup":
        return partial(_constant_with_warmup, warmup=w)
    if name == "linear":
        return partial(_linear, warmup=w, total=t)
    if name == "cosine":  # kohya does not pass num_cycles here: half a wave unless given
        return partial(_cosine, warmup=w, total=t, cycles=kwargs.get("num_cycles", 0.5))
    if name == "cosine_with_restarts":
        return partial(_cosine_restarts, warmup=w, total=t, cycles=cycles)
    if name == "polynomial":
        return partial(
            _polynomial, warmup=w, total=t, lr_end=kwargs.get("lr_end", 1e-7),
            power=config.lr_scheduler_power, lr_init=initial_lr,
        )  # fmt: skip
    if name == "inverse_sqrt":
        timescale = config.lr_scheduler_timescale or w or 10_000
        return partial(_inverse_sqrt, warmup=w, timescale=timescale)
    if name == "cosine_with_min_lr":
        ratio = config.lr_scheduler_min_lr_ratio
        if ratio is None:
            ratio = kwargs["min_lr"] / initial_lr
        return partial(_cosine, warmup=w, total=t, cycles=cycles / 2, min_ratio=ratio)
    if name == "warmup_stable_decay":
        return partial(
            _warmup_stable_decay, counts=counts, cycles=cycles / 2,
            min_ratio=config.lr_scheduler_min_lr_ratio or 0.0,
            warmup_type=kwargs.get("warmup_type", "linear"),
            decay_type=kwargs.get("decay_type", "cosine"),
        )  # fmt: skip
    raise ConfigError(f"unknown lr_scheduler {name!r}", fix=_names_hint(name))


def _constant(step: int) -> float:
    return 1.0


def _warming(step: int, warmup: int) -> float:
    return step / max(1, warmup)


def _constant_with_warmup(step: int, warmup: int) -> float:
    return _warming(step, warmup) if step < warmup else 1.0


def _progress(step: int, warmup: int, total: int) -> float:
    return (step - warmup) / max(1, total - warmup)


def _linear(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return _warming(step, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def _cosine(step: int, warmup: int, total: int, cycles: float, min_ratio: float = 0.0) -> float:
    if step < warmup:
        return _warming(step, warmup)
    factor = 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * _progress(step, warmup, total)))
    return max(0.0, factor * (1 - min_ratio) + min_ratio)


def _cosine_restarts(step: int, warmup: int, total: int, cycles: int) -> float:
    if step < warmup:
        return _warming(step, warmup)
    progress = _progress(step, warmup, total)
    if progress >= 1.0:
        return 0.0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((cycles * progress) % 1.0))))


def _polynomial(
    step: int, warmup: int, total: int, lr_end: float, power: float, lr_init: float
) -> float:
    # transformers' polynomial decays from the optimizer's default lr to lr_end and
    # returns a multiplier of each group's own lr
    if step < warmup:
        return _warming(step, warmup)
    if step > total:
        return lr_end / lr_init
    remaining = 1 - (step - warmup) / max(1, total - warmup)
    return ((lr_init - lr_end) * remaining**power + lr_end) / lr_init


def _inverse_sqrt(step: int, warmup: int, timescale: int) -> float:
    if step < warmup:
        return _warming(step, warmup)
    return 1.0 / math.sqrt((step + timescale - warmup) / timescale)


def _warmup_stable_decay(
    step: int,
    counts: StepCounts,
    cycles: float,
    min_ratio: float,
    warmup_type: str,
    decay_type: str,
) -> float:
    warmup, stable, decay = counts.warmup, counts.stable, counts.decay
    if step < warmup:
        factor = _shape(warmup_type, step / max(1, warmup), cycles, rising=True)
    elif step < warmup + stable:
        return 1.0
    elif step < warmup + stable + decay:
        factor = _shape(decay_type, (step - warmup - stable) / max(1, decay), cycles, rising=False)
    else:
        return min_ratio
    return max(0.0, factor * (1.0 - min_ratio) + min_ratio)


def _shape(kind: str, progress: float, cycles: float, rising: bool) -> float:
    """The warmup (rising) or decay curve of warmup_stable_decay at `progress` in [0, 1)."""
    if kind == "linear":
        return progress if rising else 1.0 - progress
    if kind == "cosine":
        if rising:
            return 0.5 * (1.0 - math.cos(math.pi * progress))
        return 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress))
    return 1.0 - math.sqrt(1.0 - progress) if rising else 1.0 - math.sqrt(progress)
