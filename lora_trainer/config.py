"""One training configuration with kohya's option names, loaded from TOML, JSON or flags."""

from __future__ import annotations

import dataclasses
import difflib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (A1111's default): install.py adds tomli there
    import tomli as tomllib

BUILTIN_TINY_MODEL = "builtin:tiny-sd1"


@dataclass
class TrainConfig:
    """kohya `train_network.py` options (same names, same defaults unless noted)."""

    # model
    pretrained_model_name_or_path: str | None = None
    # data
    train_data_dir: str | None = None
    caption_extension: str = ".caption"
    resolution: str = "512"
    # output
    output_dir: str | None = None
    output_name: str = "last"
    save_model_as: str = "safetensors"
    save_precision: str | None = None
    save_every_n_epochs: int | None = None
    training_comment: str | None = None
    overwrite: bool = False  # ours: kohya silently overwrites, we refuse unless asked
    # network
    network_module: str = "networks.lora"
    network_dim: int = 4
    network_alpha: float = 1.0
    network_weights: str | None = None
    network_train_unet_only: bool = False
    network_train_text_encoder_only: bool = False
    # optimisation
    # kohya's argparse default (2e-6) is meant for full fine-tuning; 1e-4 is what every
    # LoRA recipe, the kohya_ss GUI included, uses.
    learning_rate: float = 1e-4
    unet_lr: float | None = None
    text_encoder_lr: float | None = None
    optimizer_type: str = "AdamW"
    lr_scheduler: str = "constant"
    lr_warmup_steps: float = 0
    lr_scheduler_num_cycles: int = 1
    lr_scheduler_power: float = 1.0
    max_grad_norm: float = 1.0
    train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    max_train_steps: int = 1600
    max_train_epochs: int | None = None
    seed: int | None = None
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    # ours: where to train ("auto" = cuda when available, else cpu)
    device: str = "auto"

    @property
    def resolution_wh(self) -> tuple[int, int]:
        """(width, height) from kohya's "512" or "512,768" form."""
        return parse_resolution(self.resolution)


OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainConfig))

# kohya options that this version does not implement yet: named so that a user gets
# "not supported yet" instead of "unknown option".
NOT_YET_SUPPORTED: frozenset[str] = frozenset(
    {
        "v2", "v_parameterization", "sdxl", "enable_bucket", "min_bucket_reso", "max_bucket_reso",
        "bucket_reso_steps", "bucket_no_upscale", "shuffle_caption", "keep_tokens",
        "caption_dropout_rate", "caption_tag_dropout_rate", "caption_dropout_every_n_epochs",
        "reg_data_dir", "prior_loss_weight", "dataset_config", "cache_latents",
        "cache_latents_to_disk", "flip_aug", "color_aug", "random_crop", "clip_skip",
        "max_token_length", "noise_offset", "min_snr_gamma", "conv_dim", "conv_alpha",
        "network_dropout", "network_args", "optimizer_args", "sample_prompts",
        "sample_every_n_steps", "sample_every_n_epochs", "save_state", "resume",
        "full_fp16", "full_bf16", "xformers", "sdpa", "mem_eff_attn", "vae", "lowram",
    }
)  # fmt: skip


