"""The training data of a run, from kohya folders (train_data_dir, reg_data_dir) or a dataset_config file."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..config import TrainConfig
from ..errors import ConfigError
from .buckets import BucketOptions
from .dataset_config import dataset_specs_from_config, load_dataset_config
from .folders import DatasetScan, scan_image_folder
from .group import DatasetGroup
from .image_dataset import ImageCaptionDataset
from .spec import AugmentOptions, CaptionOptions, DatasetSpec, SubsetSpec


@dataclass
class TrainingData:
    """The datasets of a run, and what to tell the user about them."""

    group: DatasetGroup
    lines: list[str] = field(default_factory=list)  # what was found, per folder and bucket
    warnings: list[str] = field(default_factory=list)


def build_training_data(config: TrainConfig, seed: int, verify_images: bool = True) -> TrainingData:
    """Read every folder, caption and image header; bucket and balance; nothing heavy is loaded."""
    lines: list[str] = []
    warnings: list[str] = []
    if config.dataset_config:
        ignored = [n for n in ("train_data_dir", "reg_data_dir") if getattr(config, n)]
        if ignored:
            warnings.append(
                f"{' and '.join(ignored)} ignored: the dataset_config file lists the folders"
            )
        specs = dataset_specs_from_config(
            load_dataset_config(config.dataset_config), config, str(config.dataset_config)
        )
    else:
        specs, scans = folder_specs(config)
        for scan in scans:
            lines += scan.summary_lines()[:-1]
            warnings += scan.warnings
    datasets = [ImageCaptionDataset(spec, seed, verify_images) for spec in specs]
    group = DatasetGroup(datasets, from_config_file=bool(config.dataset_config))
    for i, dataset in enumerate(datasets):
        prefix = f"Dataset {i}: " if len(datasets) > 1 else ""
        if config.dataset_config:
            lines += [prefix + line for line in _subset_lines(dataset)]
        lines += [prefix + line for line in dataset.bucket_lines()]
        warnings += dataset.warnings
    lines.append(_total_line(group))
    return TrainingData(group, lines, warnings)


def folder_specs(config: TrainConfig) -> tuple[list[DatasetSpec], list[DatasetScan]]:
    """kohya's DreamBooth method: one dataset from train_data_dir's and reg_data_dir's sub-folders."""
    if not config.train_data_dir:
        raise ConfigError(
            "train_data_dir is not set",
            fix="point it at a folder of N_token sub-folders, or give a dataset_config file",
        )
    scans = [_scan(config, config.train_data_dir, is_reg=False)]
    if config.reg_data_dir:
        scans.append(_scan(config, config.reg_data_dir, is_reg=True))
    captions = CaptionOptions(**{f.name: getattr(config, f.name) for f in fields(CaptionOptions)})
    augment = AugmentOptions(**{f.name: getattr(config, f.name) for f in fields(AugmentOptions)})
    subsets = [
        SubsetSpec(s.path, s.repeats, s.class_tokens, s.is_reg, captions, augment, scan.root)
        for scan in scans
        for s in scan.subsets
    ]
    spec = DatasetSpec(
        subsets=subsets,
        resolution=config.resolution_wh,
        batch_size=config.train_batch_size,
        buckets=bucket_options(config),
        prior_loss_weight=config.prior_loss_weight,
        allow_symlinks=config.allow_symlinks,
        skip_bad_images=config.skip_bad_images,
    )
    return [spec], scans


def bucket_options(config: TrainConfig) -> BucketOptions:
    """The bucket settings of the training options."""
    return BucketOptions(
        enable=config.enable_bucket,
        min_reso=config.min_bucket_reso,
        max_reso=config.max_bucket_reso,
        reso_steps=config.bucket_reso_steps,
        no_upscale=config.bucket_no_upscale,
    )


def _scan(config: TrainConfig, root: str, is_reg: bool) -> DatasetScan:
    return scan_image_folder(
        root,
        caption_extension=config.caption_extension,
        is_reg=is_reg,
        allow_symlinks=config.allow_symlinks,
    )


def _subset_lines(dataset: ImageCaptionDataset) -> list[str]:
    lines = []
    for s in dataset.subsets:
        kind = "Reg folder" if s.spec.is_reg else "Folder"
        lines.append(
            f"{kind} {s.spec.image_dir}: {s.img_count} images x {s.spec.num_repeats} repeats"
            f" = {s.img_count * s.spec.num_repeats}"
        )
    return lines


def _total_line(group: DatasetGroup) -> str:
    line = f"Total: {group.num_train_images} training images with repeats"
    if group.num_reg_images:
        reg_used = len(group) - group.num_train_images
        line += f", {reg_used} regularization samples (of {group.num_reg_images} with repeats)"
    return line + f" = {len(group)} samples per epoch"
