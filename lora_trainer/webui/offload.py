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
from ..train.events import CachesReadyEvent

log = logging.getLogger(__name__)
Move = Callable[[torch.Tensor], torch.Tensor]


def parts_to_offload(
    config: TrainConfig,
    bundle: ModelBundle,
    device: torch.device,
    caches: CachesReadyEvent | None = None,
) -> list[nn.Module]:
    """The bundle's modules training no longer needs on the GPU, given the run's options and,
    when known, the caches the engine reports filled."""
    if device.type == "cpu" or config.sample_prompts:
        return []  # nothing to free on the CPU; sample images need every part on the GPU
    latents = config.cache_latents or config.cache_latents_to_disk
    texts = config.cache_text_encoder_outputs and config.network_train_unet_only
    if caches is not None:
        latents = latents and caches.latents is not None
        texts = texts and caches.text_encoder_outputs is not None
    parts: list[nn.Module] = [bundle.vae] if latents else []
    return parts + (list(bundle.text_encoders) if texts else [])


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


def to_ram(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to("cpu")


class CachedPartsOffload:
    """Called with the engine's CachesReadyEvent: moves the cached-away parts to RAM;
    `put_back()` returns the WebUI's tensors to their devices when the run ends."""

    def __init__(
        self, config: TrainConfig, bundle: ModelBundle, live: nn.Module, device: torch.device
    ) -> None:
        self.config, self.bundle, self.live, self.device = config, bundle, live, device
        self.placed: list[tuple[torch.Tensor, torch.device, torch.dtype]] = []
        self.moved = 0

    def __call__(self, caches: CachesReadyEvent) -> None:
        parts = parts_to_offload(self.config, self.bundle, self.device, caches)
        if not parts:
            return
        self.placed = [
            (t, t.device, t.dtype) for t in [*self.live.parameters(), *self.live.buffers()]
        ]
        self.moved = relocate_shared(parts, self.live, to_ram)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        log.info("LoRA trainer: moved %d cached-away tensors to RAM while training", self.moved)

    def put_back(self) -> int:
        """Move the WebUI's tensors back where they were; returns how many moved."""
        count = 0
        with torch.no_grad():
            for tensor, device, dtype in self.placed:
                if tensor.device != device or tensor.dtype != dtype:
                    tensor.data = tensor.data.to(device, dtype)
                    count += 1
        self.placed = []
        return count
