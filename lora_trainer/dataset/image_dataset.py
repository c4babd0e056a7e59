"""One kohya dataset: subsets at one resolution, bucketed, with repeats and regularization balanced."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from ..errors import DatasetError
from . import captions as captions_mod
from .buckets import BucketChoice, BucketSelector, bucket_info, crop_ltrb, snap_bucket_limits
from .caption_process import TrainingClock, fixed_caption, process_caption
from .image_check import bad_images_error, check_images
from .images import color_augment, fit_to_bucket, flip_horizontal, load_image_rgb, to_tensor
from .regularization import balance_reg_repeats
from .spec import DatasetSpec, SubsetSpec
from .subset_reader import SubsetImages, read_subset


@dataclass
class TrainItem:
    """One image: where it is, the caption it trains with, its folder, and its bucket."""

    image_path: Path
    caption: str
    subset_name: str
    subset_index: int = 0
    is_reg: bool = False
    repeats: int = 1
    size: tuple[int, int] = (0, 0)  # (width, height) as decoded, EXIF-upright
    bucket: BucketChoice | None = None


class LatentSource(Protocol):
    """Cached VAE posteriors: (mean, std) of an item's latent, flipped or not (latent_cache.py)."""

    def moments(self, item_index: int, flipped: bool) -> tuple[torch.Tensor, torch.Tensor]: ...


class ConditioningSource(Protocol):
    """Cached text-encoder outputs for a caption (and SDXL size extras) (text_cache.py)."""

    def lookup(self, caption: str, extras: dict[str, tuple[int, int]]) -> Any: ...


@dataclass
class SubsetSummary:
    """What kohya reports per subset: folder name, repeats, images found."""

    spec: SubsetSpec
    img_count: int
    missing_captions: list[Path] = field(default_factory=list)


