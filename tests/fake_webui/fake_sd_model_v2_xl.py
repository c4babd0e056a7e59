"""Stand-ins for an SD2 (768-v) and an SDXL model as a real A1111 v1.10.1 holds them in `shared.sd_model`.

The weights are the engine's tiny SD2 / SDXL models written in the checkpoint layout
(tests/tiny_ldm_layouts.py), saved as an fp16 .safetensors with an LDM/SGM .yaml beside it
(the WebUI's `used_config`), and loaded in float32 as with --no-half. The module tree is
the live one recorded in shared/fixtures/a1111_sd2_state_dict.json and
a1111_sdxl_state_dict.json (facts.types), built the way A1111 builds it:

- modules/sd_hijack.py `StableDiffusionModelHijack.hijack`: the text encoder is wrapped
  (`FrozenOpenCLIPEmbedderWithCustomWords(wrapped)` for SD2; for SDXL each text embedder
  of `conditioner.embedders` is replaced by `FrozenCLIPEmbedderForSDXLWithCustomWords` /
  `FrozenOpenCLIPEmbedder2WithCustomWords`) and every token embedding by
  `EmbeddingsWithFixes(wrapped)`: the `.wrapped.` path components of the live keys. With
  two text models SDXL's `cond_stage_model` IS the conditioner (so `state_dict()` lists
  the text encoders twice);
- modules/sd_hijack_open_clip.py: the open_clip embedders' ids (start 49406, end 49407,
  pad 0, comma 267); their tokenizer is open_clip's module-level one, not an attribute;
- modules/sd_models_xl.py `extend_sdxl`: `parameterization` from the denoiser's scaling,
  `alphas_cumprod` a plain tensor attribute (LegacyDDPMDiscretization), and
  `conditioner.wrapped = torch.nn.Module()`;
- modules/sd_models.py `load_model` / `set_model_type`: is_sd1/is_sd2/is_sdxl/is_ssd/is_sd3,
  model_type, sd_checkpoint_info, sd_model_hash, sd_model_checkpoint, used_config,
  lowvram, alphas_cumprod_original, cond_stage_model_empty_prompt;
- ldm / sgm: the text encoders and the first stage are frozen (requires_grad False), the
  UNet is not; open_clip's attention is `nn.MultiheadAttention` (fused in_proj) and its
  causal `attn_mask` a non-persistent buffer; sgm's size embedders
  (`ConcatTimestepEmbedderND`) hold `outdim` and no tensors.

Other leaves are plain modules holding the recorded tensors. One departure is forced: a
real open_clip tower is built from a named architecture (ViT-H-14, ViT-bigG-14), so the
real WebUI cannot load a tower this small; the .yaml names the real architectures.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml
from fake_sd_model import LiveModule
from safetensors.torch import save_file
from torch import nn
from transformers import CLIPTokenizer

_OPEN_CLIP_IDS = {"id_start": 49406, "id_end": 49407, "id_pad": 0, "comma_token": 267}
_SIZE_KEYS = ("original_size_as_tuple", "crop_coords_top_left", "target_size_as_tuple")


def build_live_tiny_sd2(folder: Path, fixtures: Path) -> nn.Module:
    """A tiny SD2 768-v model as the WebUI holds it (v-prediction, open_clip text encoder)."""
    from lora_trainer.models.tiny_sd2 import build_tiny_sd2

    bundle = build_tiny_sd2(seed=3)
    checkpoint = _write_checkpoint(bundle, folder / "tiny-sd2-v.safetensors", seed=3)
    _write_yaml(folder / "tiny-sd2-v.yaml", _sd2_yaml(bundle))
    tensors = _load_fp32(checkpoint)
    root = _tree(tensors, text_prefixes=("cond_stage_model.",))
    cond = root.cond_stage_model
    cond.__dict__.update(_OPEN_CLIP_IDS, chunk_length=75, return_pooled=False)
    cond.wrapped.__dict__.update(layer="penultimate", layer_idx=1, max_length=77)
    _finish_open_clip(cond.wrapped.model, heads=bundle.text_encoders[0].config.num_attention_heads)
    _set_webui_attributes(root, checkpoint, "sd2", parameterization="v", scale=0.18215)
    root.cond_stage_model_empty_prompt = torch.zeros(
        1, 77, bundle.text_encoders[0].config.hidden_size
    )
    return root.eval()


def build_live_tiny_sdxl(folder: Path, fixtures: Path) -> nn.Module:
    """A tiny SDXL base model as the WebUI holds it (two text encoders, size conditioning)."""
    from lora_trainer.models.tiny_sdxl import TIME_EMBED_DIM, build_tiny_sdxl

    bundle = build_tiny_sdxl(seed=5)
    checkpoint = _write_checkpoint(bundle, folder / "tiny-sdxl.safetensors", seed=5)
    _write_yaml(folder / "tiny-sdxl.yaml", _sdxl_yaml(bundle, TIME_EMBED_DIM))
    tensors = _load_fp32(checkpoint)
    root = _tree(tensors, text_prefixes=("conditioner.",))
    conditioner = root.conditioner
    clip_l, big_g = conditioner.embedders[0], conditioner.embedders[1]
    clip_l.__dict__.update(_OPEN_CLIP_IDS, id_pad=49407, chunk_length=75, return_pooled=False)
    clip_l.wrapped.__dict__.update(layer="hidden", layer_idx=0, max_length=77, return_pooled=False)
    clip_l.wrapped.tokenizer = CLIPTokenizer.from_pretrained(
        str(fixtures / "tiny-clip"), local_files_only=True
    )
    clip_l.wrapped.transformer.config = bundle.text_encoders[0].config
    big_g.__dict__.update(_OPEN_CLIP_IDS, chunk_length=75, return_pooled=True)
    big_g.wrapped.__dict__.update(
        layer="penultimate", layer_idx=1, legacy=False, return_pooled=True
    )
    _finish_open_clip(big_g.wrapped.model, heads=bundle.text_encoders[1].config.num_attention_heads)
    for key in _SIZE_KEYS:  # sgm ConcatTimestepEmbedderND: no tensors
        embedder = LiveModule()
        embedder.__dict__.update(outdim=TIME_EMBED_DIM, input_key=key, is_trainable=False)
        embedder.timestep = LiveModule()
        conditioner.embedders.append(embedder)
    conditioner.wrapped = nn.Module()  # extend_sdxl
    root.cond_stage_model = conditioner  # sd_hijack: two text models -> the conditioner
    root.denoiser.scaling = SimpleNamespace(kind="EpsScaling")  # a plain object in sgm
    _set_webui_attributes(root, checkpoint, "sdxl", parameterization="eps", scale=0.13025)
    root.alphas_cumprod = _legacy_ddpm_alphas_cumprod()  # an attribute, not a buffer
    root.alphas_cumprod_original = root.alphas_cumprod
    hidden = sum(te.config.hidden_size for te in bundle.text_encoders)
    root.cond_stage_model_empty_prompt = torch.zeros(1, 77, hidden)
    return root.eval()


def live_key(checkpoint_key: str) -> str:
    """The live name of a checkpoint key: the hijack's `.wrapped.` components inserted."""
    key = re.sub(r"^cond_stage_model\.(model)\.", r"cond_stage_model.wrapped.\1.", checkpoint_key)
    key = re.sub(r"^(conditioner\.embedders\.\d+)\.(transformer|model)\.", r"\1.wrapped.\2.", key)
    return key.replace("token_embedding.weight", "token_embedding.wrapped.weight")


