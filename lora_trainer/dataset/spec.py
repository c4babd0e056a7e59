"""What a dataset is made of before anything is read: kohya's subset and dataset parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .buckets import BucketOptions


@dataclass(frozen=True)
class CaptionOptions:
    """Per-subset caption handling, kohya's names and defaults."""

    caption_extension: str = ".caption"
    shuffle_caption: bool = False
    caption_separator: str = ","
    keep_tokens: int = 0
    keep_tokens_separator: str = ""
    secondary_separator: str | None = None
    enable_wildcard: bool = False
    caption_prefix: str | None = None
    caption_suffix: str | None = None
    caption_dropout_rate: float = 0.0
    caption_dropout_every_n_epochs: int = 0
    caption_tag_dropout_rate: float = 0.0
    token_warmup_min: int = 1
    token_warmup_step: float = 0

    @property
    def is_fixed(self) -> bool:
        """True when a caption always comes out the same, apart from being dropped whole."""
        return not (
            self.shuffle_caption
            or self.caption_tag_dropout_rate > 0
            or self.token_warmup_step > 0
            or self.enable_wildcard
        )

    @property
    def may_drop(self) -> bool:
        """True when the whole caption is sometimes replaced by an empty one."""
        return self.caption_dropout_rate > 0 or self.caption_dropout_every_n_epochs > 0


@dataclass(frozen=True)
class AugmentOptions:
    """Per-subset image augmentation (kohya's flip_aug, color_aug, random_crop)."""

    flip_aug: bool = False
    color_aug: bool = False
    random_crop: bool = False


@dataclass
class SubsetSpec:
    """One image folder: kohya's DreamBoothSubset."""

    image_dir: Path
    num_repeats: int = 1
    class_tokens: str | None = None
    is_reg: bool = False
    captions: CaptionOptions = field(default_factory=CaptionOptions)
    augment: AugmentOptions = field(default_factory=AugmentOptions)
    # the folder links may not lead out of: the one the user named (train_data_dir,
    # reg_data_dir, or image_dir itself); None means image_dir
    link_root: Path | None = None

    @property
    def name(self) -> str:
        """The folder's base name, as kohya keys its metadata."""
        return self.image_dir.name


@dataclass
class DatasetSpec:
    """One kohya DreamBoothDataset: subsets trained at one resolution and batch size."""

    subsets: list[SubsetSpec]
    resolution: tuple[int, int]
    batch_size: int = 1
    buckets: BucketOptions = field(default_factory=BucketOptions)
    prior_loss_weight: float = 1.0
    allow_symlinks: bool = False
    skip_bad_images: bool = False
