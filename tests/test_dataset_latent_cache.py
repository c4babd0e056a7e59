"""Latent cache: memory and disk, reuse and invalidation, same loss as without it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from dataset_helpers import concept, group, one_torch_thread  # noqa: F401
from PIL import Image

from lora_trainer.config import BUILTIN_TINY_MODEL, config_from_dict
from lora_trainer.dataset import latent_cache
from lora_trainer.dataset.latent_cache import (
    CACHE_SUFFIX,
    cache_latents,
    cache_path,
    vae_fingerprint,
    vae_posterior,
)
from lora_trainer.errors import ConfigError, DatasetError
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.train.batch import make_batch
from lora_trainer.train.job import run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bundle():
    return build_tiny_sd1()


class CountingEncoder:
    """The tiny VAE's posterior, counting the images it encodes."""

    def __init__(self, vae):
        self.encode = vae_posterior(vae)
        self.images = 0

    def __call__(self, pixels):
        self.images += len(pixels)
        return self.encode(pixels)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    concept(tmp_path / "img", "2_x", 3, captions=["x, a", "x, b", "x, c"])
    concept(tmp_path / "img", "1_y", 2, size=(96, 64))
    return tmp_path / "img"


def _data(root: Path, **options):
    return group(root, **options)


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(CACHE_SUFFIX)
    }


def test_disk_cache_is_read_on_the_second_run(root, bundle):
    d = _data(root).datasets[0]
    before = _snapshot(root)
    encoder, fp = CountingEncoder(bundle.vae), vae_fingerprint(bundle.vae)
    first = cache_latents(d, encoder, fp, to_disk=True, batch_size=2)
    assert (encoder.images, first.written, first.reused) == (5, 5, 0)
    files = sorted(root.rglob("*" + CACHE_SUFFIX))
    assert [f.name for f in files][:1] == ["00.png.64x64.latent.npz"] and len(files) == 5
    assert not list(root.rglob("*.tmp"))  # atomic writes leave nothing behind
    again = _data(root).datasets[0]
    second = cache_latents(again, encoder, fp, to_disk=True)
    assert encoder.images == 5 and (second.encoded, second.reused) == (0, 5)
    mean, std = again.latents.moments(0, False)
    assert mean.shape == (4, 8, 8) and bool((std > 0).all())
    assert _snapshot(root) == before  # images and captions untouched


def test_an_edited_image_invalidates_only_its_entry(root, bundle):
    d = _data(root).datasets[0]
    encoder, fp = CountingEncoder(bundle.vae), vae_fingerprint(bundle.vae)
    cache_latents(d, encoder, fp, to_disk=True)
    path = root / "2_x" / "00.png"
    k = next(k for k, item in enumerate(d.items) if item.image_path == path)
    old = d.latents.moments(k, False)[0]
    Image.new("RGB", (64, 64), (255, 255, 255)).save(path)
    edited = _data(root).datasets[0]
    report = cache_latents(edited, encoder, fp, to_disk=True)
    assert (report.encoded, report.reused) == (1, 4)
    assert not torch.equal(edited.latents.moments(k, False)[0], old)


def test_a_touched_but_unchanged_image_is_reused(root, bundle):
    d = _data(root).datasets[0]
    encoder, fp = CountingEncoder(bundle.vae), vae_fingerprint(bundle.vae)
    cache_latents(d, encoder, fp, to_disk=True)
    path = root / "2_x" / "01.png"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    report = cache_latents(_data(root).datasets[0], encoder, fp, to_disk=True)
    assert (report.encoded, report.reused) == (0, 5)


