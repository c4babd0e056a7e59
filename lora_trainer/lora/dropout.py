"""kohya's LoRA dropouts (networks/lora.py LoRAModule.forward) on a peft LoRA layer.

peft's `lora_dropout` drops the layer's *input*. kohya drops differently, and only in
training mode:
- network_dropout: plain dropout on the lora_down output;
- rank_dropout: a per-sample mask over the rank channels of the lora_down output, with the
  LoRA scale multiplied by 1 / (1 - p) ("as if the rank changed");
- module_dropout: with probability p the whole LoRA is skipped for this call.
All three draw from torch's global random generator, as kohya's do.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class KohyaDropout:
    """The three kohya probabilities (None = off)."""

    dropout: float | None = None
    rank_dropout: float | None = None
    module_dropout: float | None = None

    @property
    def active(self) -> bool:
        return any((self.dropout, self.rank_dropout, self.module_dropout))


def install_kohya_forward(layer: nn.Module, adapter: str, options: KohyaDropout) -> None:
    """Replace this peft layer's forward (for this instance only) by kohya's LoRA forward."""
    layer.kohya_dropout = options
    layer.kohya_adapter = adapter
    layer.forward = types.MethodType(_kohya_forward, layer)


def _kohya_forward(self: nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    result = self.base_layer(x, *args, **kwargs)
    adapter = self.kohya_adapter
    if self.disable_adapters or self.merged or adapter not in self.active_adapters:
        return result
    options: KohyaDropout = self.kohya_dropout
    if self.training and options.module_dropout and torch.rand(1) < options.module_dropout:
        return result
    down, up = self.lora_A[adapter], self.lora_B[adapter]
    lx = down(x.to(down.weight.dtype))
    if self.training and options.dropout:
        lx = F.dropout(lx, p=options.dropout)
    scale = self.scaling[adapter]
    if self.training and options.rank_dropout:
        lx = lx * rank_mask(lx, options.rank_dropout)
        scale = scale / (1.0 - options.rank_dropout)
    return (result + up(lx) * scale).to(result.dtype)


def rank_mask(lx: torch.Tensor, p: float) -> torch.Tensor:
    """kohya's rank dropout mask: one keep/drop per (sample, rank), broadcast over the rest."""
    rank = lx.shape[1] if lx.ndim == 4 else lx.shape[-1]
    mask = torch.rand((lx.shape[0], rank), device=lx.device) > p
    if lx.ndim == 3:  # (batch, tokens, rank): text encoder and transformer blocks
        mask = mask.unsqueeze(1)
    elif lx.ndim == 4:  # (batch, rank, h, w): convolutions
        mask = mask.unsqueeze(-1).unsqueeze(-1)
    return mask.to(lx.dtype)
