"""Latent cache: each image's VAE posterior (mean, std), in memory or in an .npz next to the image.

kohya caches one latent drawn from the posterior; we keep the posterior itself and draw
from it at every step with the same random numbers the VAE path uses, so cached and
uncached training give the same loss. A disk entry is named after the image and its
bucket resolution (`photo.png.512x768.latent.npz`), and is used again only when the
image file, the bucket, the VAE and the format are all unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..atomic_file import write_atomic
from ..errors import DatasetError
from .image_dataset import ImageCaptionDataset, TrainItem

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the pixels fed to the VAE change (resize, crop, colour handling)
CACHE_SUFFIX = ".latent.npz"

# pixels [B, 3, H, W] in [-1, 1] -> (mean, std) of the latent posterior, [B, C, h, w]
PosteriorEncoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Progress = Callable[[int, int], None]


def vae_posterior(vae: torch.nn.Module) -> PosteriorEncoder:
    """A diffusers AutoencoderKL as a PosteriorEncoder (the VAE's dtype and device, as encode_latents uses)."""

    @torch.no_grad()
    def encode(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist
        return dist.mean.cpu(), dist.std.cpu()

    return encode


def vae_fingerprint(vae: torch.nn.Module) -> str:
    """A short hash of the VAE's layout, dtype and some weights: latents of another VAE are never reused."""
    digest = hashlib.sha256()
    params = list(vae.state_dict().items())
    for name, tensor in params:
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
    for _, tensor in params[:2] + params[-2:]:
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_path(item: TrainItem) -> Path:
    """Where an image's latents live on disk: beside it, keyed by its bucket resolution."""
    w, h = item.bucket.reso
    return item.image_path.with_name(f"{item.image_path.name}.{w}x{h}{CACHE_SUFFIX}")


@dataclass
class CacheReport:
    encoded: int = 0  # images run through the VAE
    reused: int = 0  # images whose disk entry was still valid
    written: int = 0  # disk entries written
    warnings: list[str] = field(default_factory=list)


class LatentCache:
    """Posteriors per image of one dataset: in memory, or read from disk at each use."""

    def __init__(self) -> None:
        self._memory: dict[tuple[int, bool], tuple[torch.Tensor, torch.Tensor]] = {}
        self._files: dict[int, Path] = {}

    def keep(self, item_index: int, flipped: bool, mean: torch.Tensor, std: torch.Tensor) -> None:
        self._memory[(item_index, flipped)] = (mean, std)

    def use_file(self, item_index: int, path: Path) -> None:
        self._files[item_index] = path

    def moments(self, item_index: int, flipped: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of an image's latent posterior, flipped or not."""
        found = self._memory.get((item_index, flipped))
        if found is not None:
            return found
        path = self._files.get(item_index)
        if path is None:
            raise KeyError(f"no cached latent for item {item_index} (flipped={flipped})")
        prefix = "flipped_" if flipped else ""
        try:
            with np.load(path) as data:
                mean, std = data[prefix + "mean"], data[prefix + "std"]
        except (OSError, KeyError, ValueError) as e:
            raise DatasetError(
                f"cannot read cached latents: {e}",
                str(path),
                "Delete the file; it is made again on the next run",
            ) from e
        return torch.from_numpy(mean), torch.from_numpy(std)


def cache_latents(
    dataset: ImageCaptionDataset,
    encode: PosteriorEncoder,
    fingerprint: str,
    *,
    to_disk: bool = False,
    batch_size: int = 1,
    progress: Progress | None = None,
) -> CacheReport:
    """Encode every image of `dataset` once (flipped too where flip_aug is on) and attach the cache."""
    if not dataset.is_latent_cacheable:
        raise DatasetError(
            "latents cannot be cached with color_aug or random_crop (a cached latent cannot change)",
            fix="turn off cache_latents, or color_aug and random_crop",
        )
    cache, report = LatentCache(), CacheReport()
    todo: list[int] = []
    for k, item in enumerate(dataset.items):
        if to_disk and _entry_is_valid(cache_path(item), item, fingerprint, dataset.flip_used(k)):
            cache.use_file(k, cache_path(item))
            report.reused += 1
        else:
            todo.append(k)
    done = 0
    for chunk in _chunks(dataset, todo, batch_size):
        _encode_chunk(dataset, chunk, encode, fingerprint, cache, report, to_disk)
        done += len(chunk)
        if progress:
            progress(done, len(todo))
    dataset.latents = cache
    return report


def _chunks(dataset: ImageCaptionDataset, todo: list[int], size: int) -> list[list[int]]:
    # one VAE batch holds one bucket resolution and one flip setting (kohya sorts by area)
    groups: dict[tuple, list[int]] = {}
    for k in todo:
        reso = dataset.items[k].bucket.reso
        groups.setdefault((reso[0] * reso[1], reso, dataset.flip_used(k)), []).append(k)
    return [
        members[i : i + size]
        for _, members in sorted(groups.items())
        for i in range(0, len(members), size)
    ]


def _encode_chunk(
    dataset: ImageCaptionDataset,
    chunk: list[int],
    encode: PosteriorEncoder,
    fingerprint: str,
    cache: LatentCache,
    report: CacheReport,
    to_disk: bool,
) -> None:
    pixels = torch.stack([dataset.load_pixels(k) for k in chunk])
    results = {False: encode(pixels)}
    if dataset.flip_used(chunk[0]):
        results[True] = encode(torch.flip(pixels, dims=[3]))  # = flipping the image first
    report.encoded += len(chunk)
    for j, k in enumerate(chunk):
        item = dataset.items[k]
        moments = {flipped: (mean[j], std[j]) for flipped, (mean, std) in results.items()}
        for mean, _ in moments.values():
            if torch.isnan(mean).any():
                raise DatasetError(
                    "the VAE gave NaN latents for this image",
                    str(item.image_path),
                    "train the VAE part in float32 (mixed_precision no) or check the image",
                )
        if to_disk and _write_entry(cache_path(item), item, fingerprint, moments, report):
            cache.use_file(k, cache_path(item))
            report.written += 1
            continue
        for flipped, (mean, std) in moments.items():
            cache.keep(k, flipped, mean.clone(), std.clone())


def _file_facts(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"file_size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entry_meta(item: TrainItem, fingerprint: str) -> dict:
    return {
        "format": CACHE_FORMAT,
        "vae": fingerprint,
        "bucket": list(item.bucket.reso),
        "resized": list(item.bucket.resized_size),
        "image": list(item.size),
    }


def _entry_is_valid(path: Path, item: TrainItem, fingerprint: str, flip: bool) -> bool:
    if not path.is_file():
        return False
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            keys = set(data.files)
    except Exception:  # unreadable or half-written by another tool: encode again
        return False
    source = {k: meta.pop(k, None) for k in ("file_size", "mtime_ns", "sha256")}
    if meta != _entry_meta(item, fingerprint):
        return False
    if flip and not {"flipped_mean", "flipped_std"} <= keys:
        return False
    facts = _file_facts(item.image_path)
    if facts["file_size"] != source["file_size"]:
        return False
    # same size and time: unchanged; a new time alone (a copy, a touch) is checked by content
    return facts["mtime_ns"] == source["mtime_ns"] or _sha256(item.image_path) == source["sha256"]


def _write_entry(
    path: Path,
    item: TrainItem,
    fingerprint: str,
    moments: dict[bool, tuple[torch.Tensor, torch.Tensor]],
    report: CacheReport,
) -> bool:
    meta = {
        **_entry_meta(item, fingerprint),
        **_file_facts(item.image_path),
        "sha256": _sha256(item.image_path),
    }
    arrays = {"meta": np.array(json.dumps(meta))}
    for flipped, (mean, std) in moments.items():
        prefix = "flipped_" if flipped else ""
        arrays[prefix + "mean"] = mean.float().numpy()
        arrays[prefix + "std"] = std.float().numpy()
    try:
        _atomic_savez(path, arrays)
    except OSError as e:
        if not report.warnings:  # one line is enough: the folder is read-only or full
            report.warnings.append(
                f"cannot write latent cache files next to the images ({e.strerror or e}: {path}); "
                "keeping latents in memory for this run"
            )
        return False
    return True


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # written beside the target and renamed over it: a crash never leaves a half file
    write_atomic(path, lambda f: np.savez(f, **arrays))
