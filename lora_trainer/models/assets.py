"""Files shipped with the package so SD1.x models can be built offline: CLIP tokenizer, configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError

if TYPE_CHECKING:  # transformers is heavy; import it only when a loader is called
    from transformers import CLIPTextConfig, CLIPTokenizer

ASSETS_DIR: Path = Path(__file__).resolve().parent / "assets"
CLIP_TOKENIZER_DIR: Path = ASSETS_DIR / "clip_tokenizer"

SD15_UNET_CONFIG = "sd15/unet/config.json"
SD15_VAE_CONFIG = "sd15/vae/config.json"
SD15_TEXT_ENCODER_CONFIG = "sd15/text_encoder/config.json"
SD15_SCHEDULER_CONFIG = "sd15/scheduler/scheduler_config.json"

_REINSTALL = "Reinstall the extension (or the lora_trainer package) to restore its bundled files"


def _asset_path(relpath: str) -> Path:
    path = (ASSETS_DIR / relpath).resolve()
    if not path.is_relative_to(ASSETS_DIR):
        raise ValueError(f"{relpath!r} is outside the assets folder")
    if not path.is_file():
        raise ModelError("A bundled model file is missing", str(path), _REINSTALL)
    return path


def load_json_config(relpath: str) -> dict[str, Any]:
    """Read a bundled JSON config, e.g. "sd15/unet/config.json"; a fresh dict on every call."""
    path = _asset_path(relpath)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(
            f"A bundled model file cannot be read: {exc}", str(path), _REINSTALL
        ) from exc
    if not isinstance(data, dict):
        raise ModelError("A bundled model config is not a JSON object", str(path), _REINSTALL)
    return data


def load_clip_tokenizer() -> CLIPTokenizer:
    """The CLIP ViT-L/14 tokenizer used by SD1.x (max length 77, pads with <|endoftext|>)."""
    from transformers import CLIPTokenizer

    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        _asset_path(f"{CLIP_TOKENIZER_DIR.name}/{name}")
    # A local folder never touches the network; local_files_only makes that explicit.
    return CLIPTokenizer.from_pretrained(str(CLIP_TOKENIZER_DIR), local_files_only=True)


def sd15_unet_config() -> dict[str, Any]:
    """diffusers UNet2DConditionModel config of Stable Diffusion 1.5."""
    return load_json_config(SD15_UNET_CONFIG)


def sd15_vae_config() -> dict[str, Any]:
    """diffusers AutoencoderKL config of Stable Diffusion 1.5 (scaling_factor 0.18215)."""
    return load_json_config(SD15_VAE_CONFIG)


def sd15_text_encoder_config() -> CLIPTextConfig:
    """transformers CLIPTextConfig of SD1.x's text encoder (CLIP ViT-L/14 text tower)."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(**load_json_config(SD15_TEXT_ENCODER_CONFIG))


def sd15_scheduler_config() -> dict[str, Any]:
    """diffusers DDPMScheduler config SD1.x was trained with (also valid for DDIM/Euler from_config)."""
    return load_json_config(SD15_SCHEDULER_CONFIG)
