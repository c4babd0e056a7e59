"""The optimizer as kohya's train_util.get_optimizer chooses and configures it."""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import TrainConfig
from ..errors import ConfigError
from ..lora.blocks import block_index
from ..lora.network import ADAPTER, LoraNetwork
from ..lora.network_args import NetworkOptions, network_options

# kohya's optimizer_type names (matched without regard to case) -> (module, class name)
BNB = "bitsandbytes.optim"
NAMED_OPTIMIZERS: dict[str, tuple[str, str]] = {
    "adamw": ("torch.optim", "AdamW"),
    "sgdnesterov": ("torch.optim", "SGD"),
    "adamw8bit": (BNB, "AdamW8bit"),
    "sgdnesterov8bit": (BNB, "SGD8bit"),
    "lion8bit": (BNB, "Lion8bit"),
    "pagedadamw8bit": (BNB, "PagedAdamW8bit"),
    "pagedlion8bit": (BNB, "PagedLion8bit"),
    "pagedadamw": (BNB, "PagedAdamW"),
    "pagedadamw32bit": (BNB, "PagedAdamW32bit"),
    "lion": ("lion_pytorch", "Lion"),
    "dadaptation": ("dadaptation.experimental", "DAdaptAdamPreprint"),
    "dadaptadampreprint": ("dadaptation.experimental", "DAdaptAdamPreprint"),
    "dadaptadanip": ("dadaptation.experimental", "DAdaptAdanIP"),
    "dadaptadagrad": ("dadaptation", "DAdaptAdaGrad"),
    "dadaptadam": ("dadaptation", "DAdaptAdam"),
    "dadaptadan": ("dadaptation", "DAdaptAdan"),
    "dadaptlion": ("dadaptation", "DAdaptLion"),
    "dadaptsgd": ("dadaptation", "DAdaptSGD"),
    "prodigy": ("prodigyopt", "Prodigy"),
    "adafactor": ("transformers.optimization", "Adafactor"),
    "radamschedulefree": ("schedulefree", "RAdamScheduleFree"),
    "adamwschedulefree": ("schedulefree", "AdamWScheduleFree"),
    "sgdschedulefree": ("schedulefree", "SGDScheduleFree"),
}
PIP_NAMES = {
    "bitsandbytes": "bitsandbytes",
    "lion_pytorch": "lion-pytorch",
    "dadaptation": "dadaptation",
    "prodigyopt": "prodigyopt",
    "schedulefree": "schedulefree",
}
FUSED_CAPABLE = ("torch.optim.AdamW", "torch.optim.Adam")


@dataclass
class OptimizerPlan:
    """What kohya would build: the class, its keyword arguments and the lr it is given."""

    module: str
    class_name: str
    kwargs: dict[str, Any]  # user's optimizer_args plus kohya's own additions (recorded)
    lr: float | None  # None: Adafactor finds its own step size (relative_step)
    keep_group_lrs: bool = True
    scheduler_override: str | None = None  # kohya's "adafactor:<lr>" lr_scheduler
    fixed_kwargs: dict[str, Any] = field(default_factory=dict)  # passed, not recorded (nesterov)
    warnings: list[str] = field(default_factory=list)

    @property
    def schedule_free(self) -> bool:
        return self.class_name.lower().endswith("schedulefree")

    @property
    def is_adaptive(self) -> bool:
        """D-Adaptation and Prodigy: the lr is a multiplier of an estimated step size d."""
        return self.class_name.startswith("DAdapt") or self.class_name == "Prodigy"


@dataclass
class OptimizerSetup:
    optimizer: torch.optim.Optimizer
    plan: OptimizerPlan
    name: str  # kohya's ss_optimizer class path, e.g. torch.optim.adamw.AdamW
    args: dict[str, Any]  # kohya's optimizer_args as recorded in ss_optimizer


def parse_literal_args(items: list[str] | None, option: str) -> dict[str, Any]:
    """kohya's "key=value" list with each value read as a Python literal ("0.9,0.99" is a tuple)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"{option} entry {item!r} is not key=value",
                fix=f'write each {option} entry as key=value, e.g. "weight_decay=0.1"',
            )
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()  # a bare word: kohya needs quotes, the value is the same text
        out[key.strip()] = value
    return out


def optimizer_kind(config: TrainConfig) -> str:
    """optimizer_type, honouring kohya's older use_8bit_adam / use_lion_optimizer flags."""
    kind = config.optimizer_type or ""
    legacy = [n for n in ("use_8bit_adam", "use_lion_optimizer") if getattr(config, n, False)]
    if len(legacy) > 1 or (legacy and kind and kind.lower() != "adamw"):
        raise ConfigError(
            f"{' and '.join(legacy)} cannot be combined with another optimizer choice",
            fix="set only optimizer_type",
        )
    if legacy:
        return "AdamW8bit" if legacy[0] == "use_8bit_adam" else "Lion"
    return kind or "AdamW"


