"""Image decoding, resizing and tensor conversion with kohya's choices."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DatasetError

_EXIF_ORIENTATION = 0x0112
_ROTATED_ORIENTATIONS = {5, 6, 7, 8}  # these swap width and height
_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


def _bad_image(path: Path, error: BaseException) -> DatasetError:
    if isinstance(error, Image.DecompressionBombError):
        return DatasetError(
            f"image is too large to open safely ({error})",
            str(path),
            "Downscale it (a few megapixels is plenty for training)",
        )
    if isinstance(error, FileNotFoundError):
        return DatasetError(
            "image file is missing", str(path), "Check that it was not moved or deleted"
        )
    fix = "Re-save it as PNG or JPEG, or remove it from the dataset"
    if isinstance(error, UnidentifiedImageError):
        return DatasetError(
            "file is not an image Pillow can decode (wrong extension or corrupt)", str(path), fix
        )
    reason = str(error) or type(error).__name__
    if "truncated" in reason:
        fix = "The file is incomplete (interrupted download or copy?). " + fix
    return DatasetError(f"cannot read image: {reason}", str(path), fix)


def load_image_rgb(path: Path, at_least: tuple[int, int] | None = None) -> Image.Image:
    """Decode an image fully, apply its EXIF orientation, and return it as 8-bit RGB.

    With `at_least` (width, height), a JPEG much larger than that is decoded at a reduced
    scale that still covers it: a 50-megapixel photo then never sits in memory at full size.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            if at_least is not None:
                _draft_at_least(img, at_least)
            img.load()  # decode every byte now so a truncated file fails here
            img = _apply_exif_orientation(img)
            return _to_rgb(img)
    except Exception as e:  # Pillow's decoders raise many types for corrupt data
        raise _bad_image(path, e) from e


def _draft_at_least(img: Image.Image, size: tuple[int, int]) -> None:
    if img.format != "JPEG":
        return
    if img.getexif().get(_EXIF_ORIENTATION) in _ROTATED_ORIENTATIONS:
        size = (size[1], size[0])  # the stored image is sideways
    # only when a 2x reduction still covers the target; otherwise the full decode is as cheap
    if img.size[0] >= 2 * size[0] and img.size[1] >= 2 * size[1]:
        img.draft("RGB", size)  # Pillow picks the largest DCT scale that stays >= size


def verify_image(path: Path) -> None:
    """Decode an image once (JPEGs at 1/8 scale: every byte is still read), raising DatasetError if it is bad."""
    load_image_rgb(path, at_least=(1, 1))


def _apply_exif_orientation(img: Image.Image) -> Image.Image:
    # kohya ignores EXIF orientation, so a phone photo shot in portrait trains sideways;
    # every viewer shows it upright, so we do too.
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # unreadable EXIF: the pixels are fine, keep them as stored
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in _SIXTEEN_BIT_MODES:
        # Pillow's convert("RGB") clips 16-bit grey to 255 (near-white images); kohya
        # calls it anyway. Scale 0..65535 down to 0..255 instead.
        arr = np.asarray(img, dtype=np.float64) / 257.0
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
    if img.mode != "RGB":
        # kohya's convert("RGB"): alpha is dropped, not composited, so transparent pixels
        # keep whatever colour the file stores under them (as in kohya's training).
        img = img.convert("RGB")
    return img


