"""A VAE of its own (kohya's --vae): an LDM VAE file, a full checkpoint, or a diffusers VAE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL

from ..errors import ModelError
from ..lora.hashes import legacy_model_hash, sha256_file
from .bundle import ModelSource
from .checkpoint_read import read_checkpoint
from .ldm_convert import build_with_tensors, vae_from_ldm
from .ldm_keys import VAE_PREFIX

DIFFUSERS_VAE_KEY = "encoder.down_blocks.0.resnets.0.conv1.weight"
LDM_VAE_KEY = "encoder.down.0.block.0.conv1.weight"


def load_vae(
    path: str | Path, config: dict[str, Any], weight_dtype: torch.dtype = torch.float32
) -> tuple[AutoencoderKL, ModelSource]:
    """The VAE at `path` (file or diffusers folder) built with `config`, and where it came from."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _from_folder(path, weight_dtype), ModelSource(path.name, path)
    tensors, _ = read_checkpoint(path)
    tensors = {k: v.to(weight_dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    vae = vae_from_tensors(tensors, config, str(path))
    source = ModelSource(path.name, path, legacy_model_hash(path), sha256_file(path))
    return vae, source


def vae_from_tensors(tensors: dict[str, Any], config: dict[str, Any], where: str) -> AutoencoderKL:
    """A VAE from LDM-layout tensors (with or without first_stage_model.) or diffusers-layout ones."""
    if DIFFUSERS_VAE_KEY in tensors:
        return build_with_tensors(lambda: AutoencoderKL(**config), tensors, "VAE")
    part = {k[len(VAE_PREFIX) :]: v for k, v in tensors.items() if k.startswith(VAE_PREFIX)}
    if not part and LDM_VAE_KEY in tensors:  # a VAE-only file such as vae-ft-mse-840000
        part = {
            k: v
            for k, v in tensors.items()
            if k.startswith(("encoder.", "decoder.", "quant", "post_quant"))
        }
    if not part:
        raise ModelError(
            "this file holds no VAE weights that this version knows",
            where=where,
            fix="give an SD VAE (.safetensors/.ckpt, LDM or diffusers layout) or a diffusers VAE folder",
        )
    return vae_from_ldm(part, config)


def _from_folder(path: Path, weight_dtype: torch.dtype) -> AutoencoderKL:
    folder = path / "vae" if (path / "vae" / "config.json").is_file() else path
    if not (folder / "config.json").is_file():
        raise ModelError(
            "this folder is not a diffusers VAE (no config.json)",
            where=str(path),
            fix="give the VAE folder, a diffusers model folder with vae/, or a VAE file",
        )
    try:
        vae = AutoencoderKL.from_pretrained(
            str(folder), local_files_only=True, torch_dtype=weight_dtype
        )
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the VAE: {exc}", where=str(folder)) from None
    return vae.requires_grad_(False).eval()