def plan_optimizer(config: TrainConfig) -> OptimizerPlan:
    """kohya's choice and argument handling for optimizer_type + optimizer_args (no import)."""
    kind = optimizer_kind(config)
    kwargs = parse_literal_args(config.optimizer_args, "optimizer_args")
    lr: float | None = config.learning_rate
    module, class_name = NAMED_OPTIMIZERS.get(kind.lower(), _class_path(kind))
    plan = OptimizerPlan(module, class_name, kwargs, lr)
    if kind.lower().startswith("sgdnesterov"):
        if "nesterov" in kwargs:
            raise ConfigError(
                f"{kind} always uses nesterov=True", fix="remove nesterov from optimizer_args"
            )
        kwargs.setdefault("momentum", 0.9)  # kohya: Nesterov needs momentum
        plan.fixed_kwargs["nesterov"] = True
    elif plan.is_adaptive:
        _adaptive_warnings(config, plan)
    elif class_name == "Adafactor":
        _plan_adafactor(config, plan)
    if plan.schedule_free and (config.lr_scheduler != "constant" or config.lr_warmup_steps):
        plan.warnings.append(
            f"{class_name} ignores lr_scheduler and lr_warmup_steps (as in kohya); "
            "give warmup_steps=N in optimizer_args instead"
        )
    return plan


def _class_path(kind: str) -> tuple[str, str]:
    """Any optimizer class: "RMSprop" (from torch.optim) or "package.module.ClassName"."""
    if "." not in kind:
        return "torch.optim", kind
    module, _, name = kind.rpartition(".")
    return module, name


def _adaptive_warnings(config: TrainConfig, plan: OptimizerPlan) -> None:
    # the rates of kohya's parameter groups, text encoder first
    lrs = []
    if not config.network_train_unet_only:
        lrs.append(
            config.text_encoder_lr if config.text_encoder_lr is not None else config.learning_rate
        )
    if not config.network_train_text_encoder_only:
        lrs.append(config.unet_lr if config.unet_lr is not None else config.learning_rate)
    if lrs[0] <= 0.1:
        plan.warnings.append(
            f"{plan.class_name} adapts the step size itself: set the learning rate near 1.0, not {lrs[0]}"
        )
    if len(set(lrs)) > 1:
        plan.warnings.append(
            f"{plan.class_name} with different UNet and text encoder rates: kohya warns that only "
            f"the first ({lrs[0]}) takes effect"
        )


def _plan_adafactor(config: TrainConfig, plan: OptimizerPlan) -> None:
    kwargs = plan.kwargs
    kwargs.setdefault("relative_step", True)
    if not kwargs["relative_step"] and kwargs.get("warmup_init", False):
        kwargs["relative_step"] = True  # kohya: warmup_init only works with relative_step
    if not kwargs["relative_step"]:
        if config.max_grad_norm:
            plan.warnings.append(
                "Adafactor: max_grad_norm clipping is on; kohya suggests max_grad_norm = 0"
            )
        if config.lr_scheduler != "constant_with_warmup":
            plan.warnings.append(
                "Adafactor without relative_step: kohya suggests lr_scheduler constant_with_warmup"
            )
        return
    # Adafactor picks its own step size; kohya then uses learning_rate as the initial lr of
    # its adafactor schedule and drops the per-part rates.
    plan.lr = None
    plan.keep_group_lrs = False
    plan.scheduler_override = f"adafactor:{config.learning_rate}"
    if config.unet_lr is not None or config.text_encoder_lr is not None:
        plan.warnings.append("Adafactor with relative_step ignores unet_lr and text_encoder_lr")
    if any("_lr_weight=" in arg for arg in config.network_args or []):
        plan.warnings.append("Adafactor with relative_step ignores the blocks' *_lr_weight")
    if config.lr_scheduler not in ("constant", "adafactor"):
        plan.warnings.append(
            f"Adafactor with relative_step uses its own schedule, not lr_scheduler {config.lr_scheduler}"
        )


def resolve_optimizer_class(plan: OptimizerPlan) -> type:
    """Import the optimizer class, with a clear error when its package is missing."""
    try:
        module = importlib.import_module(plan.module)
    except ImportError:
        package = plan.module.split(".")[0]
        pip = PIP_NAMES.get(package, package)
        raise ConfigError(
            f"optimizer {plan.class_name} needs the Python package '{pip}', which is not installed",
            fix=f"install it (pip install {pip}) or choose another optimizer_type such as AdamW",
        ) from None
    cls = getattr(module, plan.class_name, None)
    if cls is None:
        raise ConfigError(
            f"optimizer_type {plan.class_name!r} is not a class of {plan.module}",
            fix=_class_hint(module, plan.class_name),
        )
    return cls


