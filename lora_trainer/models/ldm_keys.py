"""Key layouts of LDM/SGM state dicts: the WebUI's live artefacts undone, the family detected, parts split.

A checkpoint file and the WebUI's `shared.sd_model.state_dict()` hold the same tensors
under slightly different names (see shared/fixtures/A1111.md): the WebUI inserts
`wrapped` path components into text-encoder keys, and on SDXL lists the conditioner a
second time under `cond_stage_model.embedders.`. Everything here works on names only;
tensors pass through untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelError

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
UNET_INPUT_KEY = UNET_PREFIX + "input_blocks.0.0.weight"

# where each family keeps its text encoder(s), in kohya's order (lora_te / lora_te1, lora_te2)
TEXT_PREFIXES = {
    "sd1": ["cond_stage_model.transformer."],
    "sd2": ["cond_stage_model.model."],
    "sdxl": ["conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."],
}
SD1_TEXT_KEY = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
SD2_TEXT_KEY = "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"
SDXL_TEXT2_KEY = "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"
SDXL_REFINER_KEY = "conditioner.embedders.0.model.transformer.resblocks.0.attn.in_proj_weight"

# Keys that are not weights of the modules we build, and why they may be dropped:
# the DDPM schedule buffers of LDM models (the noise schedule comes from the scheduler
# config), SGM's denoiser sigmas, EMA copies, open_clip's contrastive temperature.
SCHEDULE_BUFFERS = frozenset(
    {
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
        "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
        "logvar",
    }
)  # fmt: skip
IGNORED_PREFIXES = ("model_ema.", "denoiser.")
WEBUI_SDXL_ALIAS = "cond_stage_model.embedders."


def checkpoint_layout(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The keys as the checkpoint file names them: `wrapped` components and SDXL's alias dropped."""
    has_conditioner = any(k.startswith("conditioner.") for k in state_dict)
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        if has_conditioner and key.startswith(WEBUI_SDXL_ALIAS):
            continue  # the WebUI's second name for the same conditioner tensors
        if ".wrapped" in key or key.startswith("wrapped."):
            key = ".".join(part for part in key.split(".") if part != "wrapped")
        out[key] = value
    return out


def detect_arch(state_dict: Mapping[str, Any]) -> str:
    """'sd1', 'sd2' or 'sdxl' from the keys (checkpoint layout); ModelError for anything else."""
    if UNET_INPUT_KEY not in state_dict:
        raise ModelError(
            "this is not a Stable Diffusion checkpoint in the original (LDM/SGM) layout",
            fix="use a full SD1.x, SD2.x or SDXL checkpoint (.safetensors or .ckpt) as the WebUI loads it",
        )
    if SDXL_REFINER_KEY in state_dict and SDXL_TEXT2_KEY not in state_dict:
        raise ModelError(
            "this is an SDXL refiner checkpoint; LoRAs are trained on the SDXL base model",
            fix="use an SDXL base checkpoint",
        )
    if SDXL_TEXT2_KEY in state_dict:
        arch = "sdxl"
    elif SD2_TEXT_KEY in state_dict:
        arch = "sd2"
    elif SD1_TEXT_KEY in state_dict:
        arch = "sd1"
    else:
        raise ModelError(
            "this checkpoint has a UNet but no text encoder that this version knows",
            fix="use a full checkpoint, not a UNet-only file or one pruned of its text encoder",
        )
    in_channels = _shape(state_dict[UNET_INPUT_KEY])[1]
    if in_channels != 4:
        raise ModelError(
            f"this {arch.upper()} checkpoint's UNet takes {in_channels} input channels "
            "(an inpainting or instruct-pix2pix model)",
            fix="train LoRAs on the matching base model with 4 latent channels",
        )
    return arch


def _shape(tensor: Any) -> tuple[int, ...]:
    return tuple(tensor.shape)


@dataclass
class LdmParts:
    """A checkpoint-layout state dict split by module, prefixes removed."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    text: list[dict[str, Any]]
    ignored: list[str] = field(default_factory=list)  # full keys left out on purpose


def split_parts(state_dict: Mapping[str, Any], arch: str) -> LdmParts:
    """UNet, VAE and text-encoder tensors (prefix removed); every other key listed as ignored."""
    text_prefixes = TEXT_PREFIXES[arch]
    parts = LdmParts({}, {}, [{} for _ in text_prefixes])
    for key, value in state_dict.items():
        if key.startswith(UNET_PREFIX):
            parts.unet[key[len(UNET_PREFIX) :]] = value
        elif key.startswith(VAE_PREFIX):
            parts.vae[key[len(VAE_PREFIX) :]] = value
        elif (i := _text_index(key, text_prefixes)) is not None:
            parts.text[i][key[len(text_prefixes[i]) :]] = value
        else:
            parts.ignored.append(key)
    return parts


def _text_index(key: str, prefixes: list[str]) -> int | None:
    for i, prefix in enumerate(prefixes):
        if key.startswith(prefix):
            return i
    return None


def is_known_extra(key: str) -> bool:
    """True for keys every checkpoint of the family may carry that are not module weights."""
    return key in SCHEDULE_BUFFERS or key.startswith(IGNORED_PREFIXES)
