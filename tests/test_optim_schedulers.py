"""Learning-rate schedules: curves equal transformers'/diffusers'/torch's, kohya's arguments and rules."""

from __future__ import annotations

import math

import pytest
import torch
import transformers.optimization as tf_optim
from diffusers.optimization import get_piecewise_constant_schedule

from lora_trainer.config import TrainConfig, config_from_dict
from lora_trainer.errors import ConfigError
from lora_trainer.train.optimizers import plan_optimizer
from lora_trainer.train.schedulers import build_scheduler

LR = 1e-3
TOTAL = 20


def _optimizer(lr: float = LR) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _curve(scheduler, steps: int = TOTAL + 3) -> list[float]:
    lrs = []
    for _ in range(steps):
        lrs.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return lrs


def _ours(total: int = TOTAL, **options) -> list[float]:
    config = config_from_dict({"learning_rate": LR, **options})
    return _curve(build_scheduler(_optimizer(), config, total, plan_optimizer(config)))


@pytest.mark.parametrize(
    "name, options, reference",
    [
        ("constant", {}, lambda o: tf_optim.get_constant_schedule(o)),
        ("constant_with_warmup", {"lr_warmup_steps": 4},
         lambda o: tf_optim.get_constant_schedule_with_warmup(o, 4)),
        ("linear", {"lr_warmup_steps": 4},
         lambda o: tf_optim.get_linear_schedule_with_warmup(o, 4, TOTAL)),
        ("cosine", {"lr_warmup_steps": 3},
         lambda o: tf_optim.get_cosine_schedule_with_warmup(o, 3, TOTAL)),
        ("cosine", {"lr_scheduler_args": ["num_cycles=1.5"]},
         lambda o: tf_optim.get_cosine_schedule_with_warmup(o, 0, TOTAL, num_cycles=1.5)),
        ("cosine_with_restarts", {"lr_warmup_steps": 2, "lr_scheduler_num_cycles": 3},
         lambda o: tf_optim.get_cosine_with_hard_restarts_schedule_with_warmup(o, 2, TOTAL, 3)),
        ("polynomial", {"lr_warmup_steps": 2, "lr_scheduler_power": 2.0},
         lambda o: tf_optim.get_polynomial_decay_schedule_with_warmup(o, 2, TOTAL, power=2.0)),
        ("polynomial", {"lr_scheduler_args": ["lr_end=1e-4"]},
         lambda o: tf_optim.get_polynomial_decay_schedule_with_warmup(o, 0, TOTAL, lr_end=1e-4)),
        ("inverse_sqrt", {"lr_warmup_steps": 5},
         lambda o: tf_optim.get_inverse_sqrt_schedule(o, 5)),
        ("inverse_sqrt", {"lr_warmup_steps": 5, "lr_scheduler_timescale": 12},
         lambda o: tf_optim.get_inverse_sqrt_schedule(o, 5, timescale=12)),
    ],
)  # fmt: skip
def test_curves_equal_transformers(name, options, reference):
    assert _ours(lr_scheduler=name, **options) == pytest.approx(_curve(reference(_optimizer())))


def test_warmup_ratio_is_a_fraction_of_the_steps():
    ratio = _ours(lr_scheduler="linear", lr_warmup_steps=0.25)
    steps = _ours(lr_scheduler="linear", lr_warmup_steps=5)
    assert ratio == steps
    assert ratio[:6] == pytest.approx([0, 0.2e-3, 0.4e-3, 0.6e-3, 0.8e-3, 1e-3])


def test_cosine_with_min_lr():
    # kohya passes num_cycles / 2 and lr_scheduler_min_lr_ratio as min_lr_rate
    lrs = _ours(lr_scheduler="cosine_with_min_lr", lr_warmup_steps=4, lr_scheduler_min_lr_ratio=0.1)
    for step, lr in enumerate(lrs):
        if step < 4:
            expected = step / 4
        else:
            factor = 0.5 * (1 + math.cos(math.pi * (step - 4) / (TOTAL - 4)))
            expected = factor * 0.9 + 0.1
        assert lr == pytest.approx(LR * expected), step
    assert min(lrs[4:]) == pytest.approx(LR * 0.1)
    by_value = _ours(lr_scheduler="cosine_with_min_lr", lr_warmup_steps=4,
                     lr_scheduler_args=["min_lr=1e-4"])  # fmt: skip
    assert by_value == pytest.approx(lrs)
    reference = getattr(tf_optim, "get_cosine_with_min_lr_schedule_with_warmup", None)
    if reference is not None:  # transformers >= 4.38 (Forge's pins)
        assert lrs == pytest.approx(_curve(reference(_optimizer(), 4, TOTAL, min_lr_rate=0.1)))


