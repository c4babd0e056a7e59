"""diffusers UNet module paths -> the SGM (original SDXL) paths kohya names SDXL LoRA modules after.

kohya trains SDXL on its own copy of the SGM UNet, so its keys read
`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q` where diffusers says
`down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q`. Inside a transformer
block the names agree; the block prefixes and the ResNet internals differ.
"""

from __future__ import annotations

from collections.abc import Sequence

# ResNet children: diffusers name -> SGM name (SGM keeps them in nn.Sequential containers)
RESNET_CHILDREN = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
TOP_LEVEL = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def sgm_module_path(path: str, layers_per_block: int, up_block_types: Sequence[str]) -> str:
    """The SGM path of a diffusers UNet module path, e.g. 'down_blocks.1.attentions.0' -> 'input_blocks.4.1'."""
    if path in TOP_LEVEL:
        return TOP_LEVEL[path]
    parts = path.split(".")
    head = parts[0]
    if head == "down_blocks":
        block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
        if kind == "downsamplers":  # the level's last input block; SGM calls the conv `op`
            return _join(f"input_blocks.{(block + 1) * (layers_per_block + 1)}.0.op", rest[1:])
        number = block * (layers_per_block + 1) + index + 1
        return _child(f"input_blocks.{number}", kind, rest)
    if head == "mid_block":
        kind, index, rest = parts[1], int(parts[2]), parts[3:]
        number = 1 if kind == "attentions" else 2 * index  # ResNet, transformer, ResNet
        return _child(f"middle_block.{number}", kind, rest, slotted=False)
    if head == "up_blocks":
        block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
        per_level = layers_per_block + 1  # up levels have one ResNet more than down levels
        if kind == "upsamplers":  # after the level's last ResNet (and transformer, if any)
            slot = 2 if "CrossAttn" in up_block_types[block] else 1
            return _join(f"output_blocks.{block * per_level + per_level - 1}.{slot}.conv", rest[1:])
        return _child(f"output_blocks.{block * per_level + index}", kind, rest)
    raise ValueError(f"{path!r} is not a UNet block path")


def _child(block: str, kind: str, rest: list[str], slotted: bool = True) -> str:
    """A ResNet (slot 0) or transformer (slot 1) of an SGM block; middle blocks have no slots."""
    if slotted:
        block += ".0" if kind == "resnets" else ".1"
    if kind == "resnets" and rest:
        rest = RESNET_CHILDREN.get(rest[0], rest[0]).split(".") + rest[1:]
    return _join(block, rest)


def _join(base: str, rest: list[str]) -> str:
    return ".".join([base, *rest]) if rest else base
