"""Images per second through the dataset pipeline on the CPU: reading and bucketing, loading, latent caching."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from ..errors import DatasetError
from .buckets import BucketOptions
from .image_dataset import ImageCaptionDataset
from .latent_cache import cache_latents, vae_fingerprint, vae_posterior
from .spec import AugmentOptions, CaptionOptions, DatasetSpec, SubsetSpec

MARKER = ".lora_trainer_dataset_bench"
RESOLUTION = (128, 128)
_SIZES = [(160, 160), (224, 160), (160, 224), (256, 144), (144, 256), (200, 150), (320, 240)]
# a small AutoencoderKL (8x down, 4 latent channels like SD's) so the VAE does not dominate
_BENCH_VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [16, 16, 32, 32], "norm_num_groups": 16, "sample_size": 128,
}  # fmt: skip


def bench_dataset_pipeline(workdir: Path, images: int = 200) -> dict[str, float]:
    """Generate `images` images in `workdir` and time each stage; rates are images per second."""
    if images < 1:
        raise ValueError("images must be at least 1")
    folder = _make_images(Path(workdir), images)
    captions, augment = CaptionOptions(caption_extension=".txt"), AugmentOptions(flip_aug=True)
    spec = DatasetSpec(
        [SubsetSpec(folder, 1, "bench", captions=captions, augment=augment)],
        resolution=RESOLUTION,
        buckets=BucketOptions(enable=True, min_reso=64, max_reso=256, reso_steps=64),
    )
    result: dict[str, float] = {"images": float(images)}
    started = time.perf_counter()
    dataset = ImageCaptionDataset(spec, seed=0)
    _rate(result, "scan_bucket", images, time.perf_counter() - started)
    result["buckets"] = float(len(dataset.buckets))

    started = time.perf_counter()
    for index in range(len(dataset)):
        dataset[index]
    _rate(result, "load", len(dataset), time.perf_counter() - started)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        from diffusers import AutoencoderKL

        vae = AutoencoderKL(**_BENCH_VAE).eval()
    encode, fingerprint = vae_posterior(vae), vae_fingerprint(vae)
    for stage in ("cache_encode", "cache_reuse"):  # the second run finds the .npz files
        started = time.perf_counter()
        report = cache_latents(dataset, encode, fingerprint, to_disk=True, batch_size=8)
        _rate(result, stage, images, time.perf_counter() - started)
        result[f"{stage}_vae_images"] = float(report.encoded)
    result["torch_threads"] = float(torch.get_num_threads())

    started = time.perf_counter()
    for index in range(len(dataset)):
        dataset[index]
    _rate(result, "load_cached", len(dataset), time.perf_counter() - started)
    return result


def _rate(result: dict[str, float], name: str, count: int, seconds: float) -> None:
    result[f"{name}_s"] = round(seconds, 4)
    result[f"{name}_images_per_s"] = round(count / max(seconds, 1e-9), 1)


def _make_images(workdir: Path, count: int) -> Path:
    """`workdir/img/1_bench/` with `count` PNGs of several aspect ratios and .txt captions."""
    if workdir.exists() and any(workdir.iterdir()) and not (workdir / MARKER).exists():
        raise DatasetError(
            "the benchmark folder is not empty and was not made by the benchmark",
            str(workdir),
            "give an empty or new folder",
        )
    if workdir.exists():
        shutil.rmtree(workdir)
    folder = workdir / "img" / "1_bench"
    folder.mkdir(parents=True)
    (workdir / MARKER).write_text("made by the dataset benchmark\n", encoding="utf-8")
    rng = random.Random(0)
    for i in range(count):
        size = _SIZES[i % len(_SIZES)]
        img = Image.new("RGB", size, tuple(rng.randint(0, 255) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        for _ in range(4):
            x, y = rng.randint(0, size[0] - 20), rng.randint(0, size[1] - 20)
            draw.ellipse((x, y, x + 20, y + 20), fill=tuple(rng.randint(0, 255) for _ in range(3)))
        img.save(folder / f"{i:04d}.png")
        (folder / f"{i:04d}.txt").write_text(f"bench, shape {i % 7}\n", encoding="utf-8")
    return folder