def _class_hint(module: Any, name: str) -> str:
    candidates = [n for n in dir(module) if n[:1].isupper()]
    same = [n for n in candidates if n.lower() == name.lower()]
    close = same or difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    if close:
        return f"did you mean '{close[0]}'? (class names are case-sensitive)"
    named = ", ".join(sorted({c for _, c in NAMED_OPTIMIZERS.values()}))
    return f"use one of kohya's names ({named}) or a full class path like torch.optim.RMSprop"


def param_groups(
    network: LoraNetwork, config: TrainConfig, options: NetworkOptions
) -> list[dict[str, Any]]:
    """One group per part at unet_lr / text_encoder_lr (else learning_rate); LoRA+ puts lora_up apart.

    With kohya's *_lr_weight the UNet has one group per block ("unet_block7") at lr x weight;
    blocks whose rate is 0 (modules read by dim_from_weights) are frozen, as kohya leaves them out.
    """
    groups = []
    for part in network.part_names:
        lr = config.unet_lr if part == "unet" else config.text_encoder_lr
        lr = lr if lr is not None else config.learning_rate
        ratio = options.loraplus_ratio(part)
        plan = network.block_plan if part == "unet" else None
        if plan is None or plan.lr_weights is None:
            groups += _layer_groups([layer for _, layer in network.layers(part)], lr, ratio, part)
            continue
        by_block: dict[int, list] = {}
        for target, layer in network.layers(part):
            by_block.setdefault(block_index(target.kohya_name, plan.layout.sdxl), []).append(layer)
        for index, layers in sorted(by_block.items()):
            block_lr = lr * plan.lr_weight(index)
            if block_lr == 0:
                for layer in layers:
                    layer.lora_A[ADAPTER].weight.requires_grad_(False)
                    layer.lora_B[ADAPTER].weight.requires_grad_(False)
                continue
            groups += _layer_groups(layers, block_lr, ratio, f"unet_block{index}")
    if not groups:
        raise ConfigError(
            "nothing to train: every LoRA module has a learning rate of 0",
            fix="give some blocks an lr weight above 0",
        )
    return groups


def _layer_groups(layers: list, lr: float, ratio: float | None, name: str) -> list[dict[str, Any]]:
    downs = [layer.lora_A[ADAPTER].weight for layer in layers]
    ups = [layer.lora_B[ADAPTER].weight for layer in layers]
    if ratio is None:
        params = [p for pair in zip(downs, ups) for p in pair]  # LoraNetwork.parameters order
        return [{"params": params, "lr": lr, "name": name}]
    return [
        {"params": downs, "lr": lr, "name": name},
        {"params": ups, "lr": lr * ratio, "name": f"{name}_plus"},
    ]


def build_optimizer(network: LoraNetwork, config: TrainConfig) -> OptimizerSetup:
    """The optimizer over the network's parameters, configured as kohya would."""
    plan = plan_optimizer(config)
    cls = resolve_optimizer_class(plan)
    groups = param_groups(network, config, network_options(config))
    if not plan.keep_group_lrs:
        for group in groups:
            group.pop("lr")
    optimizer = _construct(cls, plan, groups)
    if plan.schedule_free:
        optimizer.train()  # schedule-free optimizers start in training mode
    name = f"{cls.__module__}.{cls.__name__}"
    return OptimizerSetup(optimizer, plan, name, dict(plan.kwargs))


def _construct(cls: type, plan: OptimizerPlan, groups: list[dict]) -> torch.optim.Optimizer:
    kwargs = {**plan.kwargs, **plan.fixed_kwargs}
    try:
        if f"{plan.module}.{plan.class_name}" in FUSED_CAPABLE and not _picks_kernel(kwargs):
            # the fused kernel (CUDA and CPU) does the same update several times faster
            try:
                return cls(groups, lr=plan.lr, fused=True, **kwargs)
            except (RuntimeError, ValueError):
                pass
        return cls(groups, lr=plan.lr, **kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"optimizer {plan.class_name} rejects its arguments: {exc}",
            fix="check optimizer_args names against the optimizer's documentation",
        ) from None


def _picks_kernel(kwargs: dict[str, Any]) -> bool:
    return any(k in kwargs for k in ("fused", "foreach", "capturable", "differentiable"))


def current_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The rate each part is stepped with (for D-Adaptation/Prodigy: d * lr, as kohya logs)."""
    out = {}
    for i, group in enumerate(optimizer.param_groups):
        lr = float(group.get("lr") or 0.0)
        if "d" in group:
            lr *= float(group["d"])
        out[group.get("name", f"group{i}")] = lr
    return out


@contextlib.contextmanager
def evaluation_weights(setup: OptimizerSetup) -> Iterator[None]:
    """Schedule-free optimizers hold the weights to save or sample only in eval mode (kohya's optimizer_eval_fn)."""
    switch = setup.plan.schedule_free
    if switch:
        setup.optimizer.eval()
    try:
        yield
    finally:
        if switch:
            setup.optimizer.train()
