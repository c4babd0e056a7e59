"""Test helper: a tiny diffusers bundle written out in the original LDM/SGM checkpoint layout.

diffusers has no diffusers -> LDM converter, so this one is written from the layouts'
rules. It is anchored to reality by tests that check every key it makes is a key of
the real SD2 / SDXL checkpoints recorded from AUTOMATIC1111 (shared/fixtures), and that
its WebUI live-layout variant matches the WebUI's recorded key transformation.
"""

from __future__ import annotations

import re

import torch

from lora_trainer.lora.sdxl_names import sgm_module_path
from lora_trainer.models.bundle import ModelBundle
from lora_trainer.models.ldm_keys import SCHEDULE_BUFFERS

TEXT_PREFIX = {
    "sd1": ["cond_stage_model.transformer."],
    "sd2": ["cond_stage_model.model."],
    "sdxl": ["conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."],
}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}
_OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def ldm_state_dict(bundle: ModelBundle, seed: int = 0) -> dict[str, torch.Tensor]:
    """The bundle's weights as an LDM (SD1/SD2) or SGM (SDXL) checkpoint would hold them."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    out.update(_unet(bundle.unet))
    out.update(_vae(bundle.vae))
    for prefix, encoder in zip(TEXT_PREFIX[bundle.arch], bundle.text_encoders):
        if prefix.endswith(".transformer."):
            out.update(_clip(encoder, prefix))
        else:
            out.update(_open_clip(encoder, prefix, extra_block=bundle.arch == "sd2", gen=gen))
    if bundle.arch == "sdxl":
        out["denoiser.sigmas"] = torch.rand(1000, generator=gen)
    else:
        out.update(
            {
                name: torch.rand(1000, generator=gen)
                for name in sorted(SCHEDULE_BUFFERS - {"logvar"})
            }
        )
    return out


def webui_live_layout(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What the WebUI's `sd_model.state_dict()` shows for that checkpoint (A1111.md's rules)."""
    live: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        live[_wrapped(key)] = value
    if any(k.startswith("conditioner.") for k in state_dict):
        for key, value in list(live.items()):  # the conditioner again, as cond_stage_model
            if key.startswith("conditioner.embedders."):
                live["cond_stage_model." + key[len("conditioner.") :]] = value
    return live


def _wrapped(key: str) -> str:
    for prefix in ("cond_stage_model.transformer.", "cond_stage_model.model."):
        if key.startswith(prefix):
            key = "cond_stage_model.wrapped." + key[len("cond_stage_model.") :]
    key = re.sub(r"^(conditioner\.embedders\.\d+)\.(transformer|model)\.", r"\1.wrapped.\2.", key)
    return key.replace("token_embedding.weight", "token_embedding.wrapped.weight")


def _unet(unet) -> dict[str, torch.Tensor]:
    config = unet.config
    out = {}
    for name, tensor in unet.state_dict().items():
        module, _, leaf = name.rpartition(".")
        path = sgm_module_path(module, config.layers_per_block, config.up_block_types)
        out[f"model.diffusion_model.{path}.{leaf}"] = tensor.clone()
    return out


def _vae(vae) -> dict[str, torch.Tensor]:
    levels = len(vae.config.block_out_channels)
    out = {}
    for name, tensor in vae.state_dict().items():
        key, tensor = _vae_key(name, levels), tensor.clone()
        if ".attn_1." in key and key.endswith("weight") and tensor.ndim == 2:
            tensor = tensor[:, :, None, None].clone()  # LDM's attention uses 1x1 convs
        out["first_stage_model." + key] = tensor
    return out


def _vae_key(name: str, levels: int) -> str:
    name = name.replace("conv_norm_out", "norm_out")
    name = re.sub(r"down_blocks\.(\d+)\.resnets\.", r"down.\1.block.", name)
    name = re.sub(r"down_blocks\.(\d+)\.downsamplers\.0\.", r"down.\1.downsample.", name)
    name = re.sub(
        r"up_blocks\.(\d+)\.resnets\.", lambda m: f"up.{levels - 1 - int(m[1])}.block.", name
    )
    name = re.sub(
        r"up_blocks\.(\d+)\.upsamplers\.0\.",
        lambda m: f"up.{levels - 1 - int(m[1])}.upsample.",
        name,
    )
    name = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", name)
    if "mid_block.attentions.0." in name:
        name = name.replace("mid_block.attentions.0.", "mid.attn_1.")
        for new, old in _VAE_ATTENTION.items():
            name = name.replace(f".{new}.", f".{old}.")
    for new, old in _VAE_RESNET.items():
        name = name.replace(f".{new}.", f".{old}.")
    return name


def _clip(encoder, prefix: str) -> dict[str, torch.Tensor]:
    out = {
        prefix + k: v.clone() for k, v in encoder.state_dict().items() if "position_ids" not in k
    }
    # real checkpoints carry the position ids buffer (int64), whatever transformers does
    positions = encoder.config.max_position_embeddings
    out[prefix + "text_model.embeddings.position_ids"] = torch.arange(positions)[None]
    return out


def _open_clip(
    encoder, prefix: str, extra_block: bool, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    state = encoder.state_dict()
    model = "text_model."
    out = {
        prefix + "token_embedding.weight": state[model + "embeddings.token_embedding.weight"],
        prefix + "positional_embedding": state[model + "embeddings.position_embedding.weight"],
        prefix + "ln_final.weight": state[model + "final_layer_norm.weight"],
        prefix + "ln_final.bias": state[model + "final_layer_norm.bias"],
        prefix + "logit_scale": torch.tensor(4.6052),
    }
    layers = encoder.config.num_hidden_layers
    for i in range(layers):
        out.update(
            _open_clip_block(
                state, f"{model}encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
            )
        )
    hidden, projection = encoder.config.hidden_size, encoder.config.projection_dim
    if extra_block:  # SD2: open_clip's last block, which SD2 does not use
        for key, value in list(out.items()):
            if ".resblocks.0." in key:
                extra = key.replace(".resblocks.0.", f".resblocks.{layers}.")
                out[extra] = torch.randn(value.shape, generator=gen)
        out[prefix + "text_projection"] = torch.randn(hidden, projection, generator=gen)
    else:
        out[prefix + "text_projection"] = state["text_projection.weight"].t().contiguous()
    return {k: v.clone() for k, v in out.items()}


def _open_clip_block(state: dict, layer: str, block: str) -> dict[str, torch.Tensor]:
    out = {}
    for kind in ("weight", "bias"):
        q, k, v = (state[f"{layer}self_attn.{n}_proj.{kind}"] for n in "qkv")
        out[f"{block}attn.in_proj_{kind}"] = torch.cat([q, k, v])
        for ours, theirs in _OPEN_CLIP_LAYER.items():
            out[f"{block}{theirs}.{kind}"] = state[f"{layer}{ours}.{kind}"]
    return out
