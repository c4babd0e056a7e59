"""The ss_* and modelspec.* metadata kohya's train_network.py writes, built from our run's facts.

Values are formatted exactly as kohya formats them: str() of the Python value ("None",
"False", "(64, 64)", "0.0001") and json.dumps with its default separators and
ensure_ascii for dicts. Not written: ss_sd_scripts_commit_hash (we are not sd-scripts;
modelspec.implementation_version names this program instead). sshs_* hashes are added
by kohya_file.save_kohya_lora.
"""

from __future__ import annotations

import datetime
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..config import TrainConfig

# kohya options that TrainConfig does not have yet, with the value kohya's argparse gives
# them when they are not passed. A value is looked up on TrainConfig first, then in
# TrainingFacts.kohya_options, then here: adding the option to TrainConfig is enough
# for its real value to be written.
KOHYA_DEFAULTS: dict[str, Any] = {
    "full_fp16": False, "clip_skip": None, "max_token_length": None, "cache_latents": False,
    "lowram": False, "noise_offset": None,
    "multires_noise_iterations": None, "multires_noise_discount": 0.3,
    "adaptive_noise_scale": None, "zero_terminal_snr": False, "caption_dropout_rate": 0.0,
    "caption_dropout_every_n_epochs": 0, "caption_tag_dropout_rate": 0.0,
    "face_crop_aug_range": None, "prior_loss_weight": 1.0, "min_snr_gamma": None,
    "scale_weight_norms": None, "ip_noise_gamma": None, "debiased_estimation_loss": False,
    "noise_offset_random_strength": False, "ip_noise_gamma_random_strength": False,
    "loss_type": "l2", "huber_schedule": "snr", "huber_scale": 1.0, "huber_c": 0.1,
    "fp8_base": False, "fp8_base_unet": False, "validation_seed": None,
    "validation_split": 0.0, "max_validation_steps": None, "validate_every_n_epochs": None,
    "validate_every_n_steps": None, "resize_interpolation": None, "network_dropout": None,
    "network_args": None, "color_aug": False, "flip_aug": False, "random_crop": False,
    "shuffle_caption": False, "keep_tokens": 0, "enable_bucket": False,
    "bucket_no_upscale": False, "min_bucket_reso": 256, "max_bucket_reso": 1024,
    "bucket_reso_steps": 64, "min_timestep": None, "max_timestep": None,
    "metadata_title": None, "metadata_author": None, "metadata_description": None,
    "metadata_license": None, "metadata_tags": None,
}  # fmt: skip

SDXL_VERSION = "sdxl_base_v1-0"
IMPL_DIFFUSERS = "diffusers"
IMPL_SGM = "https://github.com/Stability-AI/generative-models"


@dataclass
class TrainingFacts:
    """What a training run knows that goes into the metadata (None = take it from config)."""

    config: TrainConfig
    output_name: str | None = None
    base_model_name: str | None = None  # file base name, or the name the model was given
    base_model_legacy_hash: str | None = None  # old 8-hex hash; only when the model is a file
    base_model_sha256: str | None = None
    base_model_version: str | None = None  # "sd_v1", "sd_v2_v", "sdxl_base_v1-0"...; None: derived
    v2: bool = False
    v_parameterization: bool = False
    sdxl: bool = False
    resolution: tuple[int, int] | None = None  # (width, height)
    num_train_images: int = 0  # including repeats, as kohya counts them
    num_reg_images: int = 0
    num_validation_images: int = 0
    num_batches_per_epoch: int = 0
    num_epochs: int = 1
    batch_size: int | None = None  # per device
    total_batch_size: int | None = None  # batch x processes x gradient accumulation
    max_train_steps: int | None = None
    steps: int = 0
    epoch: int = 0
    seed: int | None = None  # the seed really used (kohya draws one when none is given)
    training_started_at: float = field(default_factory=time.time)
    training_finished_at: float | None = None  # None: now, as kohya stamps each save
    session_id: int = field(default_factory=lambda: random.randint(0, 2**32))
    tag_frequency: dict[str, dict[str, int]] = field(default_factory=dict)
    dataset_dirs: dict[str, dict[str, int]] = field(default_factory=dict)
    reg_dataset_dirs: dict[str, dict[str, int]] = field(default_factory=dict)
    bucket_info: dict[str, Any] | None = None  # None when buckets are off (written "null")
    datasets: list[dict[str, Any]] | None = None  # dataset_config mode: kohya's ss_datasets list
    optimizer: str = "torch.optim.adamw.AdamW"  # class module + "." + class name
    optimizer_args: dict[str, Any] = field(default_factory=dict)
    vae_name: str | None = None
    vae_legacy_hash: str | None = None
    vae_sha256: str | None = None
    kohya_options: dict[str, Any] = field(default_factory=dict)


def model_version_string(v2: bool, v_parameterization: bool, sdxl: bool = False) -> str:
    """kohya's ss_base_model_version: sd_v1, sd_v1_v, sd_v2, sd_v2_v or sdxl_base_v1-0."""
    if sdxl:
        return SDXL_VERSION
    return "sd" + ("_v2" if v2 else "_v1") + ("_v" if v_parameterization else "")


