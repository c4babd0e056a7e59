"""Training presets: named option sets saved as JSON, kohya_ss GUI / kohya TOML import, kohya TOML export.

A preset holds kohya option values (TrainConfig names) and a few settings of the tab
(`extras`: sample prompt, activation text, preferred weight). Options tied to one run
(paths, the output name, the model) are not kept in presets.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import (
    NOT_YET_SUPPORTED,
    OPTION_NAMES,
    coerce_option,
    load_config_file,
    suggest_option,
    validate_output_name,
)
from .errors import ConfigError

PRESET_FORMAT = "lora-trainer-preset"
PRESET_VERSION = 1
EXTRA_KEYS = ("sample_prompt", "activation_text", "preferred_weight")

# options that belong to one run, not to a reusable preset
RUN_SPECIFIC = frozenset(
    {
        "pretrained_model_name_or_path", "train_data_dir", "reg_data_dir", "output_dir",
        "output_name", "network_weights", "resume", "dataset_config", "sample_prompts", "vae",
        "training_comment", "overwrite",
    }
)  # fmt: skip
# options of this program that kohya's train_network.py does not have
NOT_KOHYA = frozenset({"overwrite", "device", "skip_bad_images", "allow_symlinks", "sdxl"})

BUILTIN_PRESETS: dict[str, dict[str, Any]] = {
    "Balanced (rank 16)": {
        "network_dim": 16, "network_alpha": 8, "learning_rate": 1e-4, "unet_lr": 1e-4,
        "text_encoder_lr": 5e-5, "max_train_epochs": 10, "save_every_n_epochs": 2,
        "lr_scheduler": "cosine", "lr_warmup_steps": 0.05,
    },
    "Low VRAM": {
        "train_batch_size": 1, "gradient_checkpointing": True, "cache_latents": True,
        "network_train_unet_only": True, "cache_text_encoder_outputs": True,
        "network_dim": 8, "network_alpha": 4,
    },
    "Quick test": {"max_train_epochs": None, "max_train_steps": 50, "network_dim": 4,
                   "network_alpha": 1, "save_every_n_epochs": None},
}  # fmt: skip


@dataclass
class Preset:
    """A named set of option values and tab settings."""

    name: str
    options: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PRESET_FORMAT,
            "version": PRESET_VERSION,
            "name": self.name,
            "options": self.options,
            "extras": self.extras,
        }


@dataclass
class ImportResult:
    """Options read from another tool's file, and what could not be taken over."""

    options: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def check_options(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Known option names with values of the right type (cross-option rules come at Train)."""
    checked = {}
    for name, value in values.items():
        key = name.lstrip("-").replace("-", "_")
        if key in NOT_YET_SUPPORTED:
            raise ConfigError(f"option '{key}' is not supported yet", where=source, fix="remove it")
        if key not in OPTION_NAMES:
            raise ConfigError(f"unknown option '{key}'", where=source, fix=suggest_option(key))
        checked[key] = coerce_option(key, value, source)
    return checked


def preset_from_json(data: Any, source: str) -> Preset:
    """A preset file's content, checked."""
    if not isinstance(data, dict) or data.get("format") != PRESET_FORMAT:
        raise ConfigError(
            "this is not a LoRA Trainer preset",
            where=source,
            fix="import it as a kohya file instead",
        )
    if int(data.get("version", 0)) > PRESET_VERSION:
        raise ConfigError(
            "this preset was made by a newer version", where=source, fix="update the extension"
        )
    options = check_options(dict(data.get("options") or {}), source)
    extras = {k: v for k, v in dict(data.get("extras") or {}).items() if k in EXTRA_KEYS}
    return Preset(str(data.get("name") or Path(source).stem), options, extras)


def shareable(options: dict[str, Any]) -> dict[str, Any]:
    """The options a preset keeps: run-specific ones left out."""
    return {k: v for k, v in options.items() if k not in RUN_SPECIFIC}


class PresetStore:
    """Named presets as `<folder>/<name>.json`, plus the built-in ones (read-only)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def names(self) -> list[str]:
        saved = sorted(p.stem for p in self.folder.glob("*.json")) if self.folder.is_dir() else []
        return [*BUILTIN_PRESETS, *(n for n in saved if n not in BUILTIN_PRESETS)]

    def path(self, name: str) -> Path:
        _check_preset_name(name)
        return self.folder / f"{name}.json"

    def load(self, name: str) -> Preset:
        if name in BUILTIN_PRESETS:
            return Preset(name, dict(BUILTIN_PRESETS[name]))
        path = self.path(name)
        if not path.is_file():
            raise ConfigError(f"there is no preset named '{name}'", where=str(self.folder))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the preset: {exc}", where=str(path)) from None
        return preset_from_json(data, str(path))

    def save(self, preset: Preset, overwrite: bool = False) -> Path:
        if preset.name in BUILTIN_PRESETS:
            raise ConfigError(
                f"'{preset.name}' is a built-in preset", fix="save under another name"
            )
        path = self.path(preset.name)
        if path.exists() and not overwrite:
            raise ConfigError(
                f"a preset named '{preset.name}' exists", fix="choose another name, or tick Replace"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(preset.to_json(), indent=2) + "\n", encoding="utf-8")
        return path

    def delete(self, name: str) -> None:
        if name in BUILTIN_PRESETS:
            raise ConfigError(f"'{name}' is a built-in preset and cannot be deleted")
        path = self.path(name)
        if not path.is_file():
            raise ConfigError(f"there is no preset named '{name}'", where=str(self.folder))
        path.unlink()


def _check_preset_name(name: str) -> None:
    try:
        validate_output_name(name.strip())
    except ConfigError:
        raise ConfigError(
            f"preset name {name!r} is not a plain name",
            fix="use letters, digits, spaces, '-' or '_'",
        ) from None


# --- kohya_ss GUI JSON ---------------------------------------------------------------

GUI_RENAMES = {
    "max_resolution": "resolution",
    "optimizer": "optimizer_type",
    "lora_network_weights": "network_weights",
    "sdxl_no_half_vae": "no_half_vae",
}
# GUI fields the GUI passes to networks.lora as network_args (when set), in the GUI's order
GUI_BLOCK_ARGS = (
    "down_lr_weight", "mid_lr_weight", "up_lr_weight", "block_lr_zero_threshold",
    "block_dims", "block_alphas", "conv_block_dims", "conv_block_alphas",
)  # fmt: skip
# kohya reads these only together with block_dims or an *_lr_weight
GUI_BLOCK_MODIFIERS = (
    "block_lr_zero_threshold", "block_alphas", "conv_block_dims", "conv_block_alphas",
)  # fmt: skip
# GUI fields with no counterpart in a training run (machine, logging, LyCORIS knobs...)
GUI_ONLY = frozenset(
    {
        "model_list", "num_cpu_threads_per_process", "num_processes", "num_machines", "multi_gpu",
        "gpu_ids", "use_wandb", "wandb_api_key", "wandb_run_name", "log_tracker_name",
        "log_tracker_config", "logging_dir", "log_prefix", "LyCORIS_preset", "factor", "use_cp",
        "use_tucker", "use_scalar", "rank_dropout_scale", "constrain", "rescaled", "train_norm",
        "decompose_both", "train_on_input", "unit", "training_preset",
        "mem_eff_attn", "xformers", "sdpa", "save_as_bool",
        "sample_sampler_choice", "output_dir", "pretrained_model_name_or_path", "v2", "sdxl",
        "save_model_as", "weighted_captions", "stop_text_encoder_training", "epoch",
        "lr_warmup", "LoRA_type", "noise_offset_type", "additional_parameters", "sample_prompts",
        "sdxl_cache_text_encoder_outputs", "rank_dropout", "module_dropout", *GUI_BLOCK_ARGS,
    }
)  # fmt: skip
# options the GUI writes as 0 or "" when they are off
ZERO_IS_OFF = frozenset(
    {
        "max_train_steps", "max_train_epochs", "save_every_n_epochs", "save_every_n_steps",
        "save_last_n_steps", "save_last_n_steps_state", "sample_every_n_steps",
        "sample_every_n_epochs", "min_snr_gamma", "noise_offset", "adaptive_noise_scale",
        "multires_noise_iterations", "network_dropout", "scale_weight_norms", "v_pred_like_loss",
        "conv_dim", "conv_alpha", "clip_skip", "ip_noise_gamma", "max_token_length",
    }
)  # fmt: skip
# "LoCon" in old GUI files means LyCORIS LoCon (the GUI renames it so), not kohya's
STANDARD_TYPES = ("Standard", "Kohya LoCon")


def import_kohya_gui_json(data: Any, source: str = "kohya_ss GUI file") -> ImportResult:
    """Options from a kohya_ss GUI LoRA configuration (its saved .json)."""
    if not isinstance(data, dict):
        raise ConfigError("the file is not a kohya_ss GUI configuration", where=source)
    result = ImportResult({})
    lora_type = str(data.get("LoRA_type") or "Standard")
    if lora_type not in STANDARD_TYPES:
        raise ConfigError(
            f"LoRA type '{lora_type}' is not supported (this extension trains kohya LoRA and LoCon)",
            where=source,
            fix="choose LoRA type Standard or Kohya LoCon in the kohya_ss GUI, or remove LoRA_type",
        )
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = GUI_RENAMES.get(key, key)
        if key in GUI_ONLY or value is None or value == "":
            continue
        if name in ZERO_IS_OFF and _is_zero(value):
            continue
        if name not in OPTION_NAMES:
            if _is_set(value):
                result.notes.append(f"{key} = {value!r} is not used here")
            continue
        values[name] = value
    _gui_specials(data, values, result, lora_type)
    result.options = check_options(values, source)
    return result


def _gui_specials(data: dict, values: dict, result: ImportResult, lora_type: str) -> None:
    """GUI fields whose meaning differs from kohya's option of the same (or no) name."""
    epochs = data.get("epoch")
    if "max_train_epochs" not in values and _is_set(epochs) and not _is_zero(epochs):
        values["max_train_epochs"] = epochs  # the GUI's "Epoch" field is kohya's max_train_epochs
    warmup = data.get("lr_warmup")
    if _is_set(warmup) and not _is_zero(warmup):
        values["lr_warmup_steps"] = float(warmup) / 100  # a percentage of the steps in the GUI
    if lora_type == "Standard":
        values.pop("conv_dim", None)
        values.pop("conv_alpha", None)
    te_lr, unet_lr = data.get("text_encoder_lr"), data.get("unet_lr")
    if _is_set(te_lr) and _is_zero(te_lr) and _is_set(unet_lr) and not _is_zero(unet_lr):
        values.pop("text_encoder_lr", None)
        values["network_train_unet_only"] = True  # the GUI's reading of a zero text-encoder lr
    elif _is_set(unet_lr) and _is_zero(unet_lr) and _is_set(te_lr) and not _is_zero(te_lr):
        values.pop("unet_lr", None)
        values["network_train_text_encoder_only"] = True
    if data.get("sdxl") and data.get("sdxl_cache_text_encoder_outputs"):
        values["cache_text_encoder_outputs"] = True
    if str(data.get("noise_offset_type", "Original")) == "Multires":
        values.pop("noise_offset", None)
        values.pop("adaptive_noise_scale", None)
    else:
        values.pop("multires_noise_iterations", None)
        values.pop("multires_noise_discount", None)
    dropouts = [
        f"{k}={data[k]}" for k in ("rank_dropout", "module_dropout") if not _is_zero(data.get(k, 0))
    ]
    dropouts += _gui_block_args(data, result)
    if dropouts:
        values["network_args"] = [*(values.get("network_args") or []), *dropouts]
    prompts = data.get("sample_prompts")
    if isinstance(prompts, str) and prompts.strip():
        result.extras["sample_prompt"] = prompts.strip()  # the GUI stores the prompts' text
    if _is_set(data.get("additional_parameters")):
        values.update(_parse_flags(str(data["additional_parameters"])))
    if _is_set(data.get("stop_text_encoder_training")) and not _is_zero(
        data.get("stop_text_encoder_training")
    ):
        result.notes.append("stop_text_encoder_training is not supported and was left out")
    if _is_set(data.get("pretrained_model_name_or_path")):
        result.notes.append(
            "the model is the checkpoint loaded in the WebUI, not the file the GUI named"
        )


def _gui_block_args(data: dict, result: ImportResult) -> list[str]:
    """The GUI's block-wise fields as the network_args it passes (fields set, as Python sees it)."""
    given = {k: data[k] for k in GUI_BLOCK_ARGS if data.get(k)}
    if not any(k not in GUI_BLOCK_MODIFIERS for k in given):
        for key in given:  # kohya would ignore them; importing them would be refused
            result.notes.append(f"{key} has no effect without block_dims or an lr weight; left out")
        return []
    return [f"{key}={str(value).strip()}" for key, value in given.items()]


def _parse_flags(text: str) -> dict[str, Any]:
    """'--noise_offset 0.05 --shuffle_caption' -> options (kohya's command-line form)."""
    values: dict[str, Any] = {}
    words = shlex.split(text)
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("--"):
            raise ConfigError(
                f"cannot read {word!r} in additional_parameters", fix="use --option value"
            )
        name, eq, inline = word[2:].partition("=")
        if eq:
            values[name] = inline
        elif i + 1 < len(words) and not words[i + 1].startswith("--"):
            values[name] = words[i + 1]
            i += 1
        else:
            values[name] = True
        i += 1
    return values


def _is_set(value: Any) -> bool:
    return value is not None and value != "" and value is not False


def _is_zero(value: Any) -> bool:
    try:
        return float(value) == 0
    except (TypeError, ValueError):
        return False


# --- kohya TOML ------------------------------------------------------------------------


def import_kohya_toml(path: Path) -> ImportResult:
    """Options from a kohya `--config_file` TOML (tables are flattened, as kohya does)."""
    values = load_config_file(path)
    result = ImportResult({})
    prompts = values.get("sample_prompts")
    if isinstance(prompts, str):
        prompt_file = (path.parent / prompts) if not Path(prompts).is_absolute() else Path(prompts)
        if prompt_file.suffix.lower() == ".txt" and prompt_file.is_file():
            result.extras["sample_prompt"] = prompt_file.read_text(encoding="utf-8").strip()
    for key in [k for k in values if k.lstrip("-").replace("-", "_") in NOT_YET_SUPPORTED]:
        result.notes.append(f"{key} is not used here and was left out")
        values.pop(key)
    result.options = check_options(values, str(path))
    return result


def export_kohya_toml(options: dict[str, Any], header: list[str] | None = None) -> str:
    """A kohya `--config_file` TOML that reproduces these options with kohya's own scripts."""
    values = {k: v for k, v in options.items() if k in OPTION_NAMES and k not in NOT_KOHYA}
    conv = [
        f"conv_{k}={values.pop(f'conv_{k}')}" for k in ("dim", "alpha") if values.get(f"conv_{k}")
    ]
    values.pop("conv_dim", None)
    values.pop("conv_alpha", None)
    if conv:
        values["network_args"] = [*(values.get("network_args") or []), *conv]
    lines = [f"# {line}" for line in (header or [])]
    for name in OPTION_NAMES:
        if name in values and values[name] is not None:
            lines.append(f"{name} = {_toml_value(values[name])}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"cannot write {value} to TOML")
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # JSON string escapes are valid TOML basic strings
