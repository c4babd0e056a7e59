"""Which modules get a LoRA, and their kohya names (kohya's `networks/lora.py` rules)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from .sdxl_names import sgm_module_path

# kohya's UNET_TARGET_REPLACE_MODULE / TEXT_ENCODER_TARGET_REPLACE_MODULE: LoRA goes on the
# Linear (and 1x1 Conv2d) children of these blocks. Newer transformers name their attention
# classes after the kernel (CLIPSdpaAttention...), so the text-encoder set lists those too.
UNET_TARGET_BLOCKS = frozenset({"Transformer2DModel"})
UNET_CONV_TARGET_BLOCKS = frozenset({"ResnetBlock2D", "Downsample2D", "Upsample2D"})
TEXT_ENCODER_TARGET_BLOCKS = frozenset(
    {"CLIPAttention", "CLIPSdpaAttention", "CLIPFlashAttention2", "CLIPMLP"}
)


@dataclass(frozen=True)
class LoraTarget:
    """One module that gets a LoRA: its path in the model and its kohya name."""

    kohya_name: str
    module_path: str
    is_conv3x3: bool = False
    # SD2's proj_in/proj_out are Linear here but 1x1 convs in kohya's UNet: their LoRA
    # weights are written as [r, C, 1, 1] like kohya writes them
    linear_as_conv1x1: bool = False
    # this module's own rank and alpha (block_dims, dim_from_weights); None: the network's
    rank: int | None = None
    alpha: float | None = None


def kohya_name(prefix: str, module_path: str) -> str:
    """`down_blocks.0.attentions.0.proj_in` -> `lora_unet_down_blocks_0_attentions_0_proj_in`."""
    return f"{prefix}_{module_path}".replace(".", "_")


def find_targets(
    model: nn.Module,
    prefix: str,
    block_classes: frozenset[str],
    conv_block_classes: frozenset[str] = frozenset(),
) -> list[LoraTarget]:
    """Every Linear / 1x1-conv inside `block_classes` (and 3x3 convs inside `conv_block_classes`)."""
    targets: dict[str, LoraTarget] = {}
    for block_path, block in model.named_modules():
        block_class = type(block).__name__
        in_linear_block = block_class in block_classes
        in_conv_block = block_class in conv_block_classes
        if not (in_linear_block or in_conv_block):
            continue
        for child_path, child in block.named_modules():
            if not child_path:
                continue
            kind = _module_kind(child)
            if kind is None or (kind == "conv3x3" and not in_conv_block):
                continue
            if kind != "conv3x3" and not (in_linear_block or in_conv_block):
                continue
            path = f"{block_path}.{child_path}" if block_path else child_path
            targets.setdefault(
                path, LoraTarget(kohya_name(prefix, path), path, is_conv3x3=kind == "conv3x3")
            )
    return list(targets.values())


def _module_kind(module: nn.Module) -> str | None:
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Conv2d):
        return "conv1x1" if tuple(module.kernel_size) == (1, 1) else "conv3x3"
    return None


def unet_targets(unet: nn.Module, include_conv3x3: bool = False) -> list[LoraTarget]:
    """kohya's UNet targets: transformer blocks, plus ResNet/down/upsample blocks for LoCon.

    SDXL modules get the SGM block names kohya uses; SD2's linear projections are marked
    to be written with kohya's 1x1-conv shapes.
    """
    conv_blocks = UNET_CONV_TARGET_BLOCKS if include_conv3x3 else frozenset()
    targets = find_targets(unet, "lora_unet", UNET_TARGET_BLOCKS, conv_blocks)
    config = getattr(unet, "config", None) or {}
    if is_sdxl_unet(config):
        layers, up_types = config["layers_per_block"], config["up_block_types"]
        return [
            replace(
                t,
                kohya_name=kohya_name(
                    "lora_unet", sgm_module_path(t.module_path, layers, up_types)
                ),
            )
            for t in targets
        ]
    if config.get("use_linear_projection"):
        return [replace(t, linear_as_conv1x1=_is_projection(unet, t)) for t in targets]
    return targets


def is_sdxl_unet(config: Any) -> bool:
    """SDXL's UNet is the one with text_time added conditioning."""
    return bool(config) and config.get("addition_embed_type") == "text_time"


def _is_projection(unet: nn.Module, target: LoraTarget) -> bool:
    last = target.module_path.rsplit(".", 1)[-1]
    return last in ("proj_in", "proj_out") and isinstance(
        unet.get_submodule(target.module_path), nn.Linear
    )


def text_encoder_targets(text_encoder: nn.Module, prefix: str = "lora_te") -> list[LoraTarget]:
    """kohya's text-encoder targets: q/k/v/out_proj and fc1/fc2 of every CLIP layer."""
    return find_targets(text_encoder, prefix, TEXT_ENCODER_TARGET_BLOCKS)
