"""Load an SD checkpoint file (.safetensors / .ckpt, original LDM layout), offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml
from diffusers.loaders.single_file_utils import (
    create_unet_diffusers_config_from_ldm,
    create_vae_diffusers_config_from_ldm,
)
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import CLIPTextConfig

from ..errors import ModelError
from ..lora.hashes import legacy_model_hash, sha256_file
from . import ldm_convert
from .assets import (
    load_clip_tokenizer,
    sd15_scheduler_config,
    sd15_text_encoder_config,
    sd15_unet_config,
    sd15_vae_config,
)
from .bundle import ModelBundle, ModelSource

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint; .ckpt files are unpickled safely (weights only)."""
    if not path.is_file():
        raise ModelError("checkpoint file not found", where=str(path), fix="check the path")
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise ModelError(
            f"unsupported checkpoint type {path.suffix!r}",
            where=str(path),
            fix="use a .safetensors or .ckpt file",
        )
    try:
        if path.suffix.lower() == ".safetensors":
            return load_file(str(path))
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise ModelError(f"cannot read the checkpoint: {exc}", where=str(path)) from None
    return data.get("state_dict", data) if isinstance(data, dict) else {}


def load_checkpoint_file(
    path: str | Path, weight_dtype: torch.dtype = torch.float32
) -> ModelBundle:
    """Build an SD1.x bundle from a checkpoint file, with configs from its .yaml or the bundled ones."""
    path = Path(path).expanduser()
    state_dict = read_state_dict(path)
    arch = ldm_convert.detect_arch(state_dict)
    if arch != "sd1":
        raise ModelError(
            f"this is an {arch.upper()} checkpoint; this version trains SD1.x models only",
            where=str(path),
            fix="use an SD1.x checkpoint for now",
        )
    state_dict = {
        k: v.to(weight_dtype) if v.is_floating_point() else v for k, v in state_dict.items()
    }
    unet_cfg, vae_cfg, te_cfg = sd1_configs(path, state_dict)
    bundle = ModelBundle(
        arch="sd1",
        unet=ldm_convert.sd1_unet(state_dict, unet_cfg),
        text_encoders=[ldm_convert.sd1_text_encoder(state_dict, te_cfg)],
        tokenizers=[load_clip_tokenizer()],
        vae=ldm_convert.sd1_vae(state_dict, vae_cfg),
        scheduler_config=sd15_scheduler_config(),
        source=ModelSource(path.name, path, legacy_model_hash(path), sha256_file(path)),
        scale_factor=float(vae_cfg.get("scaling_factor", 0.18215)),
    )
    return bundle


def sd1_configs(
    path: Path, state_dict: dict[str, torch.Tensor]
) -> tuple[dict, dict, CLIPTextConfig]:
    """The LDM .yaml beside the checkpoint (as the WebUI uses it), else SD1.5's configs."""
    yaml_path = path.with_suffix(".yaml")
    if not yaml_path.is_file():
        return sd15_unet_config(), sd15_vae_config(), sd15_text_encoder_config()
    try:
        original = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
        unet_cfg = create_unet_diffusers_config_from_ldm(original, state_dict)
        vae_cfg = create_vae_diffusers_config_from_ldm(original, state_dict)
        unet_params = original["model"]["params"]["unet_config"]["params"]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot use the model config: {exc}", where=str(yaml_path)) from None
    if unet_cfg.get("attention_head_dim") is None:
        unet_cfg["attention_head_dim"] = ldm_convert.unet_heads_from_ldm(unet_params)
    return unet_cfg, vae_cfg, _text_config(original, yaml_path, state_dict)


def _text_config(original: dict[str, Any], yaml_path: Path, state_dict: dict) -> CLIPTextConfig:
    version = (
        original["model"]["params"].get("cond_stage_config", {}).get("params", {}).get("version")
    )
    if version:
        # the WebUI resolves a relative `version` against its own folder; we try the
        # yaml's folder and the working directory, and never a hub id
        for base in (yaml_path.parent, Path.cwd()):
            config_json = base / version / "config.json"
            if config_json.is_file():
                return CLIPTextConfig(**json.loads(config_json.read_text(encoding="utf-8")))
    hidden = state_dict[ldm_convert.SD1_TEXT_KEY].shape[1]
    if hidden == sd15_text_encoder_config().hidden_size:
        return sd15_text_encoder_config()
    raise ModelError(
        "cannot tell the text encoder's shape for this checkpoint",
        where=str(yaml_path),
        fix="point cond_stage_config.params.version in the .yaml at a folder with the CLIP config.json",
    )
