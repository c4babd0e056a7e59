"""A stand-in for the model object a real A1111 v1.10.1 holds as `shared.sd_model`.

Built from the tiny SD1 checkpoint in shared/fixtures (tiny-sd1.safetensors) with the
LIVE key layout the real WebUI reported for it (a1111_tiny_sd1_state_dict.json: the
`wrapped` components the hijack inserts, float32 as with --no-half, the same key order,
parameters and buffers as listed), plus the attributes the WebUI sets on
ldm.models.diffusion.ddpm.LatentDiffusion (facts in the same file): is_sd1/is_sd2/is_sdxl/
is_sd3/is_ssd, model_type, parameterization, scale_factor, latent_channels,
sd_checkpoint_info (modules.sd_models.CheckpointInfo), sd_model_hash,
sd_model_checkpoint, used_config, lowvram, alphas_cumprod_original,
cond_stage_model.wrapped.tokenizer (the real CLIP tokenizer files in tiny-clip/) and
cond_stage_model.wrapped.transformer.config. Leaf layers are plain modules holding the
listed tensors: what the WebUI's model holds, not how ldm computes with it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn


class LiveModule(nn.Module):
    """A node of the live module tree (ldm's classes are not needed to hold the tensors)."""


def _checkpoint_key(live_key: str) -> str:
    return ".".join(part for part in live_key.split(".") if part != "wrapped")


def _module_at(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split(".") if path else []:
        child = module._modules.get(part)
        if child is None:
            child = LiveModule()
            module.add_module(part, child)
        module = child
    return module


def build_live_tiny_sd1(fixtures: Path, checkpoint: Path | None = None) -> nn.Module:
    """The tiny SD1 model as the WebUI holds it after loading (with --no-half)."""
    from modules import sd_models
    from transformers import CLIPTextConfig, CLIPTokenizer

    checkpoint = checkpoint or fixtures / "tiny-sd1.safetensors"
    dump = json.loads((fixtures / "a1111_tiny_sd1_state_dict.json").read_text(encoding="utf-8"))
    tensors = load_file(str(checkpoint))
    root = LiveModule()
    for key, meta in dump["state_dict"].items():
        tensor = tensors[_checkpoint_key(key)]
        if tensor.is_floating_point():
            tensor = tensor.to(getattr(torch, meta["dtype"]))
        owner_path, _, name = key.rpartition(".")
        owner = _module_at(root, owner_path)
        if meta["kind"] == "param":
            # FrozenCLIPEmbedder.freeze() and ldm's instantiate_first_stage freeze these
            frozen = key.startswith(("cond_stage_model.", "first_stage_model."))
            owner.register_parameter(name, nn.Parameter(tensor, requires_grad=not frozen))
        else:
            owner.register_buffer(name, tensor)
    _set_webui_attributes(root, checkpoint, fixtures, sd_models)
    wrapped = root.cond_stage_model.wrapped
    wrapped.tokenizer = CLIPTokenizer.from_pretrained(
        str(fixtures / "tiny-clip"), local_files_only=True
    )
    config = json.loads((fixtures / "tiny-clip" / "config.json").read_text(encoding="utf-8"))
    wrapped.transformer.config = CLIPTextConfig(**config)
    return root.eval()


def _set_webui_attributes(root: nn.Module, checkpoint: Path, fixtures: Path, sd_models) -> None:
    root.is_sd1, root.is_sd2, root.is_sdxl, root.is_ssd, root.is_sd3 = (
        True,
        False,
        False,
        False,
        False,
    )
    root.is_sdxl_inpaint = False
    root.model_type = sd_models.ModelType.SD1
    root.parameterization = "eps"
    root.scale_factor = 0.18215
    root.latent_channels = 4
    root.lowvram = False
    root.alphas_cumprod_original = root.alphas_cumprod
    info = sd_models.CheckpointInfo(str(checkpoint))
    root.sd_checkpoint_info = info
    root.sd_model_hash = info.shorthash
    root.sd_model_checkpoint = info.filename
    root.used_config = str(fixtures / "tiny-sd1.yaml")
    root.cond_stage_model_empty_prompt = torch.zeros(1, 77, 32)


def state_fingerprint(model: nn.Module) -> str:
    """sha256 over every state-dict entry's name, dtype, device, shape and bytes."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}|{tensor.dtype}|{tensor.device}|{tuple(tensor.shape)}".encode())
        digest.update(
            tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return digest.hexdigest()


def live_record(model: nn.Module) -> tuple[str, int, list[str]]:
    """What training must not change: state-dict bytes/devices/dtypes, hook count, module types."""
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    types = [type(m).__name__ for m in model.modules()]
    return state_fingerprint(model), hooks, types


def has_peft_layers(model: nn.Module) -> bool:
    return any("peft" in type(m).__module__ or hasattr(m, "lora_A") for m in model.modules())
