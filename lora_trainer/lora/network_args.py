"""kohya's `network_args` ("key=value" strings) for networks.lora, checked and typed."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError
from .blocks import (
    BLOCK_KEYS,
    SD_LAYOUT,
    SDXL_LAYOUT,
    BlockArgs,
    check_block_counts,
    parse_block_args,
)
from .network import NetworkSpec
from .targets import LoraTarget, unet_targets

# The keys networks.lora.create_network reads. kohya ignores any other key silently, so a
# typo ("conv_dims=8") trains without LoCon; here it is an error instead.
SUPPORTED_KEYS = (
    "conv_dim", "conv_alpha", "rank_dropout", "module_dropout", "dropout",
    "loraplus_lr_ratio", "loraplus_unet_lr_ratio", "loraplus_text_encoder_lr_ratio",
    *BLOCK_KEYS,
)  # fmt: skip


@dataclass(frozen=True)
class NetworkOptions:
    """Everything that shapes the LoRA modules and their training, kohya's defaults."""

    rank: int
    alpha: float
    conv_rank: int | None = None  # None: no 3x3-conv LoRA; 0: conv blocks without 3x3 (kohya)
    conv_alpha: float | None = None
    dropout: float | None = None  # network_dropout, on the lora_down output
    rank_dropout: float | None = None
    module_dropout: float | None = None
    loraplus_lr_ratio: float | None = None
    loraplus_unet_lr_ratio: float | None = None
    loraplus_text_encoder_lr_ratio: float | None = None
    blocks: BlockArgs | None = None  # block-wise ranks / lr weights (kohya's block_dims...)
    from_weights: bool = False  # dim_from_weights: modules, ranks and alphas from the file
    warnings: tuple[str, ...] = ()

    @property
    def spec(self) -> NetworkSpec:
        """What LoraNetwork.inject needs (LoRA+ ratios are the optimizer's business)."""
        return NetworkSpec(
            self.rank, self.alpha, self.dropout, self.conv_rank, self.conv_alpha,
            self.rank_dropout, self.module_dropout,
        )  # fmt: skip

    def loraplus_ratio(self, part: str) -> float | None:
        """LoRA+ ratio of the lora_up learning rate for "unet" or a text encoder part."""
        specific = (
            self.loraplus_unet_lr_ratio if part == "unet" else self.loraplus_text_encoder_lr_ratio
        )
        return specific or self.loraplus_lr_ratio


def split_key_values(items: list[str] | None, option: str) -> dict[str, str]:
    """kohya's "key=value" list as a dict of strings (the first '=' splits)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"{option} entry {item!r} is not key=value",
                fix=f'write each {option} entry as key=value, e.g. "conv_dim=8"',
            )
        out[key] = value.strip()
    return out


def effective_network_args(config: TrainConfig) -> list[str] | None:
    """network_args as kohya would have received them: top-level conv_dim/conv_alpha folded in.

    The kohya_ss GUI (and our tab) set conv_dim/conv_alpha as plain options and pass them
    to sd-scripts as network_args, which is what the ss_network_args metadata records.
    """
    args = list(config.network_args or [])
    given = split_key_values(args, "network_args")
    for key in ("conv_dim", "conv_alpha"):
        value = getattr(config, key, None)
        if value is not None and key not in given:
            args.append(f"{key}={_plain_number(value)}")
    return args or None


def _plain_number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def network_options(config: TrainConfig) -> NetworkOptions:
    """The network's rank, alpha, LoCon and dropout settings from options and network_args."""
    args = split_key_values(config.network_args, "network_args")
    _check_keys(args)
    for key in ("conv_dim", "conv_alpha"):
        top = getattr(config, key, None)
        if top is not None and key in args and _number(args[key], key, float) != float(top):
            raise ConfigError(
                f"{key} is set twice with different values ({top} and network_args {args[key]})",
                fix=f"set {key} in one place only",
            )
    conv_dim = args.get("conv_dim", config.conv_dim)
    conv_alpha = args.get("conv_alpha", config.conv_alpha)
    conv_rank = None if conv_dim is None else _number(conv_dim, "conv_dim", int)
    if conv_rank is not None and conv_alpha is None:
        conv_alpha = 1.0  # kohya's default once conv_dim is given
    if conv_rank is None and conv_alpha is not None:
        raise ConfigError(
            "conv_alpha is set but conv_dim is not, so there is no conv LoRA to scale",
            fix="set conv_dim too (e.g. conv_dim=8), or remove conv_alpha",
        )
    options = NetworkOptions(
        rank=config.network_dim,
        alpha=config.network_alpha,
        conv_rank=conv_rank,
        conv_alpha=None if conv_rank is None else _number(conv_alpha, "conv_alpha", float),
        dropout=config.network_dropout,  # kohya ignores network_args "dropout" for networks.lora
        rank_dropout=_optional(args, "rank_dropout"),
        module_dropout=_optional(args, "module_dropout"),
        loraplus_lr_ratio=_optional(args, "loraplus_lr_ratio"),
        loraplus_unet_lr_ratio=_optional(args, "loraplus_unet_lr_ratio"),
        loraplus_text_encoder_lr_ratio=_optional(args, "loraplus_text_encoder_lr_ratio"),
    )
    _check_ranges(options)
    return _with_blocks(options, args, config)


