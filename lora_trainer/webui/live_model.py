"""The checkpoint loaded in the WebUI: what it is, whether it can be trained, and its ModelBundle.

The bundle's diffusers modules use the live model's tensors themselves (no copy, see
ARCHITECTURE.md); the WebUI's own modules are never modified, wrapped or hooked.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from transformers import CLIPTextConfig

from ..errors import ModelError
from ..models.arch_configs import ModelConfigs, configs_from_ldm_yaml
from ..models.bundle import DEFAULT_RESOLUTIONS, ModelBundle, ModelSource
from ..models.ldm_bundle import bundle_from_ldm_state_dict
from ..models.ldm_keys import checkpoint_layout, detect_arch
from .builtin_lora import restore_merged_weights

ARCH_LABELS = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
_RELOAD = "load a checkpoint in the WebUI (the dropdown at the top left), then try again"


@dataclass(frozen=True)
class LiveModelInfo:
    """What the tab shows about the loaded checkpoint."""

    title: str  # "name.safetensors [shorthash]"
    path: Path | None
    arch: str | None  # "sd1", "sd2", "sdxl"; None when the WebUI's model is of another kind
    v_prediction: bool
    device: torch.device
    dtype: torch.dtype  # of the UNet weights
    problem: str | None  # why it cannot be trained, or None

    @property
    def label(self) -> str:
        kind = ARCH_LABELS.get(self.arch or "", "unknown model type")
        if self.v_prediction:
            kind += " (v-prediction)"
        return f"{kind}, {str(self.dtype).removeprefix('torch.')} on {self.device}"

    @property
    def default_resolution(self) -> int:
        return DEFAULT_RESOLUTIONS.get(self.arch or "sd1", 512)


def loaded_model() -> nn.Module | None:
    """The WebUI's model, or None; never triggers a load (shared.sd_model may)."""
    from modules import sd_models

    return sd_models.model_data.sd_model


def live_arch(model: Any) -> str | None:
    """The model family from the WebUI's own flags."""
    if getattr(model, "is_sd3", False) or getattr(model, "is_ssd", False):
        return None
    if getattr(model, "is_sdxl", False):
        return "sdxl"
    if getattr(model, "is_sd2", False):
        return "sd2"
    if getattr(model, "is_sd1", False):
        return "sd1"
    return None


def describe_loaded_model() -> LiveModelInfo | None:
    """The loaded checkpoint as the tab shows it; None when no model is loaded."""
    model = loaded_model()
    if model is None:
        return None
    info = getattr(model, "sd_checkpoint_info", None)
    filename = getattr(info, "filename", None)
    unet_weight = _first_parameter(model)
    try:
        check_trainable(model)
        problem = None
    except ModelError as exc:
        problem = exc.message
    return LiveModelInfo(
        title=getattr(info, "title", None) or getattr(info, "name", None) or "(unnamed model)",
        path=Path(filename) if filename else None,
        arch=live_arch(model),
        v_prediction=getattr(model, "parameterization", "eps") == "v",
        device=unet_weight.device if unet_weight is not None else torch.device("cpu"),
        dtype=unet_weight.dtype if unet_weight is not None else torch.float32,
        problem=problem,
    )


def _first_parameter(model: Any) -> torch.Tensor | None:
    unet = getattr(getattr(model, "model", None), "diffusion_model", None)
    for module in (unet, model):
        if isinstance(module, nn.Module):
            for param in module.parameters():
                return param
    return None


def check_trainable(model: Any) -> None:
    """ModelError saying why this live model cannot be trained here, if it cannot."""
    from modules import devices, shared

    if model is None:
        raise ModelError("no checkpoint is loaded in the WebUI", fix=_RELOAD)
    if getattr(model, "is_sd3", False):
        raise ModelError(
            "the loaded checkpoint is Stable Diffusion 3, which this extension cannot train",
            fix="load an SD 1.x, SD 2.x or SDXL checkpoint",
        )
    if getattr(model, "is_ssd", False):
        raise ModelError(
            "the loaded checkpoint is SSD-1B (a distilled SDXL), which this extension cannot train",
            fix="load an SD 1.x, SD 2.x or SDXL base checkpoint",
        )
    if live_arch(model) is None:
        raise ModelError("the loaded model is of a kind this extension does not know", fix=_RELOAD)
    opts = shared.cmd_opts
    split = getattr(opts, "lowvram", False) or getattr(opts, "medvram", False)
    split = split or (getattr(opts, "medvram_sdxl", False) and live_arch(model) == "sdxl")
    if getattr(model, "lowvram", False) or split:
        raise ModelError(
            "the WebUI runs with --lowvram or --medvram, which keeps parts of the model out of "
            "the GPU while generating; training needs the whole model on the GPU",
            fix="restart the WebUI without --lowvram/--medvram (--medvram-sdxl for SDXL), "
            "or train from the command line (python -m lora_trainer train)",
        )
    if getattr(devices, "fp8", False):
        raise ModelError(
            "the loaded model's weights are stored as FP8, which cannot be trained on",
            fix="set Settings > Optimizations > FP8 weight to Disable, reload the checkpoint, then train",
        )


def checkpoint_source(model: Any) -> ModelSource:
    """Name and hashes of the loaded checkpoint file, as kohya records them (ss_sd_model_*)."""
    info = getattr(model, "sd_checkpoint_info", None)
    filename = getattr(info, "filename", None)
    path = Path(filename) if filename else None
    name = path.name if path else (getattr(info, "name", None) or "in-memory model")
    return ModelSource(
        name=name,
        path=path,
        legacy_hash=getattr(info, "hash", None),
        sha256=getattr(info, "sha256", None),
    )


