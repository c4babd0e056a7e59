"""Find and load the base model a configuration names, and fit kohya's model options to it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import BUILTIN_TINY_MODEL
from ..errors import ConfigError, ModelError
from .bundle import V_PREDICTION, ModelBundle
from .checkpoint_file import load_checkpoint_file
from .diffusers_folder import is_diffusers_folder, load_diffusers_folder
from .tiny import build_tiny_sd1
from .tiny_sd2 import TINY_SD2_NAME, build_tiny_sd2
from .tiny_sdxl import TINY_SDXL_NAME, build_tiny_sdxl
from .vae_file import load_vae

BUILTIN_MODELS: dict[str, Callable[[], ModelBundle]] = {
    BUILTIN_TINY_MODEL: build_tiny_sd1,
    TINY_SD2_NAME: build_tiny_sd2,
    TINY_SDXL_NAME: build_tiny_sdxl,
}
FAMILY_NAMES = {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}


def load_bundle(
    name_or_path: str | None,
    weight_dtype: torch.dtype = torch.float32,
    *,
    v_parameterization: bool = False,
    vae: str | None = None,
) -> ModelBundle:
    """A built-in tiny model, a checkpoint file (.safetensors/.ckpt) or a diffusers folder."""
    if not name_or_path:
        raise ModelError(
            "pretrained_model_name_or_path is not set",
            fix=f"give an SD checkpoint file or diffusers folder, or {BUILTIN_TINY_MODEL} to try the tool",
        )
    prediction = V_PREDICTION if v_parameterization else None
    if name_or_path.startswith("builtin:"):
        if name_or_path not in BUILTIN_MODELS:
            raise ModelError(
                f"unknown built-in model {name_or_path!r}",
                fix=f"use one of: {', '.join(BUILTIN_MODELS)}",
            )
        return replace_vae(BUILTIN_MODELS[name_or_path](), vae, weight_dtype)
    path = Path(name_or_path).expanduser()
    if path.is_dir() and is_diffusers_folder(path):
        bundle = load_diffusers_folder(path, weight_dtype, prediction_type=prediction)
        return replace_vae(bundle, vae, weight_dtype)
    return load_checkpoint_file(path, weight_dtype, prediction_type=prediction, vae=vae)


def replace_vae(bundle: ModelBundle, vae: str | None, weight_dtype: torch.dtype) -> ModelBundle:
    """kohya's --vae on an already built bundle (the WebUI's model, a folder, a built-in one)."""
    if vae:
        bundle.vae, bundle.vae_source = load_vae(vae, dict(bundle.vae.config), weight_dtype)
    return bundle


@dataclass
class PreparedModel:
    bundle: ModelBundle
    warnings: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """One line for the user, e.g. "Model: SD2.x, v-prediction (from the weights)"."""
        bundle = self.bundle
        prediction = "v-prediction" if bundle.v_parameterization else "epsilon (noise) prediction"
        origin = PREDICTION_ORIGINS.get(bundle.extra.get("prediction_type_from", ""), "")
        line = f"Model: {FAMILY_NAMES[bundle.arch]}, {prediction}{origin}"
        if bundle.vae_source is not None:
            line += f", VAE from {bundle.vae_source.name}"
        return line


PREDICTION_ORIGINS = {
    "option": " (v_parameterization)",
    "yaml": " (from the .yaml beside the checkpoint)",
    "metadata": " (from the checkpoint's metadata)",
    "probe": " (from the checkpoint's weights, as the WebUI tells)",
}


def prepare_model(
    config: Any, bundle: ModelBundle | None = None, weight_dtype: torch.dtype = torch.float32
) -> PreparedModel:
    """The run's model: loaded (unless given), its VAE replaced (vae), kohya's family options applied."""
    if config.vae and not Path(config.vae).expanduser().exists():
        raise ConfigError("the vae file is not found", where=str(config.vae), fix="check the path")
    if bundle is None:
        bundle = load_bundle(
            config.pretrained_model_name_or_path,
            weight_dtype,
            v_parameterization=config.v_parameterization,
            vae=config.vae,
        )
    else:
        replace_vae(bundle, config.vae, weight_dtype)
    return PreparedModel(bundle, apply_model_options(bundle, config))


def apply_model_options(bundle: ModelBundle, config: Any) -> list[str]:
    """Check v2 / sdxl / clip_skip against the model, set v-prediction; returns warnings to show."""
    family = FAMILY_NAMES[bundle.arch]
    for flag, arch in (("v2", "sd2"), ("sdxl", "sdxl")):
        if getattr(config, flag) and bundle.arch != arch:
            raise ConfigError(
                f"{flag} is set but the model is {family}",
                fix=f"remove {flag}, or choose a {FAMILY_NAMES[arch]} model",
            )
    warnings = []
    if config.v_parameterization:
        bundle.extra["prediction_type_from"] = "option"
        bundle.prediction_type = V_PREDICTION
        bundle.scheduler_config = dict(bundle.scheduler_config, prediction_type=V_PREDICTION)
        if bundle.arch == "sd1":
            warnings.append("v_parameterization on an SD1.x model: SD1.x models predict noise")
    warnings += _clip_skip_warnings(bundle, config.clip_skip)
    unknown = bundle.extra.get("unknown_keys") or []
    if unknown:
        warnings.append(f"{len(unknown)} weights of the checkpoint are not used, e.g. {unknown[0]}")
    return warnings


def _clip_skip_warnings(bundle: ModelBundle, clip_skip: int | None) -> list[str]:
    if clip_skip is None:
        return []
    if bundle.is_sdxl:
        return ["clip_skip does not apply to SDXL (kohya ignores it too)"]
    layers = bundle.text_encoder.config.num_hidden_layers
    if clip_skip > layers:
        raise ConfigError(
            f"clip_skip {clip_skip} is more than the text encoder's {layers} layers",
            fix="use 1 or 2",
        )
    if bundle.v2:
        return [
            "clip_skip on an SD2.x model: it already uses the penultimate layer (kohya warns too)"
        ]
    return []