def read_image_size(path: Path) -> tuple[int, int]:
    """(width, height) as load_image_rgb will return it, read from the header only."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            width, height = img.size
            orientation = img.getexif().get(_EXIF_ORIENTATION)
    except Exception as e:
        raise _bad_image(path, e) from e
    if orientation in _ROTATED_ORIENTATIONS:
        return height, width
    return width, height


def resize_center_crop(img: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to cover width x height keeping the aspect ratio, then crop the centre."""
    src_w, src_h = img.size
    # kohya's BucketManager.select_bucket: fit the side that is short relative to the target.
    if src_w / src_h > width / height:
        scale = height / src_h
    else:
        scale = width / src_w
    new_w = max(width, int(src_w * scale + 0.5))
    new_h = max(height, int(src_h * scale + 0.5))
    if (new_w, new_h) != (src_w, src_h):
        # kohya's resize_image: area averaging when shrinking (cv2 INTER_AREA; Pillow's
        # BOX is the same filter), Lanczos when enlarging.
        shrinking = src_w >= new_w and src_h >= new_h
        img = img.resize((new_w, new_h), Image.BOX if shrinking else Image.LANCZOS)
    # kohya's trim_and_resize_if_required centres with floor division.
    left = (new_w - width) // 2
    top = (new_h - height) // 2
    if (left, top, new_w, new_h) != (0, 0, width, height):
        img = img.crop((left, top, left + width, top + height))
    return img


def to_tensor(img: Image.Image) -> torch.Tensor:
    """float32 [3, H, W] in [-1, 1]: torchvision ToTensor then Normalize([0.5], [0.5]), as kohya."""
    if img.mode != "RGB":
        raise ValueError(f"to_tensor needs an RGB image, got mode {img.mode!r}")
    # numpy float32 arithmetic, the same operations torchvision does in the same order; done
    # in numpy because tiny torch ops on a busy machine spend more time in thread hand-offs
    arr = np.asarray(img, dtype=np.uint8).astype(np.float32) / np.float32(255)
    arr = (arr - np.float32(0.5)) / np.float32(0.5)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def fit_to_bucket(
    img: Image.Image,
    bucket: tuple[int, int],
    resized_size: tuple[int, int],
    crop_rng: random.Random | None = None,
) -> Image.Image:
    """kohya's trim_and_resize_if_required: resize to `resized_size`, then crop to the bucket.

    The crop is centred (floor division), or at a random offset drawn from `crop_rng` (random_crop).
    """
    width, height = bucket
    # never smaller than the bucket, whatever float rounding did to the resized size
    new_w, new_h = max(resized_size[0], width), max(resized_size[1], height)
    src_w, src_h = img.size
    if (new_w, new_h) != (src_w, src_h):
        # area averaging when shrinking both sides (cv2 INTER_AREA = Pillow BOX), else Lanczos
        shrinking = src_w >= new_w and src_h >= new_h
        img = img.resize((new_w, new_h), Image.BOX if shrinking else Image.LANCZOS)
    left = _trim_offset(new_w - width, crop_rng)
    top = _trim_offset(new_h - height, crop_rng)
    if (left, top, new_w, new_h) != (0, 0, width, height):
        img = img.crop((left, top, left + width, top + height))
    return img


def _trim_offset(excess: int, rng: random.Random | None) -> int:
    if excess <= 0:
        return 0
    return excess // 2 if rng is None else rng.randint(0, excess)


def flip_horizontal(img: Image.Image) -> Image.Image:
    """Mirror left-right (kohya's flip_aug)."""
    return ImageOps.mirror(img)


_HUE_SHIFT_LIMIT = 8  # kohya's limit, in OpenCV hue units (0..180 for a full turn)


def color_augment(img: Image.Image, rng: random.Random) -> Image.Image:
    """kohya's weak color_aug: a third of the time, a small hue shift or a small gamma change."""
    if rng.random() > 0.33:
        return img
    if rng.random() > 0.5:
        shift = rng.uniform(-_HUE_SHIFT_LIMIT, _HUE_SHIFT_LIMIT)
        hsv = np.array(img.convert("HSV"), dtype=np.int32)
        # Pillow's hue runs 0..255 for a full turn; OpenCV's 0..180
        hsv[..., 0] = (hsv[..., 0] + round(shift * 256 / 180)) % 256
        return Image.fromarray(hsv.astype(np.uint8), mode="HSV").convert("RGB")
    gamma = rng.uniform(0.95, 1.05)
    # kohya raises the 0..255 values themselves to the power (a slight brightness change)
    arr = np.clip(np.asarray(img, dtype=np.float64) ** gamma, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, mode="RGB")