def model_family(facts: TrainingFacts) -> tuple[bool, bool, bool]:
    """(v2, v_parameterization, sdxl) from the flags, or from base_model_version when only it is set."""
    version = facts.base_model_version or ""
    sdxl = facts.sdxl or version.startswith("sdxl")
    v2 = facts.v2 or version.startswith("sd_v2")
    return v2, facts.v_parameterization or version.endswith("_v"), sdxl


def option(facts: TrainingFacts, name: str) -> Any:
    """A kohya option's value: TrainConfig, then facts.kohya_options, then kohya's default."""
    if hasattr(facts.config, name):
        return getattr(facts.config, name)
    return facts.kohya_options.get(name, KOHYA_DEFAULTS[name])


def _int_or_float(value: Any) -> Any:
    # kohya parses lr_warmup_steps as an int when >= 1 and as a ratio below 1.
    if isinstance(value, float) and value >= 1 and value.is_integer():
        return int(value)
    return value


def _bucket_limits(facts: TrainingFacts, resolution: tuple[int, int]) -> tuple[Any, Any]:
    """min/max bucket sizes as kohya's dataset stores them: None without buckets, else snapped to steps."""
    if not option(facts, "enable_bucket"):
        return None, None
    lo, hi, step = (
        option(facts, n) for n in ("min_bucket_reso", "max_bucket_reso", "bucket_reso_steps")
    )
    lo -= lo % step
    hi += (step - hi % step) % step
    return lo, hi


# Options written as ss_<name> = str(value), exactly as kohya passes them through.
PASSTHROUGH_OPTIONS = (
    "learning_rate", "unet_lr", "gradient_checkpointing", "gradient_accumulation_steps",
    "lr_scheduler", "network_module", "network_dim", "network_alpha", "network_dropout",
    "mixed_precision", "full_fp16", "clip_skip", "max_token_length", "cache_latents", "lowram",
    "noise_offset", "multires_noise_iterations", "multires_noise_discount",
    "adaptive_noise_scale", "zero_terminal_snr", "training_comment", "max_grad_norm",
    "caption_dropout_rate", "caption_dropout_every_n_epochs", "caption_tag_dropout_rate",
    "face_crop_aug_range", "prior_loss_weight", "min_snr_gamma", "scale_weight_norms",
    "ip_noise_gamma", "noise_offset_random_strength", "ip_noise_gamma_random_strength",
    "loss_type", "huber_schedule", "huber_scale", "huber_c", "fp8_base", "fp8_base_unet",
    "validation_seed", "validation_split", "max_validation_steps", "validate_every_n_epochs",
    "validate_every_n_steps", "resize_interpolation",
)  # fmt: skip


def build_metadata(facts: TrainingFacts) -> dict[str, str]:
    """Every ss_* and modelspec.* key kohya writes for an equivalent run, as strings."""
    config = facts.config
    output_name = facts.output_name or config.output_name
    resolution = facts.resolution or config.resolution_wh
    te_lr = config.text_encoder_lr
    if isinstance(te_lr, (list, tuple)):  # kohya's nargs="*" form: the first value counts
        te_lr = te_lr[0] if te_lr else None
    opt_args = ",".join(f"{k}={v}" for k, v in facts.optimizer_args.items())
    md: dict[str, Any] = {f"ss_{name}": option(facts, name) for name in PASSTHROUGH_OPTIONS}
    md.update(
        {
            "ss_session_id": facts.session_id,
            "ss_training_started_at": facts.training_started_at,
            "ss_output_name": output_name,
            "ss_text_encoder_lr": te_lr,
            "ss_num_train_images": facts.num_train_images,
            "ss_num_validation_images": facts.num_validation_images,
            "ss_num_reg_images": facts.num_reg_images,
            "ss_num_batches_per_epoch": facts.num_batches_per_epoch,
            "ss_num_epochs": facts.num_epochs,
            "ss_max_train_steps": facts.max_train_steps or config.max_train_steps,
            "ss_lr_warmup_steps": _int_or_float(config.lr_warmup_steps),
            "ss_v2": model_family(facts)[0],
            "ss_base_model_version": facts.base_model_version
            or model_version_string(*model_family(facts)),
            "ss_seed": facts.seed if facts.seed is not None else config.seed,
            "ss_optimizer": facts.optimizer + (f"({opt_args})" if opt_args else ""),
            "ss_debiased_estimation": bool(option(facts, "debiased_estimation_loss")),
        }
    )
    md.update(_dataset_metadata(facts, resolution))
    network_args = option(facts, "network_args")
    if network_args:
        # kohya adds network_dropout to the kwargs only when it builds the network from the
        # options, not with dim_from_weights
        from_weights = bool(getattr(config, "dim_from_weights", False))
        kwargs = _network_kwargs(
            network_args, md["ss_network_dropout"], add_dropout=not from_weights
        )
        md["ss_network_args"] = json.dumps(kwargs)
    for part, name, legacy, sha256 in (
        ("sd_model", facts.base_model_name, facts.base_model_legacy_hash, facts.base_model_sha256),
        ("vae", facts.vae_name, facts.vae_legacy_hash, facts.vae_sha256),
    ):
        if name is not None:  # kohya hashes only models that are files: hashes may be None
            if legacy is not None:
                md[f"ss_{part}_hash"] = legacy
            if sha256 is not None:
                md[f"ss_new_{part}_hash"] = sha256
            md[f"ss_{part}_name"] = name
    finished = facts.training_finished_at
    finished = time.time() if finished is None else finished
    md.update(ss_training_finished_at=finished, ss_steps=facts.steps, ss_epoch=facts.epoch)
    md = {k: str(v) for k, v in md.items()}
    md.update(build_modelspec(facts, output_name, resolution, finished))
    return md