class ImageCaptionDataset(torch.utils.data.Dataset):
    """Samples (image x repeat) of one dataset; batches are drawn per aspect-ratio bucket."""

    def __init__(self, spec: DatasetSpec, seed: int = 0, verify_images: bool = True) -> None:
        self.spec = spec
        self.seed = seed
        self.width, self.height = spec.resolution
        self.warnings: list[str] = []
        self.subsets: list[SubsetSummary] = []
        self.tag_frequencies: dict[str, dict[str, int]] = {}
        self.num_train_images = 0  # with repeats, regularization excluded (kohya's count)
        self.num_reg_images = 0  # with the folders' repeats, before balancing
        self.unused_reg_images: list[Path] = []
        self.skipped_images: list[tuple[Path, str]] = []
        self.clock = TrainingClock()
        self.latents: LatentSource | None = None
        self.text_cache: ConditioningSource | None = None
        read = self._read_subsets()
        sizes = self._check_images(read, verify_images)
        self.items = self._make_items(read, sizes)
        self._assign_buckets()

    # --- building -------------------------------------------------------------------------

    def _read_subsets(self) -> list[SubsetImages]:
        result: list[SubsetImages] = []
        seen: set[Path] = set()
        for spec in self.spec.subsets:
            if spec.num_repeats < 1:
                self.warnings.append(f"Ignored {spec.image_dir}: num_repeats is {spec.num_repeats}")
                continue
            key = spec.image_dir.resolve()
            if key in seen:  # kohya: a subset is its image_dir; the first one wins
                self.warnings.append(f"Ignored {spec.image_dir}: the same folder is listed twice")
                continue
            seen.add(key)
            subset = read_subset(spec, spec.link_root, self.spec.allow_symlinks)
            self.warnings += subset.warnings
            if not subset.images:
                self.warnings.append(f"Ignored {spec.image_dir}: no images in it")
                continue
            result.append(subset)
        if not result:
            raise DatasetError(
                "no images found in any image folder",
                ", ".join(str(s.image_dir) for s in self.spec.subsets) or None,
                "Put images directly inside each image folder",
            )
        return result

    def _check_images(self, read: list[SubsetImages], verify: bool) -> dict[Path, tuple[int, int]]:
        paths = [p for subset in read for p in subset.images]
        check = check_images(paths, decode=verify)
        if check.bad and not self.spec.skip_bad_images:
            raise bad_images_error(check.bad, len(paths), str(read[0].spec.image_dir.parent))
        if check.bad:
            self.skipped_images = check.bad
            self.warnings.append(
                f"Skipped {len(check.bad)} images that cannot be read (skip_bad_images): "
                + "; ".join(f"{p} ({why})" for p, why in check.bad[:10])
            )
        return check.sizes

    def _make_items(
        self, read: list[SubsetImages], sizes: dict[Path, tuple[int, int]]
    ) -> list[TrainItem]:
        train: list[TrainItem] = []
        reg: list[TrainItem] = []
        for index, subset in enumerate(read):
            spec = subset.spec
            good = [(p, c) for p, c in zip(subset.images, subset.captions) if p in sizes]
            # kohya counts tags of every caption found, before any image is dropped
            _add_tags(self.tag_frequencies.setdefault(spec.name, {}), subset.captions)
            self.subsets.append(SubsetSummary(spec, len(good), subset.missing_captions))
            target = reg if spec.is_reg else train
            for path, caption in good:
                target.append(
                    TrainItem(
                        path, caption, spec.name, index, spec.is_reg, spec.num_repeats, sizes[path]
                    )
                )
        self.num_train_images = sum(i.repeats for i in train)
        self.num_reg_images = sum(i.repeats for i in reg)
        if not train and not reg:
            raise DatasetError(
                "none of the images can be read",
                str(self.spec.subsets[0].image_dir.parent),
                "Re-save them as PNG or JPEG",
            )
        if not train:
            raise DatasetError(
                "no training images: only regularization images were found",
                str(self.spec.subsets[0].image_dir.parent),
                "Add a training image folder (not is_reg)",
            )
        return train + self._balance(reg)

    def _balance(self, reg: list[TrainItem]) -> list[TrainItem]:
        if not reg:
            return []
        repeats = balance_reg_repeats(self.num_train_images, [i.repeats for i in reg])
        used = []
        for item, r in zip(reg, repeats):
            if r:
                item.repeats = r
                used.append(item)
            else:
                self.unused_reg_images.append(item.image_path)
        if self.unused_reg_images:
            self.warnings.append(
                f"{len(self.unused_reg_images)} of {len(reg)} regularization images are not used: "
                f"kohya uses only as many as the {self.num_train_images} training images with repeats "
                "(add training images or lower the regularization repeats to use them all)"
            )
        return used

    def _assign_buckets(self) -> None:
        options = self.spec.buckets
        if options.enable:
            _, _, notes = snap_bucket_limits(options)
            self.warnings += notes
            if options.no_upscale:
                self.warnings.append(
                    "bucket_no_upscale is set: min_bucket_reso and max_bucket_reso are not used "
                    "(buckets come from the image sizes)"
                )
        selector = BucketSelector(options, self.spec.resolution)
        for item in self.items:
            item.bucket = selector.select(*item.size)
        self.samples: list[int] = [
            k for k, item in enumerate(self.items) for _ in range(item.repeats)
        ]
        self.buckets: dict[tuple[int, int], list[int]] = {}
        for index, k in enumerate(self.samples):
            self.buckets.setdefault(self.items[k].bucket.reso, []).append(index)

    # --- the loop's contract --------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.samples)

    def num_batches(self, batch_size: int | None = None) -> int:
        """Batches per epoch: each bucket is cut into batches on its own (the last may be short)."""
        size = batch_size or self.spec.batch_size
        return sum(math.ceil(len(b) / size) for b in self.buckets.values())

    def bucket_batches(self, batch_size: int | None, generator: torch.Generator) -> list[list[int]]:
        """Each bucket's samples shuffled by `generator`, cut into batches (buckets in resolution order)."""
        size = batch_size or self.spec.batch_size
        batches = []
        for reso in sorted(self.buckets):
            members = self.buckets[reso]
            order = torch.randperm(len(members), generator=generator).tolist()
            shuffled = [members[k] for k in order]
            batches += [shuffled[i : i + size] for i in range(0, len(shuffled), size)]
        return batches

    def epoch_batches(self, batch_size: int | None, generator: torch.Generator) -> list[list[int]]:
        """This epoch's batches: shuffled within buckets, then the batch order shuffled, all by `generator`."""
        batches = self.bucket_batches(batch_size, generator)
        order = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[k] for k in order]

    def set_seed(self, seed: int) -> None:
        """The run's seed: every sample's flips, crops and caption choices derive from it."""
        self.seed = seed

    def set_epoch(self, epoch: int) -> None:
        """kohya's current_epoch (1-based): caption_dropout_every_n_epochs reads it."""
        self.clock = TrainingClock(epoch, self.clock.step, self.clock.max_train_steps)

    def set_current_step(self, step: int) -> None:
        """Optimizer steps done so far: token warmup reads it."""
        self.clock = TrainingClock(self.clock.epoch, step, self.clock.max_train_steps)

    def set_max_train_steps(self, steps: int) -> None:
        """A token_warmup_step below 1 is a fraction of this."""
        self.clock = TrainingClock(self.clock.epoch, self.clock.step, steps)

    # --- samples --------------------------------------------------------------------------

    def item_for_index(self, index: int) -> int:
        """Which image (index into `items`) a sample index shows."""
        if not -len(self.samples) <= index < len(self.samples):
            raise IndexError(f"index {index} out of range for {len(self.samples)} samples")
        return self.samples[index]

    def __getitem__(self, index: int) -> dict[str, Any]:
        k = self.item_for_index(index)
        item = self.items[k]
        subset = self._subset(item)
        base = f"{self.seed}/{self.clock.epoch}/{index % len(self.samples)}"
        image_rng = random.Random(base + "/image")
        flipped = subset.augment.flip_aug and image_rng.random() < 0.5
        sample: dict[str, Any] = {"item_index": k, "flipped": flipped}
        if self.latents is not None:
            sample["latent_mean"], sample["latent_std"] = self.latents.moments(k, flipped)
        else:
            sample["pixel_values"] = self.load_pixels(k, flipped, image_rng)
        caption_rng = random.Random(base + "/caption")
        sample["caption"] = process_caption(subset.captions, item.caption, caption_rng, self.clock)
        sample.update(self.size_extras(k, flipped))
        sample["loss_weight"] = self.spec.prior_loss_weight if item.is_reg else 1.0
        if self.text_cache is not None:
            extras = {n: sample[n] for n in ("original_size", "crop_top_left", "target_size")}
            sample["conditioning"] = self.text_cache.lookup(sample["caption"], extras)
        return sample

    def _subset(self, item: TrainItem) -> SubsetSpec:
        return self.subsets[item.subset_index].spec

    def load_pixels(
        self, item_index: int, flipped: bool = False, rng: random.Random | None = None
    ) -> torch.Tensor:
        """The image as the model sees it: fitted to its bucket, augmented, float [3, H, W] in [-1, 1]."""
        item = self.items[item_index]
        augment = self._subset(item).augment
        img = load_image_rgb(item.image_path, at_least=item.bucket.resized_size)
        crop_rng = rng if augment.random_crop else None
        img = fit_to_bucket(img, item.bucket.reso, item.bucket.resized_size, crop_rng)
        if augment.color_aug and rng is not None:
            img = color_augment(img, rng)
        if flipped:
            img = flip_horizontal(img)
        return to_tensor(img)

    def size_extras(self, item_index: int, flipped: bool) -> dict[str, tuple[int, int]]:
        """SDXL's size conditioning as kohya computes it: original (h, w), crop (top, left), target (h, w)."""
        item = self.items[item_index]
        reso = item.bucket.reso
        left, top, right, _ = crop_ltrb(reso, item.size)
        if flipped:  # the crop's right edge becomes the left one
            left = reso[0] - right
        return {
            "original_size": (int(item.size[1]), int(item.size[0])),
            "crop_top_left": (int(top), int(left)),
            "target_size": (int(reso[1]), int(reso[0])),
        }

    # --- what caches need -----------------------------------------------------------------

    @property
    def is_latent_cacheable(self) -> bool:
        """kohya: no color_aug and no random_crop in any subset (a cached latent cannot vary)."""
        return all(
            not (s.spec.augment.color_aug or s.spec.augment.random_crop) for s in self.subsets
        )

    def flip_used(self, item_index: int) -> bool:
        """Whether this image is ever flipped (its subset has flip_aug)."""
        return self._subset(self.items[item_index]).augment.flip_aug

    def varying_caption_subsets(self) -> list[str]:
        """Subsets whose captions vary from step to step (shuffle, tag dropout, warmup, wildcards)."""
        return [s.spec.name for s in self.subsets if not s.spec.captions.is_fixed]

    def caption_variants(self) -> set[tuple[str, tuple[tuple[str, tuple[int, int]], ...]]]:
        """Every (caption, size extras) a sample can show when captions are fixed: what a text cache needs."""
        variants = set()
        for k, item in enumerate(self.items):
            options = self._subset(item).captions
            captions = {fixed_caption(options, item.caption)}
            if options.may_drop:
                captions.add("")
            flips = (False, True) if self.flip_used(k) else (False,)
            for flipped in flips:
                extras = tuple(sorted(self.size_extras(k, flipped).items()))
                variants |= {(c, extras) for c in captions}
        return variants

    # --- reports and metadata -------------------------------------------------------------

    def bucket_counts(self) -> dict[tuple[int, int], int]:
        """Samples (with repeats) per bucket resolution."""
        return {reso: len(members) for reso, members in self.buckets.items()}

    def bucket_info(self) -> dict[str, Any] | None:
        """kohya's bucket_info (None without buckets): counts with repeats, mean |aspect error| without."""
        if not self.spec.buckets.enable:
            return None
        return bucket_info(self.bucket_counts(), [i.bucket.ar_error for i in self.items])

    def bucket_lines(self) -> list[str]:
        """One line per bucket, then the mean aspect error (what kohya logs)."""
        info = self.bucket_info()
        if info is None:
            return []
        lines = [
            f"bucket {i}: resolution {tuple(b['resolution'])}, count: {b['count']}"
            for i, b in info["buckets"].items()
        ]
        lines.append(f"mean aspect ratio error (without repeats): {info['mean_img_ar_error']:.4f}")
        return lines

    def tag_frequency(self) -> dict[str, dict[str, int]]:
        """kohya's ss_tag_frequency: per folder, from the captions as read (regularization folders too)."""
        return self.tag_frequencies

    def dataset_dirs(self, reg: bool = False) -> dict[str, dict[str, int]]:
        """kohya's ss_dataset_dirs (or ss_reg_dataset_dirs): {folder: {"n_repeats", "img_count"}}."""
        return {
            s.spec.name: {"n_repeats": s.spec.num_repeats, "img_count": s.img_count}
            for s in self.subsets
            if s.spec.is_reg == reg
        }

    def captions_by_folder(self) -> dict[str, list[str]]:
        """Each folder's raw captions, one per image (fallback class tokens included)."""
        result: dict[str, list[str]] = {s.spec.name: [] for s in self.subsets}
        for item in self.items:
            result[item.subset_name].append(item.caption)
        return result

    @property
    def missing_captions(self) -> list[Path]:
        return [p for s in self.subsets for p in s.missing_captions]


def _add_tags(counts: dict[str, int], captions: list[str]) -> None:
    for tag, n in captions_mod.tag_frequency({"_": captions}).get("_", {}).items():
        counts[tag] = counts.get(tag, 0) + n