def _write_checkpoint(bundle, path: Path, seed: int) -> Path:
    from tiny_ldm_layouts import ldm_state_dict

    tensors = ldm_state_dict(bundle, seed=seed)
    for name, values in _ddpm_schedule().items():
        if name in tensors:  # the real schedule, not ldm_state_dict's random stand-ins
            tensors[name] = values
    tensors = {
        k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt", "note": "tiny test model"})
    return path


def _load_fp32(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}


def _tree(tensors: dict[str, torch.Tensor], text_prefixes: tuple[str, ...]) -> nn.Module:
    root = LiveModule()
    for key, tensor in tensors.items():
        owner_path, _, name = live_key(key).rpartition(".")
        owner = _module_at(root, owner_path)
        frozen = key.startswith((*text_prefixes, "first_stage_model."))  # ldm/sgm freeze these
        if key.startswith(("model.diffusion_model.", "first_stage_model.")) or _is_param(key):
            owner.register_parameter(name, nn.Parameter(tensor, requires_grad=not frozen))
        else:
            owner.register_buffer(name, tensor)
    return root


def _is_param(key: str) -> bool:
    """Text-encoder parameters; buffers are the DDPM schedule, sigmas and CLIP's position ids."""
    return key.startswith(("cond_stage_model.", "conditioner.")) and not key.endswith(
        "position_ids"
    )


def _module_at(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split(".") if path else []:
        child = module._modules.get(part)
        if child is None:
            child = _new_child(part)
            module.add_module(part, child)
        module = child
    return module


def _new_child(name: str) -> nn.Module:
    if name in ("embedders", "resblocks"):  # nn.ModuleList in sgm and open_clip
        return nn.ModuleList()
    return LiveModule()  # open_clip's `attn` becomes a MultiheadAttention in _finish_open_clip


def _finish_open_clip(clip: nn.Module, heads: int) -> None:
    """open_clip's CLIP text tower: MultiheadAttention blocks, sizes, causal mask (not persistent)."""
    for block in clip.transformer.resblocks:
        block.attn = _attention(block.attn, heads)
    width = clip.positional_embedding.shape[1]
    clip.transformer.__dict__.update(width=width, layers=len(clip.transformer.resblocks))
    clip.transformer.grad_checkpointing = False
    context = clip.positional_embedding.shape[0]
    clip.__dict__.update(
        context_length=context, vocab_size=clip.token_embedding.wrapped.weight.shape[0]
    )
    mask = torch.full((context, context), float("-inf")).triu_(1)
    clip.register_buffer("attn_mask", mask, persistent=False)


def _attention(pending: nn.Module, heads: int) -> nn.MultiheadAttention:
    weight = pending.in_proj_weight
    attention = nn.MultiheadAttention(weight.shape[1], heads, device="meta")
    attention.in_proj_weight = pending.in_proj_weight
    attention.in_proj_bias = pending.in_proj_bias
    attention.out_proj.weight = pending.out_proj.weight
    attention.out_proj.bias = pending.out_proj.bias
    return attention


def _scaled_linear_betas() -> torch.Tensor:
    return torch.linspace(0.00085**0.5, 0.0120**0.5, 1000, dtype=torch.float64) ** 2


def _legacy_ddpm_alphas_cumprod() -> torch.Tensor:
    """sgm LegacyDDPMDiscretization: SD's scaled-linear betas, 1000 steps, float32."""
    return torch.cumprod(1.0 - _scaled_linear_betas(), dim=0).float()


def _ddpm_schedule() -> dict[str, torch.Tensor]:
    """ldm DDPM.register_schedule's buffers (linear_start 0.00085, linear_end 0.012, v_posterior 0)."""
    betas = _scaled_linear_betas()
    alphas = 1.0 - betas
    cumprod = torch.cumprod(alphas, dim=0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), cumprod[:-1]])
    variance = betas * (1.0 - prev) / (1.0 - cumprod)
    out = {
        "betas": betas,
        "alphas_cumprod": cumprod,
        "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - cumprod).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - cumprod).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / cumprod).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / cumprod - 1.0).sqrt(),
        "posterior_variance": variance,
        "posterior_log_variance_clipped": variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * prev.sqrt() / (1.0 - cumprod),
        "posterior_mean_coef2": (1.0 - prev) * alphas.sqrt() / (1.0 - cumprod),
    }
    return {k: v.float() for k, v in out.items()}


