"""Text-encoder output cache: each distinct caption encoded once, before training, when the encoder is frozen.

The encoding itself is the training code's (an `encode` function passed in), so a cached
step sees exactly what an uncached step computes. SDXL's conditioning also depends on
the image sizes, so there a cache entry is per (caption, size extras).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from ..errors import ConfigError
from .image_dataset import ImageCaptionDataset

SizeExtras = dict[str, tuple[int, int]]
# (captions, per-sample extras of a batch of one) -> the conditioning of that batch
ConditioningEncoder = Callable[[list[str], list[SizeExtras]], Any]
Progress = Callable[[int, int], None]


class TextEncoderCache:
    """Conditioning per caption (and per size extras when they matter), computed up front."""

    def __init__(self, uses_size_extras: bool) -> None:
        self.uses_size_extras = uses_size_extras
        self._entries: dict[tuple, Any] = {}

    def key(self, caption: str, extras: SizeExtras) -> tuple:
        if not self.uses_size_extras:
            return (caption,)
        return (caption, tuple(sorted(extras.items())))

    def add(self, caption: str, extras: SizeExtras, conditioning: Any) -> None:
        self._entries[self.key(caption, extras)] = conditioning

    def __contains__(self, key: tuple) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, caption: str, extras: SizeExtras) -> Any:
        """The cached conditioning (batch of one) for a sample's caption and sizes."""
        try:
            return self._entries[self.key(caption, extras)]
        except KeyError:
            raise KeyError(
                f"caption {caption!r} was not cached: captions must not change during training"
            ) from None


def cache_text_encoder_outputs(
    datasets: list[ImageCaptionDataset],
    encode: ConditioningEncoder,
    uses_size_extras: bool,
    progress: Progress | None = None,
) -> TextEncoderCache:
    """Encode every caption the datasets can produce (the empty one too when captions drop) and attach the cache."""
    varying = [name for d in datasets for name in d.varying_caption_subsets()]
    if varying:
        raise ConfigError(
            "cache_text_encoder_outputs needs captions that never change, but "
            f"{', '.join(varying)} shuffle, drop tags, warm up or use wildcards",
            fix="turn those caption options off, or turn off cache_text_encoder_outputs",
        )
    cache = TextEncoderCache(uses_size_extras)
    todo: dict[tuple, tuple[str, SizeExtras]] = {}
    for dataset in datasets:
        for caption, extras_items in sorted(dataset.caption_variants()):
            extras = dict(extras_items)
            todo.setdefault(cache.key(caption, extras), (caption, extras))
    for i, (caption, extras) in enumerate(todo.values()):
        cache.add(caption, extras, _detached(encode([caption], [extras])))
        if progress:
            progress(i + 1, len(todo))
    for dataset in datasets:
        dataset.text_cache = cache
    return cache


def _detached(conditioning: Any) -> Any:
    """Tensors kept on the CPU, without autograd history (they are reused at every step)."""

    def convert(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().cpu()
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    if dataclasses.is_dataclass(conditioning):
        return type(conditioning)(
            **{
                f.name: convert(getattr(conditioning, f.name))
                for f in dataclasses.fields(conditioning)
            }
        )
    return convert(conditioning)
