"""Open every image once before training: its size for the buckets, and whether it decodes at all."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import DatasetError
from .images import read_image_size, verify_image

logger = logging.getLogger(__name__)

_MAX_LISTED = 20  # bad images named in one error message
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


@dataclass
class ImageCheck:
    """Sizes (width, height, EXIF-upright) of the good images; (path, reason) of the bad ones."""

    sizes: dict[Path, tuple[int, int]] = field(default_factory=dict)
    bad: list[tuple[Path, str]] = field(default_factory=list)
    with_alpha: list[Path] = field(default_factory=list)


def check_images(paths: list[Path], decode: bool = True) -> ImageCheck:
    """Read each image's size; with `decode`, decode it fully too so a corrupt file shows up now."""
    result = ImageCheck()
    for path in paths:
        if path in result.sizes:
            continue
        try:
            size = read_image_size(path)
            if decode:
                verify_image(path)
        except DatasetError as e:
            result.bad.append((path, e.what))
            continue
        if size[0] < 1 or size[1] < 1:
            result.bad.append((path, f"image has no pixels ({size[0]}x{size[1]})"))
            continue
        result.sizes[path] = size
        if decode and _has_alpha(path):
            result.with_alpha.append(path)
    if result.with_alpha:
        logger.warning(
            "%d images have transparency; like kohya, the alpha channel is dropped, so "
            "transparent areas train as whatever colour is stored under them (first: %s)",
            len(result.with_alpha),
            result.with_alpha[0],
        )
    return result


def bad_images_error(bad: list[tuple[Path, str]], total: int, where: str) -> DatasetError:
    """One error naming every unreadable image (the first 20), with both ways out."""
    shown = [f"{reason}: {path}" for path, reason in bad[:_MAX_LISTED]]
    more = f"; and {len(bad) - len(shown)} more" if len(bad) > len(shown) else ""
    return DatasetError(
        f"{len(bad)} of {total} images cannot be read: " + "; ".join(shown) + more,
        where,
        "Re-save these files as PNG or JPEG or remove them, or pass --skip_bad_images to train without them",
    )


def _has_alpha(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            return img.mode in _ALPHA_MODES or "transparency" in img.info
    except Exception:  # already decoded once; a race with the file changing is not worth failing on
        return False
