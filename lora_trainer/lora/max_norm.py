"""kohya's scale_weight_norms: cap the norm of each module's LoRA weight delta (max-norm)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .network import ADAPTER, LoraNetwork


@dataclass(frozen=True)
class MaxNormStats:
    """What kohya logs after the regularisation: "Keys Scaled" and "Average key norm"."""

    keys_scaled: int
    mean_norm: float
    max_norm: float


def weight_delta(down: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """up @ down as the base weight's shape (Linear, 1x1 conv or 3x3 conv), unscaled."""
    if down.ndim == 2:
        return up @ down
    if down.shape[2:] == (1, 1) and up.shape[2:] == (1, 1):
        return (up.flatten(1) @ down.flatten(1)).unsqueeze(2).unsqueeze(3)
    # 3x3: the down kernel seen through the 1x1 up projection
    return F.conv2d(down.permute(1, 0, 2, 3), up).permute(1, 0, 2, 3)


@torch.no_grad()
def apply_max_norm(network: LoraNetwork, max_norm: float) -> MaxNormStats:
    """Scale down and up by sqrt(ratio) where |scale * up @ down| exceeds `max_norm` (kohya's rule)."""
    norms: list[float] = []
    scaled = 0
    for _, layer in network.layers():
        down, up = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
        delta = weight_delta(down, up) * layer.scaling[ADAPTER]
        # kohya clamps the norm from below at max_norm / 2 first, so only norms above
        # max_norm give a ratio below 1
        norm = delta.norm().clamp(min=max_norm / 2)
        ratio = (norm.clamp(max=max_norm) / norm).cpu()
        if ratio != 1:
            scaled += 1
            down.mul_(ratio.sqrt().to(down.device, down.dtype))
            up.mul_(ratio.sqrt().to(up.device, up.dtype))
        norms.append((delta.norm().cpu() * ratio).item())
    if not norms:
        return MaxNormStats(0, 0.0, 0.0)
    return MaxNormStats(scaled, sum(norms) / len(norms), max(norms))
