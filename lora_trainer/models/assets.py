"""Files shipped with the package so SD1.x, SD2.x and SDXL models build offline: tokenizers, configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError

if TYPE_CHECKING:  # transformers is heavy; import it only when a loader is called
    from transformers import CLIPTextConfig, CLIPTokenizer

ASSETS_DIR: Path = Path(__file__).resolve().parent / "assets"
CLIP_TOKENIZER_DIR: Path = ASSETS_DIR / "clip_tokenizer"
OPENCLIP_TOKENIZER_DIR: Path = ASSETS_DIR / "openclip_tokenizer"

SD15_UNET_CONFIG = "sd15/unet/config.json"
SD15_VAE_CONFIG = "sd15/vae/config.json"
SD15_TEXT_ENCODER_CONFIG = "sd15/text_encoder/config.json"
SD15_SCHEDULER_CONFIG = "sd15/scheduler/scheduler_config.json"
SD2_UNET_CONFIG = "sd2/unet/config.json"
SD2_TEXT_ENCODER_CONFIG = "sd2/text_encoder/config.json"
SDXL_UNET_CONFIG = "sdxl/unet/config.json"
SDXL_VAE_CONFIG = "sdxl/vae/config.json"
SDXL_TEXT_ENCODER_2_CONFIG = "sdxl/text_encoder_2/config.json"

_REINSTALL = "Reinstall the extension (or the lora_trainer package) to restore its bundled files"
_BPE_FILES = ("vocab.json", "merges.txt")


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


def load_openclip_tokenizer() -> CLIPTokenizer:
    """The tokenizer of SD2.x and SDXL's second encoder: same BPE as CLIP, pads with id 0 ("!")."""
    from transformers import CLIPTokenizer

    settings = load_json_config(f"{OPENCLIP_TOKENIZER_DIR.name}/tokenizer_config.json")
    settings.pop("tokenizer_class", None)
    pad = settings.pop("pad_token")
    # open_clip's tokenizer is OpenAI's BPE; only the padding differs, so the vocabulary
    # files are shared with the CLIP tokenizer instead of being shipped twice.
    vocab, merges = (_asset_path(f"{CLIP_TOKENIZER_DIR.name}/{name}") for name in _BPE_FILES)
    tokenizer = CLIPTokenizer(vocab_file=str(vocab), merges_file=str(merges), **settings)
    # Set after construction, as kohya does for SDXL: given to the constructor, newer
    # transformers make "!" a special token, and a "!" in a caption would become padding.
    tokenizer.pad_token_id = tokenizer.convert_tokens_to_ids(pad)
    return tokenizer


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


def sd2_unet_config() -> dict[str, Any]:
    """diffusers UNet2DConditionModel config of SD2.x (512 and 768-v share it): linear projections."""
    return load_json_config(SD2_UNET_CONFIG)


def sd2_text_encoder_config() -> CLIPTextConfig:
    """OpenCLIP ViT-H/14 text tower as a CLIPTextModel, cut to the 23 layers SD2 uses (penultimate)."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(**load_json_config(SD2_TEXT_ENCODER_CONFIG))


def sdxl_unet_config() -> dict[str, Any]:
    """diffusers UNet2DConditionModel config of SDXL base 1.0 (text_time added conditioning)."""
    return load_json_config(SDXL_UNET_CONFIG)


def sdxl_vae_config() -> dict[str, Any]:
    """diffusers AutoencoderKL config of SDXL (scaling_factor 0.13025)."""
    return load_json_config(SDXL_VAE_CONFIG)


def sdxl_text_encoder_2_config() -> CLIPTextConfig:
    """OpenCLIP ViT-bigG/14 text tower (all 32 layers) as a CLIPTextModelWithProjection."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(**load_json_config(SDXL_TEXT_ENCODER_2_CONFIG))
