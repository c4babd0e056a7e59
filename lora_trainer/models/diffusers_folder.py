"""Load a diffusers model folder (unet/, vae/, text_encoder/[, text_encoder_2/], scheduler/), offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from ..errors import ModelError
from .arch_configs import bundled_configs, normalise_prediction_type
from .bundle import ModelBundle, ModelSource
from .ldm_bundle import default_tokenizers


def is_diffusers_folder(path: str | Path) -> bool:
    return (Path(path) / "unet" / "config.json").is_file()


def folder_arch(unet_config: dict[str, Any]) -> str:
    """SDXL has text_time added conditioning; SD2 linear projections (or 1024-wide context)."""
    if unet_config.get("addition_embed_type") == "text_time":
        return "sdxl"
    if unet_config.get("use_linear_projection") or unet_config.get("cross_attention_dim") == 1024:
        return "sd2"
    return "sd1"


def load_diffusers_folder(
    path: str | Path,
    weight_dtype: torch.dtype = torch.float32,
    *,
    prediction_type: str | None = None,
) -> ModelBundle:
    """A bundle from a local diffusers folder; tokenizers are the bundled ones, as kohya uses the same."""
    path = Path(path).expanduser()
    if not is_diffusers_folder(path):
        raise ModelError(
            "this folder is not a diffusers model (no unet/config.json)",
            where=str(path),
            fix="give a checkpoint file, or a folder saved by diffusers' save_pretrained",
        )
    unet = _load(UNet2DConditionModel, path, "unet", weight_dtype)
    arch = folder_arch(dict(unet.config))
    vae = _load(AutoencoderKL, path, "vae", weight_dtype)
    text_encoders = [_load(CLIPTextModel, path, "text_encoder", weight_dtype)]
    if arch == "sdxl":
        text_encoders.append(
            _load(CLIPTextModelWithProjection, path, "text_encoder_2", weight_dtype)
        )
    configs = bundled_configs(arch)
    prediction = normalise_prediction_type(prediction_type or _folder_prediction_type(path))
    return ModelBundle(
        arch=arch,
        unet=unet,
        text_encoders=text_encoders,
        tokenizers=default_tokenizers(arch),
        vae=vae,
        # the training schedule is the same DDPM one for every SD model (as in kohya)
        scheduler_config=dict(configs.scheduler, prediction_type=prediction),
        source=ModelSource(path.name, path),
        scale_factor=float(vae.config.get("scaling_factor", configs.scale_factor)),
        prediction_type=prediction,
    )


def _load(cls: Any, path: Path, subfolder: str, dtype: torch.dtype) -> Any:
    if not (path / subfolder / "config.json").is_file():
        raise ModelError(
            f"the diffusers folder has no {subfolder}/config.json",
            where=str(path),
            fix="give a complete diffusers model folder",
        )
    try:
        module = cls.from_pretrained(
            str(path), subfolder=subfolder, local_files_only=True, torch_dtype=dtype
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"cannot load {subfolder}: {exc}", where=str(path / subfolder)) from None
    return module.requires_grad_(False).eval()


def _folder_prediction_type(path: Path) -> str:
    config = path / "scheduler" / "scheduler_config.json"
    if not config.is_file():
        return "epsilon"
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("prediction_type") or "epsilon"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read the scheduler config: {exc}", where=str(config)) from None
