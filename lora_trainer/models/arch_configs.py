"""The architecture settings (no weights) of each model family: bundled, or read from an LDM .yaml."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from diffusers.loaders.single_file_utils import (
    create_unet_diffusers_config_from_ldm,
    create_vae_diffusers_config_from_ldm,
)
from transformers import CLIPTextConfig

from ..errors import ModelError
from . import assets
from .ldm_convert import unet_heads_from_ldm

ARCHES = ("sd1", "sd2", "sdxl")
PREDICTION_TYPES = ("epsilon", "v_prediction")
# what the WebUI (ldm's `parameterization`) and modelspec call the two prediction types
PREDICTION_ALIASES = {"eps": "epsilon", "v": "v_prediction"}


@dataclass
class ModelConfigs:
    """Everything needed to build one model's diffusers modules, without weights."""

    arch: str
    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoders: list[CLIPTextConfig]  # SDXL: [CLIP ViT-L, OpenCLIP bigG with projection]
    scheduler: dict[str, Any]

    @property
    def scale_factor(self) -> float:
        return float(self.vae.get("scaling_factor", 0.18215))

    @property
    def prediction_type(self) -> str:
        return self.scheduler.get("prediction_type", "epsilon")

    def with_prediction_type(self, prediction_type: str) -> ModelConfigs:
        """The same configs with the scheduler's prediction type set."""
        scheduler = dict(self.scheduler, prediction_type=normalise_prediction_type(prediction_type))
        return replace(self, scheduler=scheduler)


def normalise_prediction_type(value: str) -> str:
    """'epsilon' / 'v_prediction' from those or the WebUI's 'eps' / 'v'."""
    value = PREDICTION_ALIASES.get(value, value)
    if value not in PREDICTION_TYPES:
        raise ModelError(
            f"prediction type {value!r} is not known",
            fix='use "epsilon" (or "eps") or "v_prediction" (or "v")',
        )
    return value


def bundled_configs(arch: str) -> ModelConfigs:
    """The standard configs of SD1.5, SD2.x or SDXL base, shipped with the package."""
    if arch == "sd1":
        unet, vae = assets.sd15_unet_config(), assets.sd15_vae_config()
        texts = [assets.sd15_text_encoder_config()]
    elif arch == "sd2":
        unet, vae = assets.sd2_unet_config(), assets.sd15_vae_config()
        texts = [assets.sd2_text_encoder_config()]
    elif arch == "sdxl":
        unet, vae = assets.sdxl_unet_config(), assets.sdxl_vae_config()
        texts = [assets.sd15_text_encoder_config(), assets.sdxl_text_encoder_2_config()]
    else:
        raise ModelError(f"unknown model family {arch!r}", fix=f"use one of: {', '.join(ARCHES)}")
    # every family was trained on the same DDPM schedule; only the prediction type differs
    return ModelConfigs(arch, unet, vae, texts, assets.sd15_scheduler_config())


def configs_from_ldm_yaml(
    original: dict[str, Any], state_dict: dict[str, Any], arch: str, yaml_path: Path
) -> ModelConfigs:
    """Configs from the model's LDM/SGM .yaml (as the WebUI uses it), text encoders from shapes."""
    try:
        unet = create_unet_diffusers_config_from_ldm(original, state_dict)
        vae = create_vae_diffusers_config_from_ldm(original, state_dict)
        model_params = original["model"]["params"]
        unet_params = (model_params.get("unet_config") or model_params["network_config"])["params"]
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ModelError(f"cannot use the model config: {exc!r}", where=str(yaml_path)) from None
    if unet.get("attention_head_dim") is None:
        unet["attention_head_dim"] = unet_heads_from_ldm(unet_params)
    if arch == "sdxl":
        # diffusers recognises SDXL's added conditioning only at the standard widths
        unet.update(class_embed_type=None, addition_embed_type="text_time")
        unet["addition_time_embed_dim"] = unet.get("addition_time_embed_dim") or 256
    bundled = bundled_configs(arch)
    texts = _text_configs_from_yaml(original, yaml_path, state_dict, bundled)
    scheduler = dict(bundled.scheduler)
    prediction = yaml_prediction_type(original)
    if prediction:
        scheduler["prediction_type"] = prediction
    return ModelConfigs(arch, unet, vae, texts, scheduler)


def yaml_prediction_type(original: dict[str, Any]) -> str | None:
    """'v_prediction' when the yaml says so (ldm `parameterization: v`, sgm VScaling), else None."""
    params = (original.get("model") or {}).get("params") or {}
    if params.get("parameterization") == "v":
        return "v_prediction"
    scaling = ((params.get("denoiser_config") or {}).get("params") or {}).get("scaling_config")
    if isinstance(scaling, dict) and str(scaling.get("target", "")).endswith("VScaling"):
        return "v_prediction"
    if params.get("parameterization") == "eps" or scaling:
        return "epsilon"
    return None


def _text_configs_from_yaml(
    original: dict[str, Any], yaml_path: Path, state_dict: dict[str, Any], bundled: ModelConfigs
) -> list[CLIPTextConfig]:
    if bundled.arch != "sd1":
        return bundled.text_encoders  # open_clip towers are named by arch only ("ViT-H-14")
    params = original["model"]["params"].get("cond_stage_config", {}).get("params") or {}
    version = params.get("version")
    if version:
        # the WebUI resolves a relative `version` against its own folder; we try the
        # yaml's folder and the working directory, and never a hub id
        for base in (yaml_path.parent, Path.cwd()):
            config_json = base / version / "config.json"
            if config_json.is_file():
                return [CLIPTextConfig(**json.loads(config_json.read_text(encoding="utf-8")))]
    hidden = state_dict["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"]
    if hidden.shape[1] == bundled.text_encoders[0].hidden_size:
        return bundled.text_encoders
    raise ModelError(
        "cannot tell the text encoder's shape for this checkpoint",
        where=str(yaml_path),
        fix="point cond_stage_config.params.version in the .yaml at a folder with the CLIP config.json",
    )
