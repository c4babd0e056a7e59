"""A torch Dataset over a scanned kohya folder: one entry per image per repeat."""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ..errors import DatasetError
from . import captions as captions_mod
from .folders import DatasetScan
from .images import load_image_rgb, resize_center_crop, to_tensor

logger = logging.getLogger(__name__)

_MAX_LISTED = 20  # bad images named in one error message


@dataclass
class TrainItem:
    """One image and the caption it trains with."""

    image_path: Path
    caption: str
    subset_name: str


class ImageCaptionDataset(torch.utils.data.Dataset):
    """Images at a fixed (width, height) with their captions; repeats expand the length."""

    def __init__(
        self, scan: DatasetScan, resolution: tuple[int, int], caption_extension: str
    ) -> None:
        self.scan = scan
        self.width, self.height = resolution
        self.caption_extension = caption_extension
        self.items: list[TrainItem] = []
        self.missing_captions: list[Path] = []
        # Per subset: index of its first item, and where its repeated range starts.
        self._item_starts: list[int] = []
        self._index_starts: list[int] = []
        self._counts: list[int] = []
        index_start = 0
        for subset in scan.subsets:
            self._item_starts.append(len(self.items))
            self._index_starts.append(index_start)
            self._counts.append(len(subset.images))
            index_start += subset.num_steps
            # Read every caption now so a bad caption file stops us before training.
            for image in subset.images:
                caption = captions_mod.read_caption(image, caption_extension)
                if caption is None:
                    self.missing_captions.append(image)
                    caption = subset.class_tokens
                self.items.append(TrainItem(image, caption, subset.name))
        self._length = index_start

    def __len__(self) -> int:
        return self._length

    def item_for_index(self, index: int) -> int:
        """Which item a repeated index shows: each repeat walks a subset's images in order."""
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} out of range for {self._length} entries")
        index %= self._length
        k = bisect.bisect_right(self._index_starts, index) - 1
        return self._item_starts[k] + (index - self._index_starts[k]) % self._counts[k]

    def __getitem__(self, index: int) -> dict:
        item_index = self.item_for_index(index)
        item = self.items[item_index]
        img = resize_center_crop(load_image_rgb(item.image_path), self.width, self.height)
        return {"pixel_values": to_tensor(img), "caption": item.caption, "item_index": item_index}

    def num_batches(self, batch_size: int) -> int:
        """Batches per epoch (one resolution here, so one run of batches)."""
        return math.ceil(len(self) / batch_size)

    def epoch_batches(self, batch_size: int, generator: torch.Generator) -> list[list[int]]:
        """This epoch's batches of sample indices, shuffled by `generator`."""
        order = torch.randperm(len(self), generator=generator).tolist()
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def check_images(self) -> None:
        """Decode every image once; raise one DatasetError naming every unreadable file."""
        bad: list[str] = []
        with_alpha: list[Path] = []
        for item in self.items:
            try:
                load_image_rgb(item.image_path)
            except DatasetError as e:
                bad.append(e.what + f": {item.image_path}")
                continue
            if _has_alpha(item.image_path):
                with_alpha.append(item.image_path)
        if with_alpha:
            logger.warning(
                "%d images have transparency; like kohya, the alpha channel is dropped, so "
                "transparent areas train as whatever colour is stored under them (first: %s)",
                len(with_alpha),
                with_alpha[0],
            )
        if bad:
            shown = bad[:_MAX_LISTED]
            more = f"; and {len(bad) - len(shown)} more" if len(bad) > len(shown) else ""
            raise DatasetError(
                f"{len(bad)} of {len(self.items)} images cannot be read: "
                + "; ".join(shown)
                + more,
                str(self.scan.root),
                "Re-save these files as PNG or JPEG, or remove them from the dataset",
            )

    def captions_by_folder(self) -> dict[str, list[str]]:
        """Each folder's captions, one per image (fallback class tokens included), as kohya counts them."""
        result: dict[str, list[str]] = {s.name: [] for s in self.scan.subsets}
        for item in self.items:
            result[item.subset_name].append(item.caption)
        return result

    def tag_frequency(self) -> dict[str, dict[str, int]]:
        """kohya's ss_tag_frequency for this dataset."""
        return captions_mod.tag_frequency(self.captions_by_folder())

    def dataset_dirs(self) -> dict[str, dict[str, int]]:
        """kohya's ss_dataset_dirs: {folder name: {"n_repeats": r, "img_count": n}}."""
        return {
            s.name: {"n_repeats": s.repeats, "img_count": len(s.images)} for s in self.scan.subsets
        }


def _has_alpha(path: Path) -> bool:
    with Image.open(path) as img:
        return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