def _set_webui_attributes(
    root: nn.Module, checkpoint: Path, arch: str, parameterization: str, scale: float
) -> None:
    from modules import sd_models

    flags = {"sd1": False, "sd2": arch == "sd2", "sdxl": arch == "sdxl", "ssd": False, "sd3": False}
    for name, value in flags.items():
        setattr(root, f"is_{name}", value)
    root.is_sdxl_inpaint = False
    root.model_type = sd_models.ModelType.SD2 if arch == "sd2" else sd_models.ModelType.SDXL
    root.parameterization = parameterization
    root.scale_factor = scale
    root.latent_channels = 4
    root.lowvram = False
    root.cond_stage_key = "txt"
    root.model.conditioning_key = "crossattn"
    root.model.diffusion_model.dtype = torch.float32
    if arch != "sdxl":
        root.alphas_cumprod_original = root.alphas_cumprod
    info = sd_models.CheckpointInfo(str(checkpoint))
    root.sd_checkpoint_info = info
    root.sd_model_hash = info.shorthash
    root.sd_model_checkpoint = info.filename
    root.used_config = str(checkpoint.with_suffix(".yaml"))


def _write_yaml(path: Path, config: dict) -> None:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def _first_stage(target: str, vae) -> dict:
    cfg = vae.config
    return {
        "target": target,
        "params": {
            "embed_dim": cfg.latent_channels,
            "monitor": "val/rec_loss",
            "ddconfig": {
                "double_z": True,
                "z_channels": cfg.latent_channels,
                "resolution": 256,
                "in_channels": cfg.in_channels,
                "out_ch": cfg.out_channels,
                "ch": cfg.block_out_channels[0],
                "ch_mult": [c // cfg.block_out_channels[0] for c in cfg.block_out_channels],
                "num_res_blocks": cfg.layers_per_block,
                "attn_resolutions": [],
                "dropout": 0.0,
            },
            "lossconfig": {"target": "torch.nn.Identity"},
        },
    }


def _unet_params(unet) -> dict:
    cfg = unet.config
    base = cfg.block_out_channels[0]
    heads = cfg.attention_head_dim
    heads = heads if isinstance(heads, (list, tuple)) else [heads] * len(cfg.block_out_channels)
    attention = [2**i for i, t in enumerate(cfg.down_block_types) if t.startswith("CrossAttn")]
    return {
        "use_checkpoint": True,
        "in_channels": cfg.in_channels,
        "out_channels": cfg.out_channels,
        "model_channels": base,
        "attention_resolutions": attention,
        "num_res_blocks": cfg.layers_per_block,
        "channel_mult": [c // base for c in cfg.block_out_channels],
        "num_head_channels": cfg.block_out_channels[0] // heads[0],
        "use_linear_in_transformer": True,
        "context_dim": cfg.cross_attention_dim,
        "legacy": False,
    }


def _sd2_yaml(bundle) -> dict:
    """The shape of v2-inference-v.yaml (stablediffusion repo) at the tiny model's sizes."""
    unet = dict(_unet_params(bundle.unet), image_size=32, transformer_depth=1)
    return {
        "model": {
            "base_learning_rate": 1.0e-4,
            "target": "ldm.models.diffusion.ddpm.LatentDiffusion",
            "params": {
                "parameterization": "v",
                "linear_start": 0.00085,
                "linear_end": 0.0120,
                "num_timesteps_cond": 1,
                "log_every_t": 200,
                "timesteps": 1000,
                "first_stage_key": "jpg",
                "cond_stage_key": "txt",
                "image_size": 96,
                "channels": 4,
                "cond_stage_trainable": False,
                "conditioning_key": "crossattn",
                "monitor": "val/loss_simple_ema",
                "scale_factor": 0.18215,
                "use_ema": False,
                "unet_config": {
                    "target": "ldm.modules.diffusionmodules.openaimodel.UNetModel",
                    "params": unet,
                },
                "first_stage_config": _first_stage(
                    "ldm.models.autoencoder.AutoencoderKL", bundle.vae
                ),
                "cond_stage_config": {
                    "target": "ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder",
                    "params": {"freeze": True, "layer": "penultimate"},
                },
            },
        }
    }


def _sdxl_yaml(bundle, time_embed_dim: int) -> dict:
    """The shape of sd_xl_base.yaml (generative-models repo) at the tiny model's sizes."""
    cfg = bundle.unet.config
    depth = [
        n if t.startswith("CrossAttn") else 0
        for n, t in zip(cfg.transformer_layers_per_block, cfg.down_block_types)
    ]  # sd_xl_base.yaml: [0, 2, 10]
    unet = dict(
        _unet_params(bundle.unet),
        adm_in_channels=cfg.projection_class_embeddings_input_dim,
        num_classes="sequential",
        transformer_depth=depth,
        spatial_transformer_attn_type="softmax-xformers",
    )
    unet["attention_resolutions"] = sorted(unet["attention_resolutions"], reverse=True)
    text = [
        {
            "is_trainable": False,
            "input_key": "txt",
            "target": "sgm.modules.encoders.modules.FrozenCLIPEmbedder",
            "params": {"layer": "hidden", "layer_idx": 11},
        },
        {
            "is_trainable": False,
            "input_key": "txt",
            "target": "sgm.modules.encoders.modules.FrozenOpenCLIPEmbedder2",
            "params": {
                "arch": "ViT-bigG-14",
                "version": "laion2b_s39b_b160k",
                "freeze": True,
                "layer": "penultimate",
                "always_return_pooled": True,
                "legacy": False,
            },
        },
    ]
    sizes = [
        {
            "is_trainable": False,
            "input_key": key,
            "target": "sgm.modules.encoders.modules.ConcatTimestepEmbedderND",
            "params": {"outdim": time_embed_dim},
        }
        for key in _SIZE_KEYS
    ]
    return {
        "model": {
            "target": "sgm.models.diffusion.DiffusionEngine",
            "params": {
                "scale_factor": 0.13025,
                "disable_first_stage_autocast": True,
                "denoiser_config": {
                    "target": "sgm.modules.diffusionmodules.denoiser.DiscreteDenoiser",
                    "params": {
                        "num_idx": 1000,
                        "scaling_config": {
                            "target": "sgm.modules.diffusionmodules.denoiser_scaling.EpsScaling"
                        },
                        "discretization_config": {
                            "target": "sgm.modules.diffusionmodules.discretizer.LegacyDDPMDiscretization"
                        },
                    },
                },
                "network_config": {
                    "target": "sgm.modules.diffusionmodules.openaimodel.UNetModel",
                    "params": unet,
                },
                "conditioner_config": {
                    "target": "sgm.modules.GeneralConditioner",
                    "params": {"emb_models": text + sizes},
                },
                "first_stage_config": _first_stage(
                    "sgm.models.autoencoder.AutoencoderKLInferenceWrapper", bundle.vae
                ),
            },
        }
    }
