"""Optimizers as kohya chooses and records them: classes, optimizer_args, Adafactor, LoRA+, packages."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from lora_trainer.config import TrainConfig, config_from_dict
from lora_trainer.errors import ConfigError
from lora_trainer.lora.metadata import TrainingFacts, build_metadata
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.train.job import inject_network
from lora_trainer.train.optim import metadata_config, recorded_optimizer
from lora_trainer.train.optimizers import build_optimizer, current_lrs, parse_literal_args
from lora_trainer.train.schedulers import build_scheduler


@pytest.fixture(scope="module")
def network():
    bundle = build_tiny_sd1()
    network = inject_network(bundle, TrainConfig(), seed=0)
    yield network
    network.remove()


def _ss_optimizer(config: TrainConfig) -> str:
    name, args = recorded_optimizer(config)
    facts = TrainingFacts(config=metadata_config(config), optimizer=name, optimizer_args=args)
    return build_metadata(facts)["ss_optimizer"]


def _step(setup, network) -> None:
    for p in network.parameters():
        p.grad = torch.ones_like(p)
    setup.optimizer.step()


@pytest.fixture(autouse=True)
def _no_gradients_left(network):
    yield
    for p in network.parameters():
        p.grad = None


def test_default_is_fused_adamw_recorded_like_kohya(network):
    config = config_from_dict({})
    setup = build_optimizer(network, config)
    assert type(setup.optimizer) is torch.optim.AdamW
    assert setup.optimizer.defaults["fused"] is True  # CPU and CUDA both have the fused kernel
    assert setup.optimizer.defaults["weight_decay"] == 0.01  # torch's default, as in kohya
    assert _ss_optimizer(config) == "torch.optim.adamw.AdamW"


def test_optimizer_args_reach_the_optimizer_and_the_metadata(network):
    config = config_from_dict({"optimizer_args": "weight_decay=0.1 betas=0.9,0.99 amsgrad=True"})
    setup = build_optimizer(network, config)
    group = setup.optimizer.param_groups[0]
    assert (group["weight_decay"], group["betas"], group["amsgrad"]) == (0.1, (0.9, 0.99), True)
    assert _ss_optimizer(config) == (
        "torch.optim.adamw.AdamW(weight_decay=0.1,betas=(0.9, 0.99),amsgrad=True)"
    )
    _step(setup, network)


def test_literal_parsing_of_args():
    assert parse_literal_args(["a=1", "b=1e-3", "c=(1, 2)", "d='x'", "e=word", "f=None"], "x") == {
        "a": 1, "b": 0.001, "c": (1, 2), "d": "x", "e": "word", "f": None,
    }  # fmt: skip
    with pytest.raises(ConfigError, match="not key=value"):
        parse_literal_args(["weight_decay"], "optimizer_args")


def test_sgd_nesterov_gets_kohyas_momentum(network):
    config = config_from_dict({"optimizer_type": "SGDNesterov"})
    setup = build_optimizer(network, config)
    group = setup.optimizer.param_groups[0]
    assert type(setup.optimizer) is torch.optim.SGD
    assert (group["nesterov"], group["momentum"]) == (True, 0.9)
    assert _ss_optimizer(config) == "torch.optim.sgd.SGD(momentum=0.9)"
    with pytest.raises(ConfigError, match="nesterov"):
        config_from_dict({"optimizer_type": "SGDNesterov", "optimizer_args": ["nesterov=False"]})


@pytest.mark.parametrize("kind", ["RMSprop", "torch.optim.RMSprop"])
def test_any_optimizer_class(network, kind):
    config = config_from_dict({"optimizer_type": kind, "optimizer_args": ["alpha=0.9"]})
    setup = build_optimizer(network, config)
    assert type(setup.optimizer) is torch.optim.RMSprop
    assert setup.optimizer.param_groups[0]["alpha"] == 0.9
    assert _ss_optimizer(config) == "torch.optim.rmsprop.RMSprop(alpha=0.9)"


@pytest.mark.parametrize(
    "kind, message",
    [
        ("rmsprop", "did you mean 'RMSprop'"),
        ("torch.optim.Nope", "not a class of torch.optim"),
        ("nopackage.Optimizer", "nopackage"),
    ],
)
def test_unknown_optimizer_classes(kind, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"optimizer_type": kind})


def test_bad_optimizer_args_are_reported(network):
    config = config_from_dict({"optimizer_args": ["not_an_arg=1"]})
    with pytest.raises(ConfigError, match="rejects its arguments"):
        build_optimizer(network, config)


def test_adafactor_relative_step_uses_kohyas_schedule(network):
    config = config_from_dict({"optimizer_type": "Adafactor", "learning_rate": 1e-4})
    setup = build_optimizer(network, config)
    from transformers.optimization import Adafactor, AdafactorSchedule

    assert type(setup.optimizer) is Adafactor
    assert setup.optimizer.param_groups[0]["relative_step"] is True
    scheduler = build_scheduler(setup.optimizer, config, 10, setup.plan)
    assert type(scheduler) is AdafactorSchedule
    assert current_lrs(setup.optimizer)["unet"] == pytest.approx(1e-4)  # the initial lr
    _step(setup, network)
    scheduler.step()  # before zero_grad, as the loop does: Adafactor reads its state
    # afterwards Adafactor's own relative step size: min(1e-2, 1/sqrt(step)) * RMS(param)
    assert current_lrs(setup.optimizer)["unet"] != pytest.approx(1e-4)
    meta = build_metadata(TrainingFacts(config=metadata_config(config), optimizer="x"))
    assert meta["ss_lr_scheduler"] == "adafactor:0.0001"
    assert meta["ss_learning_rate"] == "None"
    assert _ss_optimizer(config) == "transformers.optimization.Adafactor(relative_step=True)"


def test_adafactor_with_a_manual_lr(network):
    config = config_from_dict(
        {"optimizer_type": "adafactor", "lr_scheduler": "constant_with_warmup", "lr_warmup_steps": 2,
         "optimizer_args": ["relative_step=False", "scale_parameter=False", "warmup_init=False"]}
    )  # fmt: skip
    setup = build_optimizer(network, config)
    scheduler = build_scheduler(setup.optimizer, config, 10, setup.plan)
    assert setup.optimizer.param_groups[0]["lr"] == 0.0  # warming up from 0
    _step(setup, network)
    scheduler.step()
    assert setup.optimizer.param_groups[0]["lr"] == pytest.approx(0.5e-4)
    assert metadata_config(config).lr_scheduler == "constant_with_warmup"


def test_adafactor_schedule_takes_no_warmup():
    with pytest.raises(ConfigError, match="takes no warmup"):
        config_from_dict({"optimizer_type": "Adafactor", "lr_warmup_steps": 10})
    with pytest.raises(ConfigError, match="needs optimizer_type Adafactor"):
        config_from_dict({"lr_scheduler": "adafactor"})


def test_loraplus_gives_lora_up_its_own_rate():
    bundle = build_tiny_sd1()
    config = config_from_dict(
        {"unet_lr": 1e-4, "text_encoder_lr": 1e-5,
         "network_args": ["loraplus_unet_lr_ratio=16", "loraplus_lr_ratio=4"]}
    )  # fmt: skip
    network = inject_network(bundle, config, seed=0)
    try:
        setup = build_optimizer(network, config)
        groups = {g["name"]: g for g in setup.optimizer.param_groups}
        ups = {id(layer.lora_B["default"].weight) for _, layer in network.layers("unet")}
    finally:
        network.remove()
    assert set(groups) == {"unet", "unet_plus", "te", "te_plus"}
    assert groups["unet_plus"]["lr"] == pytest.approx(16e-4)
    assert groups["te_plus"]["lr"] == pytest.approx(4e-5)
    assert {id(p) for p in groups["unet_plus"]["params"]} == ups


def _fake_optimizer_module(monkeypatch, module_name: str, class_name: str) -> type:
    """A stand-in package that records what the optimizer class was given."""
    cls = type(class_name, (torch.optim.SGD,), {"__module__": module_name})
    parent = module_name.split(".")[0]
    if parent not in sys.modules or not isinstance(sys.modules[parent], types.ModuleType):
        monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
    module = types.ModuleType(module_name)
    setattr(module, class_name, cls)
    monkeypatch.setitem(sys.modules, module_name, module)
    if "." in module_name:
        monkeypatch.setattr(
            sys.modules[parent], module_name.split(".", 1)[1], module, raising=False
        )
    return cls


@pytest.mark.parametrize(
    "kind, module, class_name",
    [
        ("AdamW8bit", "bitsandbytes.optim", "AdamW8bit"),
        ("Lion8bit", "bitsandbytes.optim", "Lion8bit"),
        ("PagedAdamW8bit", "bitsandbytes.optim", "PagedAdamW8bit"),
        ("Lion", "lion_pytorch", "Lion"),
        ("Prodigy", "prodigyopt", "Prodigy"),
        ("DAdaptAdam", "dadaptation", "DAdaptAdam"),
        ("DAdaptation", "dadaptation.experimental", "DAdaptAdamPreprint"),
        ("AdamWScheduleFree", "schedulefree", "AdamWScheduleFree"),
    ],
)
def test_named_optimizers_come_from_their_packages(monkeypatch, network, kind, module, class_name):
    cls = _fake_optimizer_module(monkeypatch, module, class_name)
    if kind.endswith("ScheduleFree"):
        cls.train = lambda self: setattr(self, "mode", "train")
    config = config_from_dict(
        {"optimizer_type": kind, "learning_rate": 1.0, "optimizer_args": ["momentum=0.5"]}
    )
    setup = build_optimizer(network, config)
    assert type(setup.optimizer) is cls
    assert setup.optimizer.param_groups[0]["momentum"] == 0.5
    assert setup.optimizer.param_groups[0]["lr"] == 1.0
    assert _ss_optimizer(config) == f"{module}.{class_name}(momentum=0.5)"
    if kind.endswith("ScheduleFree"):
        assert setup.optimizer.mode == "train"


@pytest.mark.parametrize(
    "kind, package",
    [("AdamW8bit", "bitsandbytes"), ("Lion", "lion-pytorch"), ("Prodigy", "prodigyopt"),
     ("DAdaptLion", "dadaptation"), ("RAdamScheduleFree", "schedulefree")],
)  # fmt: skip
def test_missing_packages_are_named_before_training(monkeypatch, kind, package):
    module = {"lion-pytorch": "lion_pytorch"}.get(package, package)
    monkeypatch.setitem(sys.modules, module, None)  # "import module" now fails
    with pytest.raises(
        ConfigError, match=f"needs the Python package '{package}'.*pip install {package}"
    ):
        config_from_dict({"optimizer_type": kind})


def test_legacy_flags_choose_kohyas_optimizers(monkeypatch):
    _fake_optimizer_module(monkeypatch, "bitsandbytes.optim", "AdamW8bit")
    config = config_from_dict({"use_8bit_adam": True})
    assert recorded_optimizer(config)[0] == "bitsandbytes.optim.AdamW8bit"
    with pytest.raises(ConfigError, match="cannot be combined"):
        config_from_dict({"use_8bit_adam": True, "optimizer_type": "Lion"})


def test_adaptive_optimizers_warn_about_low_lr_and_report_d_times_lr(monkeypatch, network):
    _fake_optimizer_module(monkeypatch, "prodigyopt", "Prodigy")
    setup = build_optimizer(network, config_from_dict({"optimizer_type": "Prodigy"}))
    assert any("near 1.0" in w for w in setup.plan.warnings)
    setup.optimizer.param_groups[0]["d"] = 1e-5
    assert current_lrs(setup.optimizer)["unet"] == pytest.approx(1e-4 * 1e-5)


@pytest.mark.parametrize(
    "package, kind, args",
    [
        ("lion_pytorch", "Lion", ["weight_decay=0.01"]),
        ("prodigyopt", "Prodigy", ["d_coef=2"]),
        ("dadaptation", "DAdaptAdam", []),
        ("dadaptation", "DAdaptation", []),
        ("schedulefree", "AdamWScheduleFree", ["warmup_steps=2"]),
        ("bitsandbytes", "AdamW8bit", []),
    ],
)
def test_real_optional_optimizers_step(network, package, kind, args):
    pytest.importorskip(package)
    config = config_from_dict(
        {"optimizer_type": kind, "optimizer_args": args, "learning_rate": 1.0}
    )
    setup = build_optimizer(network, config)
    before = [p.detach().clone() for p in network.parameters()]
    _step(setup, network)
    assert any(not torch.equal(a, p) for a, p in zip(before, network.parameters()))
    with torch.no_grad():
        for a, p in zip(before, network.parameters()):
            p.copy_(a)


def test_command_line_takes_kohyas_key_value_lists():
    from lora_trainer.cli import build_parser, config_from_args

    args = build_parser().parse_args(
        ["train", "--optimizer_args", "weight_decay=0.1", "betas=(0.9, 0.99)",
         "--network_args", "conv_dim=4", "--lr_scheduler", "linear"]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.optimizer_args == ["weight_decay=0.1", "betas=(0.9, 0.99)"]
    assert config.network_args == ["conv_dim=4"]
    # one string (a JSON/TOML value or the WebUI) splits before each key
    assert config_from_dict({"optimizer_args": "eps=1e-6 betas=(0.9, 0.99)"}).optimizer_args == [
        "eps=1e-6",
        "betas=(0.9, 0.99)",
    ]


def test_adafactor_relative_step_warns_that_block_lr_weights_do_nothing():
    from lora_trainer.train.optimizers import plan_optimizer

    base = {"optimizer_type": "Adafactor", "learning_rate": 1e-4}
    assert not any("lr_weight" in w for w in plan_optimizer(config_from_dict(base)).warnings)
    config = config_from_dict({**base, "network_args": ["down_lr_weight=sine"]})
    assert any("ignores the blocks' *_lr_weight" in w for w in plan_optimizer(config).warnings)
