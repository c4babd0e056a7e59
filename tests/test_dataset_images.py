"""Image decoding (EXIF, modes, corrupt files), centre-crop resizing and tensor conversion."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lora_trainer.dataset.images import (
    color_augment,
    fit_to_bucket,
    flip_horizontal,
    load_image_rgb,
    read_image_size,
    resize_center_crop,
    to_tensor,
    verify_image,
)
from lora_trainer.errors import DatasetError

RED, BLUE, GREEN = (220, 20, 20), (20, 20, 220), (20, 200, 20)


def _two_colour(width: int, height: int) -> Image.Image:
    """Left half red, right half blue."""
    img = Image.new("RGB", (width, height), RED)
    img.paste(BLUE, (width // 2, 0, width, height))
    return img


def _close(pixel, colour, tol=40) -> bool:
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel, colour))


def test_exif_rotated_jpeg_comes_out_upright(tmp_path):
    path = tmp_path / "phone.jpg"
    img = _two_colour(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate 90 degrees clockwise
    img.save(path, "JPEG", quality=95, exif=exif.tobytes())
    out = load_image_rgb(path)
    assert out.size == (20, 40)
    assert read_image_size(path) == (20, 40)
    # clockwise rotation moves the left (red) half to the top
    assert _close(out.getpixel((10, 5)), RED)
    assert _close(out.getpixel((10, 35)), BLUE)


def test_plain_image_size_and_content(tmp_path):
    path = tmp_path / "a.png"
    _two_colour(30, 10).save(path)
    out = load_image_rgb(path)
    assert out.mode == "RGB" and out.size == (30, 10) == read_image_size(path)
    assert out.getpixel((0, 0)) == RED and out.getpixel((29, 9)) == BLUE


@pytest.mark.parametrize(
    ("mode", "fmt", "ext"),
    [
        ("RGBA", "PNG", "png"),
        ("LA", "PNG", "png"),
        ("P", "PNG", "png"),
        ("L", "PNG", "png"),
        ("1", "BMP", "bmp"),
        ("CMYK", "JPEG", "jpg"),
        ("RGBA", "WEBP", "webp"),
    ],
)
def test_modes_become_rgb(tmp_path, mode, fmt, ext):
    path = tmp_path / f"img.{ext}"
    Image.new("RGB", (16, 12), (200, 200, 200)).convert(mode).save(path, fmt)
    out = load_image_rgb(path)
    assert out.mode == "RGB" and out.size == (16, 12)


def test_alpha_is_dropped_like_kohya(tmp_path):
    path = tmp_path / "cutout.png"
    Image.new("RGBA", (4, 4), (10, 120, 30, 0)).save(path)
    assert load_image_rgb(path).getpixel((0, 0)) == (10, 120, 30)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    arr = np.array([[0, 32768, 65535, 2570]], dtype=np.uint16)
    Image.fromarray(arr).save(path)
    out = load_image_rgb(path)
    assert out.mode == "RGB"
    assert [out.getpixel((x, 0))[0] for x in range(4)] == [0, 128, 255, 10]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_raises_with_path(tmp_path, fmt):
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(buf, fmt)
    data = buf.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError) as e:
        load_image_rgb(path)
    assert str(path) in str(e.value) and "truncated" in str(e.value)


def test_random_bytes_named_jpg_raise_with_path(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(DatasetError) as e:
        load_image_rgb(path)
    assert str(path) in str(e.value) and "not an image" in str(e.value)
    with pytest.raises(DatasetError):
        read_image_size(path)


def test_missing_file_raises_with_path(tmp_path):
    path = tmp_path / "gone.png"
    with pytest.raises(DatasetError) as e:
        load_image_rgb(path)
    assert str(path) in str(e.value) and "missing" in str(e.value)


def test_decompression_bomb_protection_kept(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (40, 40)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1600 px > 2 x limit: refused
    with pytest.raises(DatasetError) as e:
        load_image_rgb(path)
    assert str(path) in str(e.value) and "too large" in str(e.value)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ((300, 100), (64, 64)),
        ((100, 300), (64, 64)),
        ((10, 20), (64, 64)),
        ((200, 200), (64, 32)),
        ((64, 64), (64, 64)),
        ((513, 767), (512, 768)),
        ((1000, 10), (32, 48)),
    ],
)
def test_resize_center_crop_size(src, dst):
    out = resize_center_crop(Image.new("RGB", src, RED), *dst)
    assert out.size == dst
    assert _close(out.getpixel((dst[0] // 2, dst[1] // 2)), RED, tol=2)


def test_resize_center_crop_keeps_the_centre():
    img = Image.new("RGB", (300, 100), RED)
    img.paste(GREEN, (100, 0, 200, 100))  # the middle square
    out = np.asarray(resize_center_crop(img, 64, 64)).astype(int)
    inner = out[:, 2:-2]  # edge columns may blend with the cropped-off red
    assert np.abs(inner - np.array(GREEN)).max() <= 2


def test_resize_center_crop_wide_target_crops_top_and_bottom():
    img = Image.new("RGB", (100, 100), BLUE)
    img.paste(GREEN, (0, 25, 100, 75))  # the middle band
    out = np.asarray(resize_center_crop(img, 80, 40)).astype(int)
    assert out.shape == (40, 80, 3)
    assert np.abs(out[1:-1] - np.array(GREEN)).max() <= 2


def test_resize_same_size_is_identity():
    img = _two_colour(64, 48)
    assert np.array_equal(np.asarray(resize_center_crop(img, 64, 48)), np.asarray(img))


def test_to_tensor_range_shape_and_values():
    img = Image.new("RGB", (5, 3), (0, 255, 51))
    t = to_tensor(img)
    assert t.dtype == torch.float32 and t.shape == (3, 3, 5)
    assert torch.all(t[0] == -1.0) and torch.all(t[1] == 1.0)
    assert torch.allclose(t[2], torch.full((3, 5), 51 / 255 * 2 - 1))
    noise = to_tensor(Image.effect_noise((32, 16), 100).convert("RGB"))
    assert noise.shape == (3, 16, 32) and noise.min() >= -1 and noise.max() <= 1


def test_to_tensor_channel_order():
    img = Image.new("RGB", (2, 2), (255, 0, 0))
    img.putpixel((1, 0), (0, 0, 255))
    t = to_tensor(img)
    assert t[0, 0, 0] == 1 and t[2, 0, 0] == -1  # red at (x=0, y=0)
    assert t[2, 0, 1] == 1 and t[0, 0, 1] == -1  # blue at (x=1, y=0)


def test_to_tensor_rejects_non_rgb():
    with pytest.raises(ValueError):
        to_tensor(Image.new("L", (2, 2)))


def test_loader_output_feeds_the_pipeline(tmp_path: Path):
    path = tmp_path / "p.webp"
    _two_colour(90, 60).save(path)
    t = to_tensor(resize_center_crop(load_image_rgb(path), 32, 32))
    assert t.shape == (3, 32, 32)


def test_fit_to_bucket_resizes_then_crops_the_centre_or_at_random():
    img = _two_colour(200, 100)
    out = fit_to_bucket(img, (64, 64), (128, 64))
    assert out.size == (64, 64)
    # centred: the red/blue edge at x=64 of the 128 px resize lands in the middle
    assert _close(out.getpixel((28, 32)), RED) and _close(out.getpixel((36, 32)), BLUE)
    offsets = set()
    for seed in range(30):
        crop = fit_to_bucket(img, (64, 64), (128, 64), random.Random(seed))
        row = [crop.getpixel((x, 32)) for x in range(64)]
        offsets.add(sum(_close(p, RED) for p in row))
    assert len(offsets) > 5  # random_crop moves the window


def test_flip_and_colour_augmentation():
    img = _two_colour(20, 10)
    assert _close(flip_horizontal(img).getpixel((0, 0)), BLUE)
    grey = Image.new("RGB", (8, 8), (120, 60, 200))
    changed = sum(color_augment(grey, random.Random(s)).getpixel((0, 0)) != (120, 60, 200)
                  for s in range(300))  # fmt: skip
    assert 60 < changed < 140  # kohya: about a third of the time
    for s in range(50):
        pixel = color_augment(grey, random.Random(s)).getpixel((0, 0))
        assert all(abs(a - b) < 60 for a, b in zip(pixel, (120, 60, 200)))  # weak


def test_large_jpeg_draft_keeps_orientation(tmp_path):
    path = tmp_path / "big.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    _two_colour(800, 400).save(path, "JPEG", quality=95, exif=exif.tobytes())
    out = load_image_rgb(path, at_least=(50, 100))
    assert out.size == (50, 100)  # decoded at 1/8, still covering 50x100, and turned upright
    assert _close(out.getpixel((25, 10)), RED) and _close(out.getpixel((25, 90)), BLUE)
    verify_image(path)