def _dataset_metadata(facts: TrainingFacts, resolution: tuple[int, int]) -> dict[str, Any]:
    """The dataset keys: kohya writes different ones with and without a dataset_config file."""
    if facts.datasets is not None:
        return {
            "ss_datasets": json.dumps(facts.datasets),
            "ss_tag_frequency": json.dumps(facts.tag_frequency),
            "ss_dataset_dirs": json.dumps(facts.dataset_dirs),
        }
    o = lambda name: option(facts, name)  # noqa: E731
    min_reso, max_reso = _bucket_limits(facts, resolution)
    enabled = bool(o("enable_bucket"))
    batch_size = facts.batch_size or facts.config.train_batch_size
    return {
        "ss_batch_size_per_device": batch_size,
        "ss_total_batch_size": facts.total_batch_size
        or batch_size * facts.config.gradient_accumulation_steps,
        "ss_resolution": tuple(resolution),
        "ss_color_aug": bool(o("color_aug")),
        "ss_flip_aug": bool(o("flip_aug")),
        "ss_random_crop": bool(o("random_crop")),
        "ss_shuffle_caption": bool(o("shuffle_caption")),
        "ss_enable_bucket": enabled,
        "ss_bucket_no_upscale": bool(o("bucket_no_upscale")) if enabled else False,
        "ss_min_bucket_reso": min_reso,
        "ss_max_bucket_reso": max_reso,
        "ss_keep_tokens": o("keep_tokens"),
        "ss_dataset_dirs": json.dumps(facts.dataset_dirs),
        "ss_reg_dataset_dirs": json.dumps(facts.reg_dataset_dirs),
        "ss_tag_frequency": json.dumps(facts.tag_frequency),
        "ss_bucket_info": json.dumps(facts.bucket_info),
    }


def _network_kwargs(network_args: Any, dropout: Any, add_dropout: bool = True) -> dict[str, Any]:
    """kohya's net_kwargs: "key=value" strings kept as strings, plus dropout unless given."""
    if isinstance(network_args, dict):
        kwargs = {str(k): v for k, v in network_args.items()}
    else:
        kwargs = dict(arg.split("=", 1) for arg in network_args)
    if add_dropout:
        kwargs.setdefault("dropout", dropout)
    return kwargs


def build_modelspec(
    facts: TrainingFacts, title: str, resolution: tuple[int, int], timestamp: float
) -> dict[str, str]:
    """modelspec.* keys as sd-scripts' sai_model_spec.build_metadata makes them for a LoRA."""
    arch = "stable-diffusion-v1"
    v2, v_parameterization, sdxl = model_family(facts)
    if v2:
        arch = "stable-diffusion-v2-" + ("768-v" if v_parameterization else "512")
    if sdxl:
        arch = "stable-diffusion-xl-v1-base"
    o = lambda name: option(facts, name)  # noqa: E731
    spec: dict[str, str | None] = {
        "architecture": arch + "/lora",
        # kohya names SGM as the implementation for SDXL LoRAs (SGM block names in the keys).
        "implementation": IMPL_SGM if sdxl else IMPL_DIFFUSERS,
        "title": o("metadata_title") or title,
        "resolution": f"{resolution[0]}x{resolution[1]}",
        "sai_model_spec": "1.0.1",
        "description": o("metadata_description"),
        "author": o("metadata_author"),
        # Local time without zone, whole seconds: what sd-scripts writes.
        "date": datetime.datetime.fromtimestamp(int(timestamp)).isoformat(),
        "license": o("metadata_license"),
        "tags": o("metadata_tags"),
        "prediction_type": "v" if v_parameterization else "epsilon",
    }
    lo, hi = o("min_timestep"), o("max_timestep")
    if lo is not None or hi is not None:
        spec["timestep_range"] = f"{lo if lo is not None else 0},{hi if hi is not None else 1000}"
    if o("clip_skip") is not None:
        spec["encoder_layer"] = str(o("clip_skip"))
    spec["implementation_version"] = f"lora_trainer/{__version__}"
    return {f"modelspec.{k}": str(v) for k, v in spec.items() if v is not None}