def test_warmup_stable_decay():
    lrs = _ours(
        lr_scheduler="warmup_stable_decay", lr_warmup_steps=4, lr_decay_steps=6,
        lr_scheduler_min_lr_ratio=0.2,
    )  # fmt: skip
    expected = []
    for step in range(TOTAL + 3):
        if step < 4:  # linear warmup from the minimum
            factor = step / 4 * 0.8 + 0.2
        elif step < 14:  # stable
            factor = 1.0
        elif step < 20:  # cosine decay to the minimum
            factor = 0.5 * (1 + math.cos(math.pi * (step - 14) / 6)) * 0.8 + 0.2
        else:
            factor = 0.2
        expected.append(LR * factor)
    assert lrs == pytest.approx(expected)
    shapes = _ours(
        lr_scheduler="warmup_stable_decay", lr_warmup_steps=4, lr_decay_steps=0.3,
        lr_scheduler_args=["warmup_type='1-sqrt'", "decay_type='linear'"],
    )  # fmt: skip
    assert shapes[2] == pytest.approx(LR * (1 - math.sqrt(0.5)))
    assert shapes[14 + 3] == pytest.approx(LR * (1 - 3 / 6))


def test_warmup_stable_decay_equals_transformers_when_available():
    reference = getattr(tf_optim, "get_wsd_schedule", None)
    if reference is None:
        pytest.skip("transformers has no get_wsd_schedule before 4.43 (A1111's pins)")
    ours = _ours(lr_scheduler="warmup_stable_decay", lr_warmup_steps=4, lr_decay_steps=6)
    theirs = _curve(reference(_optimizer(), 4, num_stable_steps=10, num_decay_steps=6))
    assert ours == pytest.approx(theirs)


def test_piecewise_constant_equals_diffusers():
    rules = "1:5,0.5:10,0.1"
    ours = _ours(lr_scheduler="piecewise_constant", lr_scheduler_args=[f"step_rules='{rules}'"])
    assert ours == pytest.approx(_curve(get_piecewise_constant_schedule(_optimizer(), rules)))
    assert ours[4:6] == pytest.approx([LR, LR * 0.5])


def test_any_torch_scheduler_class():
    ours = _ours(lr_scheduler_type="CosineAnnealingLR", lr_scheduler_args=["T_max=10"])
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(_optimizer(), T_max=10)
    assert ours == pytest.approx(_curve(reference))
    full_path = _ours(
        lr_scheduler_type="torch.optim.lr_scheduler.StepLR",
        lr_scheduler_args=["step_size=5", "gamma=0.5"],
    )
    assert full_path[4:6] == pytest.approx([LR, LR / 2])


def test_polynomial_uses_the_default_lr_for_every_group():
    # transformers' polynomial decays every group by a factor computed from the optimizer's
    # default lr (kohya's learning_rate), so unet_lr groups keep their ratio
    config = config_from_dict({"learning_rate": LR, "lr_scheduler": "polynomial"})
    optimizer = torch.optim.SGD(
        [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 4 * LR},
         {"params": [torch.nn.Parameter(torch.zeros(1))]}], lr=LR,
    )  # fmt: skip
    scheduler = build_scheduler(optimizer, config, TOTAL, plan_optimizer(config))
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    first, second = (g["lr"] for g in optimizer.param_groups)
    assert first == pytest.approx(4 * second)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"lr_scheduler": "constant", "lr_warmup_steps": 5}, "constant_with_warmup"),
        ({"lr_scheduler": "cosine_with_min_lr"}, "lr_scheduler_min_lr_ratio"),
        ({"lr_scheduler": "cosine_with_min_lr", "lr_scheduler_min_lr_ratio": 0.1,
          "lr_scheduler_args": ["min_lr=1e-5"]}, "exactly one"),
        ({"lr_scheduler": "reduce_lr_on_plateau"}, "validation metric"),
        ({"lr_scheduler": "linearr"}, "did you mean 'linear'"),
        ({"lr_scheduler": "linear", "lr_scheduler_args": ["power=2"]}, "not an argument"),
        ({"lr_scheduler": "polynomial", "lr_scheduler_args": ["lr_end=1"]}, "below learning_rate"),
        ({"lr_scheduler": "piecewise_constant"}, "step_rules"),
        ({"lr_scheduler": "warmup_stable_decay", "lr_scheduler_args": ["decay_type='exp'"]}, "decay_type"),
        ({"lr_scheduler_type": "CosineAnnealingLR", "lr_warmup_steps": 3}, "takes no warmup"),
        ({"lr_scheduler_type": "NoSuchLR"}, "not a class"),
        ({"lr_warmup_steps": 1.5, "lr_scheduler": "linear"}, "whole number of steps"),
        ({"lr_scheduler_num_cycles": 0}, "lr_scheduler_num_cycles"),
    ],
)  # fmt: skip
def test_schedule_errors_before_training(options, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(options)


def test_metadata_keeps_the_schedule_as_given():
    config = TrainConfig(lr_scheduler="cosine_with_restarts", lr_warmup_steps=0.1)
    from lora_trainer.lora.metadata import TrainingFacts, build_metadata
    from lora_trainer.train.optim import metadata_config

    meta = build_metadata(TrainingFacts(config=metadata_config(config)))
    assert (meta["ss_lr_scheduler"], meta["ss_lr_warmup_steps"]) == ("cosine_with_restarts", "0.1")
