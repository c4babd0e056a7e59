"""The one entry point from an LDM/SGM state dict (the WebUI's live model, or a file) to a ModelBundle.

Usage from a host adapter, with the model the WebUI holds:

    bundle = bundle_from_ldm_state_dict(
        shared.sd_model.state_dict(),
        prediction_type=shared.sd_model.parameterization,  # "eps" or "v"
        source=ModelSource(name, legacy_hash=..., sha256=...),
    )

Every parameter of the returned modules IS a tensor of `state_dict` (or a view of one):
nothing is copied, the modules are frozen, and the caller's tensors are never written.
The WebUI's hijack artefacts (`wrapped` path components, SDXL's second listing of the
conditioner) are undone on the names only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from .arch_configs import ModelConfigs, bundled_configs
from .assets import load_clip_tokenizer, load_openclip_tokenizer
from .bundle import ModelBundle, ModelSource
from .ldm_convert import clip_from_ldm, open_clip_from_ldm, unet_from_ldm, vae_from_ldm
from .ldm_keys import (
    VAE_PREFIX,
    LdmParts,
    checkpoint_layout,
    detect_arch,
    is_known_extra,
    split_parts,
)


def bundle_from_ldm_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    arch: str | None = None,
    *,
    prediction_type: str | None = None,
    source: ModelSource | None = None,
    tokenizers: list[Any] | None = None,
    configs: ModelConfigs | None = None,
    vae: nn.Module | None = None,
) -> ModelBundle:
    """Diffusers modules over the caller's LDM/SGM tensors (no copy); the family is detected from the keys.

    `arch` ("sd1", "sd2", "sdxl") is checked against the keys when given. `prediction_type`
    ("epsilon"/"eps" or "v_prediction"/"v") overrides the configs' (SD2 768-v models need
    it: the keys cannot tell). `configs` replaces the bundled standard-size configs; `vae`
    replaces the state dict's VAE (kohya's --vae), which may then be absent.
    """
    layout = checkpoint_layout(state_dict)
    detected = detect_arch(layout)
    configs = _configs_for(detected, arch, configs, prediction_type)
    parts = split_parts(layout, detected)
    _check_parts(parts, vae_given=vae is not None)
    text_encoders, unused = _text_encoders(parts, configs)
    tokenizers = tokenizers or default_tokenizers(detected)
    if len(tokenizers) != len(text_encoders):
        raise ModelError(
            f"{len(tokenizers)} tokenizers given for {len(text_encoders)} text encoders",
            fix="give one tokenizer per text encoder, or none to use the bundled ones",
        )
    ignored = parts.ignored + unused
    if vae is not None:  # the given VAE replaces the state dict's
        ignored += [VAE_PREFIX + k for k in parts.vae]
    return ModelBundle(
        arch=detected,
        unet=unet_from_ldm(parts.unet, configs.unet),
        text_encoders=text_encoders,
        tokenizers=tokenizers,
        vae=vae if vae is not None else vae_from_ldm(parts.vae, configs.vae),
        scheduler_config=configs.scheduler,
        source=source or ModelSource(name="in-memory model"),
        scale_factor=configs.scale_factor,
        prediction_type=configs.prediction_type,
        extra={
            "ignored_keys": sorted(ignored),
            "unknown_keys": sorted(k for k in parts.ignored if not is_known_extra(k)),
        },
    )


def _configs_for(
    detected: str, arch: str | None, configs: ModelConfigs | None, prediction_type: str | None
) -> ModelConfigs:
    """The configs to build with: the caller's or the bundled ones, checked against the keys."""
    if arch is not None and arch != detected:
        raise ModelError(
            f"the model was given as {arch.upper()} but its weights are {detected.upper()}",
            fix="check which checkpoint is loaded",
        )
    configs = configs or bundled_configs(detected)
    if configs.arch != detected:
        raise ModelError(
            f"the {configs.arch.upper()} configs do not fit an {detected.upper()} model"
        )
    if prediction_type is not None:
        configs = configs.with_prediction_type(prediction_type)
    return configs


def default_tokenizers(arch: str) -> list[Any]:
    """The bundled tokenizers: CLIP for SD1, open_clip's (pads with 0) for SD2, both for SDXL."""
    if arch == "sd1":
        return [load_clip_tokenizer()]
    if arch == "sd2":
        return [load_openclip_tokenizer()]
    return [load_clip_tokenizer(), load_openclip_tokenizer()]


def _check_parts(parts: LdmParts, vae_given: bool) -> None:
    if not parts.vae and not vae_given:
        raise ModelError(
            "the checkpoint has no VAE weights (first_stage_model.*)",
            fix="give a VAE file with the vae option",
        )
    if any(not text for text in parts.text):
        raise ModelError(
            "the checkpoint lacks one of its text encoders",
            fix="use a full checkpoint that includes the text encoder(s)",
        )


def _text_encoders(parts: LdmParts, configs: ModelConfigs) -> tuple[list[nn.Module], list[str]]:
    """The text encoders in kohya's order, and the keys left out on purpose (full names)."""
    if configs.arch == "sd1":
        return [clip_from_ldm(parts.text[0], configs.text_encoders[0])], []
    if configs.arch == "sd2":
        # SD2 conditions on the penultimate block: its encoder is the tower minus the last block
        module, unused = open_clip_from_ldm(parts.text[0], configs.text_encoders[0], False)
        return [module], [f"cond_stage_model.model.{k}" for k in unused]
    first = clip_from_ldm(parts.text[0], configs.text_encoders[0])
    second, unused = open_clip_from_ldm(parts.text[1], configs.text_encoders[1], True)
    return [first, second], [f"conditioner.embedders.1.model.{k}" for k in unused]