def build_live_bundle(model: Any) -> ModelBundle:
    """A ModelBundle over the live model's tensors (merged LoRAs undone first)."""
    check_trainable(model)
    restore_merged_weights(model)
    layout = checkpoint_layout(model.state_dict())
    arch = detect_arch(layout)
    expected = live_arch(model)
    if expected is not None and arch != expected:
        raise ModelError(
            f"the WebUI reports an {expected.upper()} model but its weights look like {arch.upper()}",
            fix="reload the checkpoint, then try again",
        )
    bundle = bundle_from_ldm_state_dict(
        layout,
        arch,
        prediction_type=getattr(model, "parameterization", None),
        source=checkpoint_source(model),
        tokenizers=live_tokenizers(model, arch),
        configs=live_configs(model, layout, arch),
    )
    scale = getattr(model, "scale_factor", None)
    if isinstance(scale, (int, float)):
        bundle.scale_factor = float(scale)  # the WebUI's own latent scale
    return bundle


def live_configs(model: Any, layout: dict[str, Any], arch: str) -> ModelConfigs | None:
    """Configs from the .yaml the WebUI built the model from; sizes the yaml cannot tell from the live modules."""
    used = getattr(model, "used_config", None)
    if not used or not Path(str(used)).is_file():
        return None  # standard sizes: the bundled configs fit
    yaml_path = Path(str(used))
    try:
        original = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"cannot read the model's config: {exc}", where=str(yaml_path)) from None
    configs = configs_from_ldm_yaml(original, layout, arch, yaml_path)
    texts = live_text_configs(model, arch, configs.text_encoders)
    configs = dataclasses.replace(configs, text_encoders=texts)
    time_dim = _live_time_embed_dim(model) if arch == "sdxl" else None
    if time_dim is not None:
        configs = dataclasses.replace(
            configs, unet=dict(configs.unet, addition_time_embed_dim=time_dim)
        )
    return configs


def _text_embedders(model: Any, arch: str) -> list[Any]:
    """The WebUI's unwrapped text encoders (ldm/sgm FrozenCLIPEmbedder, FrozenOpenCLIPEmbedder*)."""
    if arch == "sdxl":
        embedders = getattr(getattr(model, "conditioner", None), "embedders", None) or []
        return [getattr(e, "wrapped", None) for e in list(embedders)[:2]]
    return [getattr(getattr(model, "cond_stage_model", None), "wrapped", None)]


def _clip_embedder(model: Any, arch: str) -> Any:
    """The WebUI's wrapped transformers CLIP encoder (SD1, and SDXL's first), if any."""
    first = _text_embedders(model, arch)[0] if arch in ("sd1", "sdxl") else None
    return first if hasattr(first, "transformer") else None


def live_text_configs(
    model: Any, arch: str, fallback: list[CLIPTextConfig]
) -> list[CLIPTextConfig]:
    """Each text encoder's config as the live modules are sized (the yaml names open_clip towers only)."""
    configs = []
    for embedder, base in zip(_text_embedders(model, arch), fallback):
        transformer_config = getattr(getattr(embedder, "transformer", None), "config", None)
        open_clip = getattr(embedder, "model", None)
        if isinstance(transformer_config, CLIPTextConfig):
            configs.append(transformer_config)
        elif isinstance(open_clip, nn.Module) and hasattr(open_clip, "transformer"):
            configs.append(_open_clip_config(open_clip, base, drop_last=arch == "sd2"))
        else:
            configs.append(base)
    return configs


def _open_clip_config(clip: nn.Module, base: CLIPTextConfig, drop_last: bool) -> CLIPTextConfig:
    """An open_clip text tower's sizes as a CLIPTextConfig (SD2 conditions on the penultimate block,
    so its encoder leaves the last one out)."""
    blocks = list(clip.transformer.resblocks)
    token = clip.token_embedding
    token_weight = getattr(token, "wrapped", token).weight  # the hijack's EmbeddingsWithFixes
    sizes = {
        "hidden_size": token_weight.shape[1],
        "vocab_size": token_weight.shape[0],
        "max_position_embeddings": clip.positional_embedding.shape[0],
        "num_hidden_layers": len(blocks) - (1 if drop_last else 0),
        "num_attention_heads": blocks[0].attn.num_heads,
        "intermediate_size": blocks[0].mlp.c_fc.weight.shape[0],
        "projection_dim": clip.text_projection.shape[1],
    }
    return CLIPTextConfig(**{**base.to_dict(), **sizes})


def _live_time_embed_dim(model: Any) -> int | None:
    """Width of each SDXL size/crop number's embedding (sgm ConcatTimestepEmbedderND.outdim)."""
    embedders = getattr(getattr(model, "conditioner", None), "embedders", None) or []
    for embedder in embedders:
        outdim = getattr(embedder, "outdim", None)
        if isinstance(outdim, int):
            return outdim
    return None


def live_tokenizers(model: Any, arch: str) -> list[Any] | None:
    """The WebUI's own CLIP tokenizer where it has a transformers one; bundled ones otherwise."""
    from ..models.ldm_bundle import default_tokenizers

    live = getattr(_clip_embedder(model, arch), "tokenizer", None)
    if live is None or not callable(live):
        return None
    tokenizers = default_tokenizers(arch)
    tokenizers[0] = live  # open_clip towers (SD2, SDXL's second) use the bundled equivalent
    return tokenizers
