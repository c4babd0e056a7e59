"""One training configuration with kohya's option names, loaded from TOML, JSON or flags."""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
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
    dim_from_weights: bool = False  # kohya: modules, ranks and alphas from network_weights
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
    # sample images, saving and resuming (kohya names and defaults; checked by
    # validate_sampling_and_saving)
    sample_prompts: str | None = None
    sample_every_n_steps: int | None = None
    sample_every_n_epochs: int | None = None
    sample_at_first: bool = False
    sample_sampler: str = "ddim"
    save_every_n_steps: int | None = None
    save_n_epoch_ratio: int | None = None
    save_last_n_epochs: int | None = None
    save_last_n_epochs_state: int | None = None
    save_last_n_steps: int | None = None
    save_last_n_steps_state: int | None = None
    save_state: bool = False
    save_state_on_train_end: bool = False
    resume: str | None = None
    # kohya's start in the middle of a run without a state (train.start_position)
    initial_epoch: int | None = None  # 1 = the first epoch
    initial_step: int | None = None  # 0 = the first step; wins over initial_epoch
    skip_until_initial_step: bool = False  # also skip the data (and count the steps) before it
    # dataset: buckets, captions, regularization, augmentation, caches (kohya names and
    # defaults; checked by validate_dataset_options)
    dataset_config: str | None = None
    reg_data_dir: str | None = None
    prior_loss_weight: float = 1.0
    enable_bucket: bool = False
    min_bucket_reso: int = 256
    max_bucket_reso: int = 1024
    bucket_reso_steps: int = 64
    bucket_no_upscale: bool = False
    shuffle_caption: bool = False
    caption_separator: str = ","
    keep_tokens: int = 0
    keep_tokens_separator: str = ""
    secondary_separator: str | None = None
    enable_wildcard: bool = False
    caption_prefix: str | None = None
    caption_suffix: str | None = None
    caption_dropout_rate: float = 0.0
    caption_dropout_every_n_epochs: int = 0
    caption_tag_dropout_rate: float = 0.0
    token_warmup_min: int = 1
    token_warmup_step: float = 0
    flip_aug: bool = False
    color_aug: bool = False
    random_crop: bool = False
    cache_latents: bool = False
    cache_latents_to_disk: bool = False
    vae_batch_size: int = 1
    cache_text_encoder_outputs: bool = False
    # 0: load batches in the training thread; more: load the next batches in a background
    # thread while a step trains, decoding one batch's images in up to this many threads
    max_data_loader_n_workers: int = 8
    persistent_data_loader_workers: bool = False  # keep the loader threads across epochs
    skip_bad_images: bool = False  # ours: train without unreadable images instead of stopping
    allow_symlinks: bool = False  # ours: follow links that lead outside the dataset folders
    # training options: LoCon/dropout, optimizer, lr schedule, precision, noise and loss
    # (kohya names and defaults; checked by validate_training_options)
    network_args: list[str] | None = None  # kohya's "key=value" list for networks.lora
    network_dropout: float | None = None
    conv_dim: int | None = None  # the kohya_ss GUI's form of network_args conv_dim
    conv_alpha: float | None = None
    scale_weight_norms: float | None = None
    optimizer_args: list[str] | None = None  # "key=value", values as Python literals
    use_8bit_adam: bool = False
    use_lion_optimizer: bool = False
    lr_scheduler_type: str = ""
    lr_scheduler_args: list[str] | None = None
    lr_decay_steps: float = 0
    lr_scheduler_timescale: int | None = None
    lr_scheduler_min_lr_ratio: float | None = None
    full_fp16: bool = False
    full_bf16: bool = False
    no_half_vae: bool = False
    noise_offset: float | None = None
    noise_offset_random_strength: bool = False
    adaptive_noise_scale: float | None = None
    multires_noise_iterations: int | None = None
    multires_noise_discount: float = 0.3
    ip_noise_gamma: float | None = None
    ip_noise_gamma_random_strength: bool = False
    zero_terminal_snr: bool = False
    min_timestep: int | None = None
    max_timestep: int | None = None
    min_snr_gamma: float | None = None
    debiased_estimation_loss: bool = False
    scale_v_pred_loss_like_noise_pred: bool = False
    v_pred_like_loss: float | None = None
    loss_type: str = "l2"
    huber_schedule: str = "snr"
    huber_c: float = 0.1
    huber_scale: float = 1.0
    # model family and text encoding (kohya names and defaults; checked by
    # validate_model_options; the family itself is detected from the model's weights)
    v2: bool = False  # kohya: load an SD2.x model; here a check that the model is SD2.x
    v_parameterization: bool = False  # train for v-prediction (SD2 768-v models)
    sdxl: bool = False  # the kohya_ss GUI's switch to sdxl_train_network.py; here a check
    vae: str | None = None  # a VAE file or diffusers folder replacing the model's VAE
    clip_skip: int | None = None
    max_token_length: int | None = None  # None (75), 150 or 225

    @property
    def resolution_wh(self) -> tuple[int, int]:
        """(width, height) from kohya's "512" or "512,768" form."""
        return parse_resolution(self.resolution)


OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainConfig))

# kohya options that this version does not implement yet: named so that a user gets
# "not supported yet" instead of "unknown option".
NOT_YET_SUPPORTED: frozenset[str] = frozenset(
    {
        "xformers", "sdpa", "mem_eff_attn", "lowram",
        # resume variants through the Hugging Face Hub
        "resume_from_huggingface", "save_state_to_huggingface",
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
    """'did you mean ...?' for an unknown option name, or where the option list is."""
    close = difflib.get_close_matches(name, OPTION_NAMES, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return (
        "use kohya's option names, as README.md lists them ('python -m lora_trainer train --help')"
    )


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


def coerce_option(name: str, value: Any, source: str = "options") -> Any:
    """One option value from TOML/JSON/flags/forms in the option's type (ConfigError if it cannot be)."""
    return _coerce(name, value, get_type_hints(TrainConfig)[name], source)


def _coerce(name: str, value: Any, hint: Any, source: str) -> Any:
    """Turn TOML/JSON/flag values into the option's type, with a clear error."""
    text = getattr(hint, "__name__", None) if isinstance(hint, type) else str(hint)
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
        if text.startswith("list"):
            return _to_str_list(value)
        if text.startswith("str") or hint is str:
            if isinstance(value, (list, tuple)) and name == "resolution":
                return ",".join(str(v) for v in value)
            if isinstance(value, (dict, list, tuple)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        kind = text.split(" ")[0].split("|")[0]
        noun = {"bool": "true or false", "int": "a whole number", "float": "a number"}.get(
            kind, f"a {kind}"
        )
        raise ConfigError(f"option '{name}' must be {noun}, got {value!r}", where=source) from None
    return value


def _to_str_list(value: Any) -> list[str]:
    # kohya's nargs="*" options: a TOML/JSON list, or one string of space-separated
    # key=value entries (a value may hold spaces: "betas=(0.9, 0.99) eps=1e-8")
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, (dict, list, tuple)) for v in value):
            raise ValueError
        return [str(v) for v in value]
    if isinstance(value, (dict, bool)):
        raise ValueError
    return [p for p in re.split(r"\s+(?=[A-Za-z_][\w.]*=)", str(value).strip()) if p]


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
    validate_sampling_and_saving(config)
    validate_training_options(config)
    validate_dataset_options(config)
    validate_model_options(config)


def validate_model_options(config: TrainConfig) -> None:
    """v2 / sdxl / vae / clip_skip / max_token_length; their fit to the model is checked once it loads."""
    if config.v2 and config.sdxl:
        raise ConfigError("v2 and sdxl are both set", fix="set the one that matches the model")
    if config.vae is not None and not str(config.vae).strip():
        raise ConfigError("vae is empty", fix="give a VAE file, or leave the option out")
    if config.clip_skip is not None and config.clip_skip < 1:
        raise ConfigError(
            f"clip_skip must be 1 or more, got {config.clip_skip}",
            fix="use 1 (the last layer) or 2 (the one before)",
        )
    if config.max_token_length == 75:
        # the kohya_ss GUI's 75 is kohya's default, written as None in the metadata
        config.max_token_length = None
    if config.max_token_length not in (None, 150, 225):
        raise ConfigError(
            f"max_token_length must be 75, 150 or 225, got {config.max_token_length}",
            fix="use 150 or 225 for longer captions, or leave it out for 75",
        )


def validate_sampling_and_saving(config: TrainConfig) -> None:
    """Sample-image, save-interval and resume options (kohya's rules, with clearer errors).

    The prompt file, the sampler name and the state folder are checked in train.job.prepare.
    """
    for name in (
        "sample_every_n_steps", "sample_every_n_epochs", "save_every_n_steps",
        "save_n_epoch_ratio", "save_last_n_epochs", "save_last_n_epochs_state",
        "save_last_n_steps", "save_last_n_steps_state",
    ):  # fmt: skip
        value = getattr(config, name)
        # 0 means off, as in kohya (and the kohya_ss GUI writes 0 for off)
        if value is not None and value < 0:
            raise ConfigError(f"{name} must be 0 (off) or more, got {value}")
    _check_initial_position(config)


def _check_initial_position(config: TrainConfig) -> None:
    """initial_epoch / initial_step values; the step count is checked in train.job.prepare."""
    _check_at_least("initial_epoch", config.initial_epoch, 1)
    _check_at_least("initial_step", config.initial_step, 0)
    if config.resume and (config.initial_epoch is not None or config.initial_step is not None):
        # kohya lets initial_* override the state's step; our states always know their
        # step and data position, so the two together can only disagree
        raise ConfigError(
            "initial_epoch / initial_step cannot be used with resume: the state already "
            "continues at its own step",
            fix="remove initial_epoch and initial_step, or start without resume",
        )


def validate_training_options(config: TrainConfig) -> None:
    """LoCon/dropout, optimizer, lr schedule, precision, noise and loss options (kohya's rules).

    Also imports the optimizer's package, so a missing one is reported before any model loads.
    """
    for name in ("lr_warmup_steps", "lr_decay_steps"):
        value = getattr(config, name)
        if value < 0 or (value >= 1 and not float(value).is_integer()):
            raise ConfigError(
                f"{name} must be a whole number of steps or a fraction below 1, got {value}",
                fix="e.g. 100 (steps) or 0.05 (5% of all steps)",
            )
    _check_at_least("lr_scheduler_num_cycles", config.lr_scheduler_num_cycles, 1)
    _check_at_least("lr_scheduler_timescale", config.lr_scheduler_timescale, 1)
    _check_positive("lr_scheduler_power", config.lr_scheduler_power)
    ratio = config.lr_scheduler_min_lr_ratio
    if ratio is not None and not 0 <= ratio <= 1:
        raise ConfigError(f"lr_scheduler_min_lr_ratio must be between 0 and 1, got {ratio}")
    for name in ("max_grad_norm", "noise_offset", "ip_noise_gamma", "v_pred_like_loss"):
        _check_at_least(name, getattr(config, name), 0)
    for name in ("scale_weight_norms", "min_snr_gamma", "huber_c", "huber_scale"):
        _check_positive(name, getattr(config, name))
    if config.multires_noise_iterations is not None and config.multires_noise_iterations < 0:
        raise ConfigError(
            "multires_noise_iterations must be 0 (off) or more", fix="6 to 10 is typical"
        )
    if not 0 < config.multires_noise_discount <= 1:
        raise ConfigError(
            "multires_noise_discount must be above 0 and at most 1", fix="0.3 is typical"
        )
    if config.adaptive_noise_scale is not None and config.noise_offset is None:
        raise ConfigError(
            "adaptive_noise_scale needs noise_offset", fix="set noise_offset too, e.g. 0.05"
        )
    _check_timestep_range(config.min_timestep, config.max_timestep)
    _check_choice("loss_type", config.loss_type, ("l2", "l1", "huber", "smooth_l1"))
    _check_choice("huber_schedule", config.huber_schedule, ("snr", "exponential", "constant"))
    _check_full_precision(config)
    from .train.optim import check_optimization_options  # train imports config: load it late

    check_optimization_options(config)


def _check_at_least(name: str, value: float | None, low: float) -> None:
    if value is not None and value < low:
        raise ConfigError(f"{name} must be at least {low}, got {value}")


def _check_positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise ConfigError(f"{name} must be above 0, got {value}")


def _check_timestep_range(low: int | None, high: int | None) -> None:
    # the SD noise schedule has 1000 timesteps; kohya samples in [min_timestep, max_timestep)
    if low is not None and not 0 <= low <= 999:
        raise ConfigError(f"min_timestep must be 0 to 999, got {low}")
    if high is not None and not 1 <= high <= 1000:
        raise ConfigError(f"max_timestep must be 1 to 1000, got {high}")
    lo, hi = (0 if low is None else low), (1000 if high is None else high)
    if lo > hi:
        raise ConfigError(
            f"min_timestep {lo} is above max_timestep {hi}",
            fix="max_timestep is exclusive: give it the larger value (equal values train one timestep)",
        )


def _check_full_precision(config: TrainConfig) -> None:
    if config.full_fp16 and config.full_bf16:
        raise ConfigError("full_fp16 and full_bf16 are both set", fix="set at most one of them")
    for name, needed in (("full_fp16", "fp16"), ("full_bf16", "bf16")):
        if getattr(config, name) and config.mixed_precision != needed:
            raise ConfigError(
                f"{name} needs mixed_precision {needed}, got {config.mixed_precision!r}",
                fix=f'set mixed_precision = "{needed}"',
            )


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


def validate_dataset_options(config: TrainConfig) -> None:
    """Bucket, caption, regularization, augmentation and cache options (kohya's rules)."""
    for name in ("caption_dropout_rate", "caption_tag_dropout_rate"):
        value = getattr(config, name)
        if not 0 <= value <= 1:
            raise ConfigError(
                f"{name} must be between 0 and 1, got {value}", fix="0.05 to 0.1 is typical"
            )
    for name in ("keep_tokens", "caption_dropout_every_n_epochs", "token_warmup_min",
                 "token_warmup_step", "prior_loss_weight", "max_data_loader_n_workers"):  # fmt: skip
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} must not be negative, got {getattr(config, name)}")
    if config.vae_batch_size < 1:
        raise ConfigError(f"vae_batch_size must be at least 1, got {config.vae_batch_size}")
    if not config.caption_separator:
        raise ConfigError("caption_separator is empty", fix='use "," (kohya\'s default)')
    caching = config.cache_latents or config.cache_latents_to_disk
    if caching and (config.color_aug or config.random_crop):
        raise ConfigError(
            "cache_latents cannot be used with color_aug or random_crop (a cached latent cannot change)",
            fix="turn off the latent cache, or color_aug and random_crop",
        )
    if config.cache_text_encoder_outputs:
        validate_text_encoder_cache(config)
    if config.enable_bucket and config.dataset_config is None:
        _validate_buckets(config)


def validate_text_encoder_cache(config: TrainConfig) -> None:
    """kohya caches text-encoder outputs only when the text encoder is frozen and captions never change."""
    if not config.network_train_unet_only:
        raise ConfigError(
            "cache_text_encoder_outputs needs a frozen text encoder",
            fix="set network_train_unet_only, or turn off cache_text_encoder_outputs",
        )
    varying = [
        name
        for name in (
            "shuffle_caption",
            "caption_tag_dropout_rate",
            "token_warmup_step",
            "enable_wildcard",
        )
        if getattr(config, name)
    ]
    if varying:
        raise ConfigError(
            f"cache_text_encoder_outputs cannot be used with {', '.join(varying)} (captions change every step)",
            fix="turn those off, or turn off cache_text_encoder_outputs",
        )


def _validate_buckets(config: TrainConfig) -> None:
    step, lo, hi = config.bucket_reso_steps, config.min_bucket_reso, config.max_bucket_reso
    if step < 8 or step % 8:
        raise ConfigError(
            f"bucket_reso_steps must be a positive multiple of 8, got {step}",
            fix="use 64 for SD1/SD2 or 32 for SDXL",
        )
    lo -= lo % step  # kohya snaps min down and max up to the step
    hi += (step - hi % step) % step
    width, height = config.resolution_wh
    if lo < 1 or min(width, height) < lo:
        raise ConfigError(
            f"min_bucket_reso ({lo}) must be positive and at most the resolution's short side ({min(width, height)})",
            fix=f"set min_bucket_reso to {min(width, height)} or less",
        )
    if max(width, height) > hi:
        raise ConfigError(
            f"max_bucket_reso ({hi}) is smaller than the resolution's long side ({max(width, height)})",
            fix=f"set max_bucket_reso to {max(width, height)} or more",
        )