def parse_resolution(value: str | int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """kohya's `--resolution`: "512" means 512x512, "W,H" is width then height."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, (tuple, list)):
        parts = [str(v) for v in value]
    else:
        parts = [p.strip() for p in str(value).split(",")]
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2 or min(nums) < 64:
        raise ConfigError(
            f"resolution {value!r} is not valid",
            fix='give one size like "512" or width,height like "512,768", each at least 64',
        )
    return nums[0], nums[1]


def suggest_option(name: str) -> str:
    """' Did you mean ...?' for an unknown option name, or ''."""
    close = difflib.get_close_matches(name, OPTION_NAMES, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else "see 'python -m lora_trainer train --help'"


def config_from_dict(values: dict[str, Any], source: str = "options") -> TrainConfig:
    """Build a TrainConfig, rejecting unknown names and values of the wrong type."""
    hints = get_type_hints(TrainConfig)
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        key = name.lstrip("-").replace("-", "_")
        if key in NOT_YET_SUPPORTED:
            raise ConfigError(
                f"option '{key}' is a kohya option this version does not support yet",
                where=source,
                fix="remove it from the configuration",
            )
        if key not in OPTION_NAMES:
            raise ConfigError(f"unknown option '{key}'", where=source, fix=suggest_option(key))
        kwargs[key] = _coerce(key, value, hints[key], source)
    config = TrainConfig(**kwargs)
    validate(config)
    return config


def _coerce(name: str, value: Any, hint: Any, source: str) -> Any:
    """Turn TOML/JSON/flag values into the option's type, with a clear error."""
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"option '{name}' needs a value", where=source)
    try:
        if text.startswith("bool") or hint is bool:
            return _to_bool(value)
        if text.startswith("int") or hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if text.startswith("float") or hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if text.startswith("str") or hint is str:
            if isinstance(value, (list, tuple)) and name == "resolution":
                return ",".join(str(v) for v in value)
            if isinstance(value, (dict, list, tuple)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        kind = text.split(" ")[0].split("|")[0]
        raise ConfigError(f"option '{name}' must be {kind}, got {value!r}", where=source) from None
    return value


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def validate(config: TrainConfig) -> None:
    """Reject values kohya would reject (or silently misuse), before any heavy work."""
    if config.network_dim <= 0:
        raise ConfigError(
            f"network_dim must be a positive whole number, got {config.network_dim}",
            fix="use 4 to 128; 16 or 32 is typical",
        )
    if config.network_alpha <= 0:
        raise ConfigError(
            f"network_alpha must be positive, got {config.network_alpha}",
            fix="use 1, or half of network_dim",
        )
    for name in ("learning_rate", "unet_lr", "text_encoder_lr"):
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}", fix="1e-4 is typical")
    for name in ("train_batch_size", "gradient_accumulation_steps", "max_train_steps"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(config, name)}")
    for name in ("max_train_epochs", "save_every_n_epochs"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    _check_choice("network_module", config.network_module, ("networks.lora",))
    _check_choice("save_model_as", config.save_model_as, ("safetensors",))
    _check_choice("save_precision", config.save_precision, (None, "float", "fp16", "bf16"))
    _check_choice("mixed_precision", config.mixed_precision, ("no", "fp16", "bf16"))
    _check_choice("optimizer_type", config.optimizer_type.lower(), ("adamw",))
    _check_choice(
        "lr_scheduler",
        config.lr_scheduler,
        (
            "constant",
            "constant_with_warmup",
            "cosine",
            "cosine_with_restarts",
            "linear",
            "polynomial",
        ),
    )
    if config.network_train_unet_only and config.network_train_text_encoder_only:
        raise ConfigError(
            "network_train_unet_only and network_train_text_encoder_only are both set",
            fix="set at most one of them",
        )
    if not config.caption_extension.startswith("."):
        raise ConfigError(
            f"caption_extension must start with a dot, got {config.caption_extension!r}",
            fix='use ".txt" or ".caption"',
        )
    validate_output_name(config.output_name)
    parse_resolution(config.resolution)


def _check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        shown = ", ".join(str(c) for c in choices if c is not None)
        raise ConfigError(f"{name} {value!r} is not supported", fix=f"use one of: {shown}")


def validate_output_name(name: str) -> None:
    """An output name is a file name stem: no folders, no '..', nothing hidden."""
    bad = (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or ".." in name
        or name.startswith(".")
        or any(c in name for c in ':*?"<>|\0')
    )
    if bad:
        raise ConfigError(
            f"output_name {name!r} is not a plain file name",
            fix="use letters, digits, '-' or '_' only, without folders or '..' (set output_dir for the folder)",
        )


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON configuration into a flat dict of option values."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("configuration file not found", where=str(path))
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot parse the configuration: {exc}", where=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a table of option = value", where=str(path))
    return _flatten_sections(data)


def _flatten_sections(data: dict[str, Any]) -> dict[str, Any]:
    # kohya's --config_file TOML may group options in tables ([model_arguments] ...);
    # only the option names count, so tables are flattened.
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten_sections(value))
        else:
            flat[key] = value
    return flat


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The options that differ from kohya's defaults are not tracked: every option is returned."""
    return {name: getattr(config, name) for name in OPTION_NAMES}
