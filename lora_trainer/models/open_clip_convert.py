"""open_clip text tower (SD2, SDXL's second encoder) -> transformers CLIPTextModel names, as views.

open_clip stores q, k and v of each layer as one fused `in_proj_weight` [3C, C] and the
text projection as a [C, P] matrix applied as x @ P. The split rows and the transposed
projection are views of the caller's tensors, so nothing is copied (diffusers' own
converter clones them, which would double the memory of the WebUI's loaded model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# open_clip name inside a residual block -> CLIPEncoderLayer name
_LAYER_RENAMES = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
_TOP_RENAMES = {
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
}
_BLOCKS = "transformer.resblocks."


@dataclass
class OpenClipConversion:
    tensors: dict[str, Any]
    unused: list[str] = field(default_factory=list)  # keys of the part left out on purpose


def convert_open_clip(
    part: dict[str, Any], num_layers: int, with_projection: bool
) -> OpenClipConversion:
    """Rename an open_clip text tower (prefix removed) for a CLIPTextModel[WithProjection].

    Blocks from `num_layers` on are left out: SD2 conditions on the penultimate layer, so
    its text encoder is the first 23 of open_clip's 24 blocks (as in kohya and diffusers).
    """
    out = OpenClipConversion({})
    for key, value in part.items():
        if key in _TOP_RENAMES:
            out.tensors[_TOP_RENAMES[key]] = value
        elif key == "text_projection" and with_projection:
            out.tensors["text_projection.weight"] = value.t()  # x @ P == linear with weight P^T
        elif key.startswith(_BLOCKS):
            index, _, rest = key[len(_BLOCKS) :].partition(".")
            if int(index) >= num_layers:
                out.unused.append(key)
                continue
            _convert_block_key(f"text_model.encoder.layers.{index}.", rest, value, out.tensors)
        else:
            out.unused.append(key)  # logit_scale; text_projection without projection
    return out


def _convert_block_key(layer: str, rest: str, value: Any, tensors: dict[str, Any]) -> None:
    if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
        kind = rest.rsplit("_", 1)[1]  # "weight" or "bias"
        q, k, v = value.chunk(3, dim=0)  # views, not copies
        for name, piece in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
            tensors[f"{layer}self_attn.{name}.{kind}"] = piece
        return
    module, _, kind = rest.rpartition(".")
    tensors[f"{layer}{_LAYER_RENAMES.get(module, module)}.{kind}"] = value