def test_a_new_bucket_or_vae_or_flip_never_reuses_a_stale_entry(root, bundle):
    encoder, fp = CountingEncoder(bundle.vae), vae_fingerprint(bundle.vae)
    cache_latents(_data(root).datasets[0], encoder, fp, to_disk=True)
    wider = _data(root, resolution="128").datasets[0]  # new bucket: new files
    assert cache_path(wider.items[0]).name == "00.png.128x128.latent.npz"
    assert cache_latents(wider, encoder, fp, to_disk=True).encoded == 5
    other = build_tiny_sd1(seed=1).vae
    assert vae_fingerprint(other) != fp
    assert (
        cache_latents(
            _data(root).datasets[0], encoder, vae_fingerprint(other), to_disk=True
        ).encoded
        == 5
    )
    flipped = _data(root, flip_aug=True).datasets[0]  # entries without flipped latents
    report = cache_latents(flipped, encoder, vae_fingerprint(other), to_disk=True)
    assert report.encoded == 5
    m0, _ = flipped.latents.moments(0, False)
    m1, _ = flipped.latents.moments(0, True)
    assert not torch.equal(m0, m1)


def test_unwritable_folder_keeps_latents_in_memory(root, bundle, monkeypatch):
    def refuse(path, arrays):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(latent_cache, "_atomic_savez", refuse)
    d = _data(root).datasets[0]
    report = cache_latents(d, vae_posterior(bundle.vae), "fp", to_disk=True)
    assert report.written == 0 and len(report.warnings) == 1 and "in memory" in report.warnings[0]
    assert d.latents.moments(4, False)[0].shape == (4, 8, 8)
    assert not list(root.rglob("*" + CACHE_SUFFIX))


def test_color_aug_and_random_crop_are_refused_like_kohya(root, bundle):
    with pytest.raises(ConfigError, match="color_aug or random_crop"):
        config_from_dict({"cache_latents": True, "color_aug": True})
    with pytest.raises(ConfigError, match="color_aug or random_crop"):
        config_from_dict({"cache_latents_to_disk": True, "random_crop": True})
    d = _data(root, random_crop=True).datasets[0]
    with pytest.raises(DatasetError, match="random_crop"):
        cache_latents(d, vae_posterior(bundle.vae), "fp")


def test_cached_moments_give_the_same_latents_as_the_vae(root, bundle):
    d = _data(root, flip_aug=True).datasets[0]
    samples = [d[i] for i in range(len(d))]
    assert {s["flipped"] for s in samples} == {False, True}
    cache_latents(d, vae_posterior(bundle.vae), "fp", batch_size=3)
    cached = [d[i] for i in range(len(d))]
    assert all("pixel_values" not in s and "latent_mean" in s for s in cached)
    same_size = [i for i in range(len(d)) if d.items[d.item_for_index(i)].size == (64, 64)][:4]
    cpu = torch.device("cpu")
    a = make_batch([samples[i] for i in same_size], bundle, torch.Generator().manual_seed(9), cpu)
    b = make_batch([cached[i] for i in same_size], bundle, torch.Generator().manual_seed(9), cpu)
    torch.testing.assert_close(a.latents, b.latents, rtol=1e-5, atol=1e-6)
    assert a.captions == b.captions and torch.equal(
        a.extra["crop_top_left"], b.extra["crop_top_left"]
    )


def _train(tmp_path: Path, root: Path, name: str, **options):
    values = {
        "pretrained_model_name_or_path": BUILTIN_TINY_MODEL, "train_data_dir": str(root),
        "output_dir": str(tmp_path / "out"), "output_name": name, "caption_extension": ".txt",
        "resolution": "64", "max_train_steps": 3, "seed": 4, "device": "cpu",
        "train_batch_size": 2, "flip_aug": True, "enable_bucket": True,
        "min_bucket_reso": 64, "max_bucket_reso": 128, "network_train_unet_only": True,
    }  # fmt: skip
    values.update(options)
    return run_training(config_from_dict(values))


def test_cached_and_uncached_training_give_the_same_loss(tmp_path, root):
    plain = _train(tmp_path, root, "plain")
    memory = _train(tmp_path, root, "memory", cache_latents=True, vae_batch_size=3)
    disk = _train(tmp_path, root, "disk", cache_latents_to_disk=True)
    assert len(list(root.rglob("*" + CACHE_SUFFIX))) == 5
    assert plain.losses == pytest.approx(memory.losses, rel=1e-5)
    assert plain.losses == pytest.approx(disk.losses, rel=1e-5)
