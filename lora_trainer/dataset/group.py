"""All datasets of a run behind one index space: kohya's DatasetGroup, with the loop's batch contract."""

from __future__ import annotations

import bisect
from typing import Any

import torch

from .buckets import snap_bucket_limits
from .image_dataset import ImageCaptionDataset
from .spec import SubsetSpec


class DatasetGroup(torch.utils.data.Dataset):
    """Datasets side by side; each keeps its own batch size and buckets, batches are shuffled together."""

    def __init__(self, datasets: list[ImageCaptionDataset], from_config_file: bool = False) -> None:
        if not datasets:
            raise ValueError("a dataset group needs at least one dataset")
        self.datasets = datasets
        self.from_config_file = from_config_file
        self._starts: list[int] = []
        start = 0
        for dataset in datasets:
            self._starts.append(start)
            start += len(dataset)
        self._length = start

    def __len__(self) -> int:
        return self._length

    def locate(self, index: int) -> tuple[ImageCaptionDataset, int]:
        """The dataset a group index belongs to, and the index inside it."""
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} out of range for {self._length} samples")
        index %= self._length
        k = bisect.bisect_right(self._starts, index) - 1
        return self.datasets[k], index - self._starts[k]

    def __getitem__(self, index: int) -> dict[str, Any]:
        dataset, local = self.locate(index)
        return dataset[local]

    def num_batches(self, batch_size: int | None = None) -> int:
        """Batches per epoch over all datasets (each at its own batch size)."""
        return sum(d.num_batches(self._size(d, batch_size)) for d in self.datasets)

    def epoch_batches(self, batch_size: int | None, generator: torch.Generator) -> list[list[int]]:
        """Every dataset's bucket batches, then one shuffle of all batches, all drawn from `generator`."""
        batches: list[list[int]] = []
        for start, dataset in zip(self._starts, self.datasets):
            for batch in dataset.bucket_batches(self._size(dataset, batch_size), generator):
                batches.append([start + i for i in batch])
        order = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[k] for k in order]

    def _size(self, dataset: ImageCaptionDataset, batch_size: int | None) -> int | None:
        # a dataset_config file sets batch sizes per dataset (already falling back to
        # train_batch_size); folders mode has one dataset at the training batch size
        return None if self.from_config_file else batch_size

    def set_seed(self, seed: int) -> None:
        for d in self.datasets:
            d.set_seed(seed)

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            d.set_epoch(epoch)

    def set_current_step(self, step: int) -> None:
        for d in self.datasets:
            d.set_current_step(step)

    def set_max_train_steps(self, steps: int) -> None:
        for d in self.datasets:
            d.set_max_train_steps(steps)

    # --- facts for messages and metadata ---------------------------------------------------

    @property
    def num_train_images(self) -> int:
        return sum(d.num_train_images for d in self.datasets)

    @property
    def num_reg_images(self) -> int:
        return sum(d.num_reg_images for d in self.datasets)

    @property
    def items(self) -> list:
        return [item for d in self.datasets for item in d.items]

    @property
    def warnings(self) -> list[str]:
        return [w for d in self.datasets for w in d.warnings]

    @property
    def is_latent_cacheable(self) -> bool:
        return all(d.is_latent_cacheable for d in self.datasets)

    def tag_frequency(self) -> dict[str, dict[str, int]]:
        """kohya merges per folder name; a folder used by several datasets counts once."""
        merged: dict[str, dict[str, int]] = {}
        for d in self.datasets:
            for name, counts in d.tag_frequency().items():
                merged.setdefault(name, counts)
        return merged

    def dataset_dirs(self) -> dict[str, dict[str, int]]:
        """ss_dataset_dirs: training folders; with a config file, a repeated name gets " (2)"."""
        merged: dict[str, dict[str, int]] = {}
        for d in self.datasets:
            for name, info in d.dataset_dirs().items():
                key, n = name, 2
                while key in merged:
                    key, n = f"{name} ({n})", n + 1
                merged[key] = info
        return merged

    def reg_dataset_dirs(self) -> dict[str, dict[str, int]]:
        """ss_reg_dataset_dirs (folders mode only in kohya's metadata)."""
        merged: dict[str, dict[str, int]] = {}
        for d in self.datasets:
            merged.update(d.dataset_dirs(reg=True))
        return merged

    def bucket_info(self) -> dict[str, Any] | None:
        """ss_bucket_info: the single dataset's (folders mode)."""
        return self.datasets[0].bucket_info()

    def datasets_metadata(self) -> list[dict[str, Any]]:
        """kohya's ss_datasets list, written in dataset_config mode."""
        return [dataset_metadata(d) for d in self.datasets]


def dataset_metadata(d: ImageCaptionDataset) -> dict[str, Any]:
    """One entry of kohya's ss_datasets, keys in kohya's order."""
    buckets = d.spec.buckets
    enabled = buckets.enable
    lo, hi, _ = snap_bucket_limits(buckets)
    return {
        "is_dreambooth": True,
        "batch_size_per_device": d.spec.batch_size,
        "num_train_images": d.num_train_images,
        "num_reg_images": d.num_reg_images,
        "resolution": (d.width, d.height),
        "enable_bucket": enabled,
        "min_bucket_reso": lo if enabled else None,
        "max_bucket_reso": hi if enabled else None,
        "tag_frequency": d.tag_frequency(),
        "bucket_info": d.bucket_info(),
        "resize_interpolation": None,
        "subsets": [_subset_metadata(s.spec, s.img_count) for s in d.subsets],
    }


def _subset_metadata(spec: SubsetSpec, img_count: int) -> dict[str, Any]:
    c, a = spec.captions, spec.augment
    return {
        "img_count": img_count,
        "num_repeats": spec.num_repeats,
        "color_aug": a.color_aug,
        "flip_aug": a.flip_aug,
        "random_crop": a.random_crop,
        "shuffle_caption": c.shuffle_caption,
        "keep_tokens": c.keep_tokens,
        "keep_tokens_separator": c.keep_tokens_separator,
        "secondary_separator": c.secondary_separator,
        "enable_wildcard": c.enable_wildcard,
        "caption_prefix": c.caption_prefix,
        "caption_suffix": c.caption_suffix,
        "resize_interpolation": None,
        "image_dir": spec.name,
        "class_tokens": spec.class_tokens,
        "is_reg": spec.is_reg,
    }