def _with_blocks(
    options: NetworkOptions, args: dict[str, str], config: TrainConfig
) -> NetworkOptions:
    """Block-wise args and dim_from_weights: checked as far as possible before the model loads."""
    blocks = parse_block_args(args) if any(k in args for k in BLOCK_KEYS) else None
    warnings: list[str] = []
    if config.dim_from_weights:
        if not config.network_weights:
            raise ConfigError(
                "dim_from_weights is set but network_weights is not",
                fix="give the LoRA file to take the ranks from in network_weights",
            )
        # kohya's create_network_from_weights reads only the lr weights from network_args
        unused = [
            k for k in ("conv_dim", "conv_alpha") if k in args or getattr(config, k) is not None
        ]
        unused += [k for k in (blocks.given() if blocks else []) if k.endswith(("dims", "alphas"))]
        if unused:
            warnings.append(
                f"dim_from_weights takes every rank and alpha from {config.network_weights}: "
                f"{', '.join(unused)} not used"
            )
        if blocks is not None:
            blocks = replace(blocks, dims=None, alphas=None, conv_dims=None, conv_alphas=None)
    if blocks is not None and blocks.active:
        layouts = (
            [SDXL_LAYOUT] if config.sdxl else [SD_LAYOUT] if config.v2 else [SD_LAYOUT, SDXL_LAYOUT]
        )
        check_block_counts(blocks, layouts)  # the model's own family is checked again at injection
    return replace(
        options, blocks=blocks, from_weights=config.dim_from_weights, warnings=tuple(warnings)
    )


def _check_keys(args: dict[str, str]) -> None:
    for key in args:
        if key not in SUPPORTED_KEYS:
            close = difflib.get_close_matches(key, SUPPORTED_KEYS, n=1)
            hint = (
                f"did you mean '{close[0]}'?"
                if close
                else "known keys: " + ", ".join(SUPPORTED_KEYS)
            )
            raise ConfigError(f"network_args key '{key}' is not a networks.lora argument", fix=hint)


def _number(value: Any, key: str, kind: type) -> Any:
    try:
        number = float(value)
        if kind is int:
            if not number.is_integer():
                raise ValueError
            return int(number)
        return number
    except (TypeError, ValueError):
        kind_name = "a whole number" if kind is int else "a number"
        raise ConfigError(f"network_args {key} must be {kind_name}, got {value!r}") from None


def _optional(args: dict[str, str], key: str) -> float | None:
    return None if key not in args else _number(args[key], key, float)


def _check_ranges(o: NetworkOptions) -> None:
    if o.conv_rank is not None and o.conv_rank < 0:
        raise ConfigError(
            f"conv_dim must be 0 or more, got {o.conv_rank}", fix="4 to 32 is typical"
        )
    if o.conv_alpha is not None and o.conv_alpha <= 0:
        raise ConfigError(
            f"conv_alpha must be positive, got {o.conv_alpha}", fix="use 1, or half of conv_dim"
        )
    for name in ("dropout", "rank_dropout"):
        value = getattr(o, name)
        if value is not None and not 0 <= value < 1:
            shown = "network_dropout" if name == "dropout" else name
            raise ConfigError(
                f"{shown} must be at least 0 and below 1, got {value}", fix="0.1 is typical"
            )
    if o.module_dropout is not None and not 0 <= o.module_dropout <= 1:
        raise ConfigError(
            f"module_dropout must be between 0 and 1, got {o.module_dropout}", fix="0.1 is typical"
        )
    for name in ("loraplus_lr_ratio", "loraplus_unet_lr_ratio", "loraplus_text_encoder_lr_ratio"):
        value = getattr(o, name)
        if value is not None and value <= 0:
            raise ConfigError(
                f"{name} must be positive, got {value}", fix="16 is the LoRA+ paper's value"
            )


def locon_targets(unet: nn.Module, conv_rank: int | None) -> list[LoraTarget]:
    """kohya's UNet targets: with conv_dim, ResNet/down/upsample blocks too (3x3 convs unless 0)."""
    targets = unet_targets(unet, include_conv3x3=conv_rank is not None)
    if conv_rank == 0:  # kohya still adds those blocks' Linear/1x1 layers, just no 3x3 conv
        targets = [t for t in targets if not t.is_conv3x3]
    return targets
