"""SD2 LoRA proj_in/proj_out weights: kohya's 1x1-conv form [r, C, 1, 1] <-> the 2-D form [r, C].

kohya trains SD2 with conv projections and writes [r, C, 1, 1]; so do we. The WebUI
(extensions-builtin/Lora/network_lora.py reshapes to the layer's shape), Forge and ComfyUI
read either form; kohya's own scripts build conv LoRA modules there and need the 4-D form.
diffusers builds SD2 with Linear projections and its kohya loader (0.31) refuses the 4-D
form with a size mismatch, so SD2 files for diffusers need the 2-D form. The numbers are
the same either way; only the shapes change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import LoraFileError
from .kohya_file import DOWN, UP, KohyaLora, load_kohya_lora, save_kohya_lora

FORMS = ("diffusers", "kohya")  # diffusers: [r, C]; kohya: [r, C, 1, 1]
_SD2_WIDTH = 1024  # OpenCLIP ViT-H: SD2's text width (SD1's CLIP is 768)


@dataclass(frozen=True)
class ConvertResult:
    path: Path
    family: str
    modules: list[str]  # the proj_in/proj_out modules reshaped


def projection_modules(lora: KohyaLora) -> list[str]:
    """The UNet transformer proj_in/proj_out modules of a LoRA."""
    return [
        m
        for m in lora.module_names()
        if m.startswith("lora_unet_") and m.endswith(("_proj_in", "_proj_out"))
    ]


def lora_family(lora: KohyaLora) -> str | None:
    """The family ("sd1", "sd2" or "sdxl") from the metadata, else from tensor shapes; None if unknown."""
    meta = lora.metadata
    version = meta.get("ss_base_model_version", "")
    arch = meta.get("modelspec.architecture", "")
    if version.startswith("sdxl") or arch.startswith("stable-diffusion-xl"):
        return "sdxl"
    if version.startswith("sd_v2") or arch.startswith("stable-diffusion-v2"):
        return "sd2"
    if version.startswith("sd_v1") or arch.startswith("stable-diffusion-v1"):
        return "sd1"
    if meta.get("ss_v2") == "True":
        return "sd2"
    return _family_from_shapes(lora)


def _family_from_shapes(lora: KohyaLora) -> str | None:
    if "lora_te1" in lora.text_encoder_prefixes():
        return "sdxl"
    for module in lora.module_names():
        # the text width shows in text-encoder q_proj inputs and in cross-attention to_k inputs
        if module.endswith(("_self_attn_q_proj", "_attn2_to_k")):
            width = int(lora.down(module).shape[1])
            return {_SD2_WIDTH: "sd2", 768: "sd1", 2048: "sdxl"}.get(width)
    return None


def convert_projections(lora: KohyaLora, to: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The LoRA's tensors with proj_in/proj_out in form `to`; also the modules that changed."""
    if to not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {to!r}")
    tensors = dict(lora.tensors)
    changed = []
    for module in projection_modules(lora):
        down, up = lora.down(module), lora.up(module)
        if to == "diffusers" and down.ndim == 4 and down.shape[2:] == (1, 1):
            tensors[f"{module}.{DOWN}"], tensors[f"{module}.{UP}"] = down.flatten(1), up.flatten(1)
            changed.append(module)
        elif to == "kohya" and down.ndim == 2:
            tensors[f"{module}.{DOWN}"] = down[:, :, None, None]
            tensors[f"{module}.{UP}"] = up[:, :, None, None]
            changed.append(module)
    return tensors, changed


def default_output(source: Path, to: str) -> Path:
    return source.with_name(f"{source.stem}-{to}.safetensors")


def convert_file(
    source: str | Path,
    output: str | Path | None = None,
    *,
    to: str = "diffusers",
    force: bool = False,
    assume_sd2: bool = False,
) -> ConvertResult:
    """Write `source` with its SD2 projections in form `to`, metadata kept; atomic, never overwrites unless `force`."""
    source = Path(source)
    lora = load_kohya_lora(source)
    where = str(source)
    family = "sd2" if assume_sd2 else lora_family(lora)
    _check_family(family, where)
    tensors, changed = convert_projections(lora, to)
    if not changed:
        _nothing_to_do(lora, to, where)
    target = Path(output) if output is not None else default_output(source, to)
    if target.exists() and not force:
        raise LoraFileError(
            "the output file already exists",
            where=str(target),
            fix="pass --force to replace it, or give another output file",
        )
    # sshs_* hashes are recomputed for the new file; every other metadata key is kept
    metadata = {k: v for k, v in lora.metadata.items() if not k.startswith("sshs_")}
    save_kohya_lora(target, tensors, metadata, overwrite=True)
    return ConvertResult(target, family or "sd2", changed)


def _check_family(family: str | None, where: str) -> None:
    if family == "sd2":
        return
    if family is None:
        raise LoraFileError(
            "cannot tell whether this LoRA is for SD2.x (no ss_base_model_version metadata, "
            "and its shapes do not say)",
            where=where,
            fix="pass --sd2 if it is an SD2.x LoRA; other LoRAs need no conversion",
        )
    name = {"sd1": "SD1.x", "sdxl": "SDXL"}[family]
    raise LoraFileError(
        f"this is an {name} LoRA; only SD2.x LoRAs have projections to convert",
        where=where,
        fix="use the file as it is: diffusers and the WebUI both read it",
    )


def _nothing_to_do(lora: KohyaLora, to: str, where: str) -> None:
    if not projection_modules(lora):
        raise LoraFileError(
            "this LoRA has no proj_in/proj_out modules, so there is nothing to convert",
            where=where,
            fix="use the file as it is",
        )
    shape = "[r, C]" if to == "diffusers" else "[r, C, 1, 1]"
    raise LoraFileError(
        f"the projections are already in the {to} form {shape}",
        where=where,
        fix="use the file as it is",
    )
