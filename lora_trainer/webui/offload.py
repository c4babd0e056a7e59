"""Move the VAE / text encoder to RAM while training when their outputs are cached (a Settings option).

The bundle's modules share their tensors with the WebUI's model. Moving only one side would
keep the GPU copy alive through the other, so both are moved together and share the new
tensors again. The LiveModelGuard moves the WebUI's tensors back when training ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from ..config import TrainConfig
from ..models.bundle import ModelBundle

log = logging.getLogger(__name__)
Move = Callable[[torch.Tensor], torch.Tensor]


def parts_to_offload(
    config: TrainConfig, bundle: ModelBundle, device: torch.device
) -> list[nn.Module]:
    """The bundle's modules training no longer needs on the GPU, given how the run is set up."""
    if device.type == "cpu" or config.sample_prompts:
        return []  # nothing to free on the CPU; sample images need every part on the GPU
    parts: list[nn.Module] = []
    if config.cache_latents or config.cache_latents_to_disk:
        parts.append(bundle.vae)
    if config.cache_text_encoder_outputs and config.network_train_unet_only:
        parts.extend(bundle.text_encoders)
    return parts


def relocate_shared(parts: list[nn.Module], live: nn.Module, move: Move) -> int:
    """Move `parts` with `move`, and the live tensors they share storage with to the same place.

    The bundle's tensors are the live ones or views of them (reshaped attention weights,
    open_clip's q/k/v slices); each view is rebuilt on the moved tensor at the same offset.
    """
    owners: dict[int, torch.Tensor] = {}
    for tensor in [*live.parameters(), *live.buffers()]:
        owners.setdefault(_storage(tensor), tensor)
    moved: dict[int, tuple[torch.Tensor, int]] = {}  # storage -> (new tensor, old offset)
    count = 0
    with torch.no_grad():
        for part in parts:
            for tensor in [*part.parameters(), *part.buffers()]:
                key = _storage(tensor)
                base = owners.get(key)
                if base is None or not base.is_contiguous():
                    continue
                if key not in moved:
                    old_offset = base.data.storage_offset()
                    base.data = move(base.data)
                    moved[key] = (base.data, old_offset)
                new, old_offset = moved[key]
                offset = new.storage_offset() + tensor.data.storage_offset() - old_offset
                tensor.data = new.as_strided(tensor.shape, tensor.stride(), offset)
                count += 1
    return count


def _storage(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def offload(config: TrainConfig, bundle: ModelBundle, live: nn.Module, device: torch.device) -> int:
    """Move what the run no longer needs to the CPU; returns how many tensors moved."""
    parts = parts_to_offload(config, bundle, device)
    if not parts:
        return 0
    moved = relocate_shared(parts, live, lambda t: t.to("cpu"))
    if device.type == "cuda":
        torch.cuda.empty_cache()
    log.info("LoRA trainer: moved %d cached-away tensors to RAM while training", moved)
    return moved
