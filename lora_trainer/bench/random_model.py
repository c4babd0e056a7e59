"""Full-size SD1.5 / SD2 / SDXL architectures with random weights, built in seconds."""

from __future__ import annotations

import math

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import nn
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from ..errors import ConfigError
from ..models.arch_configs import bundled_configs
from ..models.bundle import ModelBundle, ModelSource
from ..models.ldm_bundle import default_tokenizers

RANDOM_ARCHES = ("sd1", "sd2", "sdxl")


def build_random_bundle(
    arch: str,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    vae_dtype: torch.dtype | None = None,
) -> ModelBundle:
    """The bundled standard configs of `arch`, weights drawn uniformly at PyTorch's default scale.

    Modules are made on the meta device and filled in place: no time is spent on the
    libraries' own (slow, per-layer) initialisation, and memory is allocated once.
    """
    if arch not in RANDOM_ARCHES:
        raise ConfigError(
            f"unknown architecture {arch!r}", fix=f"use one of: {', '.join(RANDOM_ARCHES)}"
        )
    configs = bundled_configs(arch)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**configs.unet)
        vae = AutoencoderKL(**configs.vae)
        classes = (
            [CLIPTextModel] if arch != "sdxl" else [CLIPTextModel, CLIPTextModelWithProjection]
        )
        texts = [cls(cfg) for cls, cfg in zip(classes, configs.text_encoders)]
    pool = RandomPool(seed)
    for module, module_dtype in (
        (unet, dtype),
        (vae, vae_dtype or dtype),
        *((t, dtype) for t in texts),
    ):
        materialise(module, pool, module_dtype)
    return ModelBundle(
        arch=arch,
        unet=unet,
        text_encoders=texts,
        tokenizers=default_tokenizers(arch),
        vae=vae,
        scheduler_config=configs.scheduler,
        source=ModelSource(name=f"random-{arch}"),
        scale_factor=configs.scale_factor,
        prediction_type=configs.prediction_type,
    )


POOL_SIZE = 1 << 22  # random values tiled into the weights: a copy is ~20x faster than drawing


class RandomPool:
    """A seeded block of U(-1, 1) values, handed out in a rotating window."""

    def __init__(self, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.values = torch.rand(POOL_SIZE, generator=generator) * 2 - 1
        self.offset = 0

    def fill(self, flat: torch.Tensor, scale: float) -> None:
        done = 0
        while done < flat.numel():
            start = self.offset % POOL_SIZE
            n = min(POOL_SIZE - start, flat.numel() - done)
            flat[done : done + n].copy_(self.values[start : start + n])
            done += n
            self.offset = start + n
        # move on by an odd amount, so neighbouring tensors do not start on the same values
        self.offset += 7919
        flat.mul_(scale)


def materialise(module: nn.Module, pool: RandomPool, dtype: torch.dtype) -> None:
    """Give a meta-device module real, random, frozen weights (biases 0, norm scales 1)."""
    module.to(dtype).to_empty(device="cpu")  # cast while on meta: memory is allocated once
    with torch.no_grad():
        for name, param in module.named_parameters():
            fill_parameter(name, param, pool)
        for name, buffer in module.named_buffers():
            if name.endswith("position_ids"):  # CLIP's only buffer: 0..76
                buffer.copy_(torch.arange(buffer.shape[-1]).expand_as(buffer))
            else:
                raise RuntimeError(f"no rule to initialise buffer {name}")
    module.requires_grad_(False).eval()


def fill_parameter(name: str, param: torch.Tensor, pool: RandomPool) -> None:
    """PyTorch's default Linear/Conv scale, U(-1/sqrt(fan_in), 1/sqrt(fan_in)); biases 0, norms 1."""
    if name.endswith("bias"):
        param.zero_()
    elif param.ndim == 1:  # norm scales
        param.fill_(1.0)
    elif "embedding" in name:
        pool.fill(param.view(-1), 0.03)
    else:
        pool.fill(param.view(-1), 1.0 / math.sqrt(math.prod(param.shape[1:])))


def parameter_count(bundle: ModelBundle) -> dict[str, int]:
    """Parameters per module of a bundle."""
    return {name: sum(p.numel() for p in m.parameters()) for name, m in bundle.modules().items()}
