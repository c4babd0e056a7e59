"""kohya's `--dataset_config` file ([general], [[datasets]], [[datasets.subsets]]) into dataset specs.

Each value is looked up in kohya's fallback order: the subset, its dataset, [general], the
training options, then kohya's default.
"""

from __future__ import annotations

import difflib
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import TrainConfig, parse_resolution, validate_dataset_options
from ..errors import ConfigError
from .buckets import BucketOptions
from .spec import AugmentOptions, CaptionOptions, DatasetSpec, SubsetSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: install.py adds tomli there
    import tomli as tomllib

_BOOL, _INT, _NUM, _STR = "true or false", "a whole number", "a number", "text"

# kohya's ConfigSanitizer schemas: which key may appear at which level, and its type
SUBSET_KEYS = {
    "color_aug": _BOOL, "flip_aug": _BOOL, "num_repeats": _INT, "random_crop": _BOOL,
    "shuffle_caption": _BOOL, "keep_tokens": _INT, "keep_tokens_separator": _STR,
    "secondary_separator": _STR, "caption_separator": _STR, "enable_wildcard": _BOOL,
    "token_warmup_min": _INT, "token_warmup_step": _NUM, "caption_prefix": _STR,
    "caption_suffix": _STR, "caption_dropout_every_n_epochs": _INT,
    "caption_dropout_rate": _NUM, "caption_tag_dropout_rate": _NUM,
    "caption_extension": _STR, "class_tokens": _STR, "cache_info": _BOOL,
}  # fmt: skip
SUBSET_ONLY_KEYS = {"image_dir": _STR, "is_reg": _BOOL, "alpha_mask": _BOOL}
DATASET_KEYS = {
    "batch_size": _INT, "bucket_no_upscale": _BOOL, "bucket_reso_steps": _INT,
    "enable_bucket": _BOOL, "max_bucket_reso": _INT, "min_bucket_reso": _INT,
    "resolution": "a size or [width, height]", "validation_seed": _INT,
    "validation_split": _NUM, "network_multiplier": _NUM,
}  # fmt: skip
# kohya keys this version does not implement, accepted only at kohya's default value
_UNSUPPORTED_DEFAULTS: dict[str, Any] = {
    "alpha_mask": False, "face_crop_aug_range": None, "custom_attributes": None,
    "resize_interpolation": None, "validation_split": 0.0, "network_multiplier": 1.0,
}  # fmt: skip
_UNSUPPORTED_TYPES = {"face_crop_aug_range": "[low, high]", "custom_attributes": "a table",
                      "resize_interpolation": _STR}  # fmt: skip
# training options kohya reads only from the command line, never from this file
_TRAINING_ONLY = ("prior_loss_weight", "max_token_length", "debug_dataset")

GENERAL_KEYS = {**DATASET_KEYS, **SUBSET_KEYS, **_UNSUPPORTED_TYPES}
DATASET_LEVEL_KEYS = {**GENERAL_KEYS, "subsets": "a list of [[datasets.subsets]] tables"}
SUBSET_LEVEL_KEYS = {**SUBSET_KEYS, **SUBSET_ONLY_KEYS, **_UNSUPPORTED_TYPES}


def load_dataset_config(path: str | Path) -> dict[str, Any]:
    """Read a kohya dataset config (.toml or .json) as a dict."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError("dataset_config file not found", where=str(path), fix="check the path")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        elif path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            raise ConfigError("dataset_config must be a .toml or .json file", where=str(path))
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot parse the dataset config: {e}", where=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("the dataset config must be a table", where=str(path))
    return data


def dataset_specs_from_config(
    data: dict[str, Any], config: TrainConfig, source: str = "dataset_config"
) -> list[DatasetSpec]:
    """Validate a kohya dataset config and resolve every value by kohya's fallback order."""
    _check_keys(data, {"general": "a table", "datasets": "a list of tables"}, source)
    general = _table(data.get("general", {}), f"{source} [general]")
    _check_level(general, GENERAL_KEYS, f"{source} [general]")
    datasets = data.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise ConfigError(
            "the dataset config has no [[datasets]]",
            where=source,
            fix="add at least one [[datasets]] with a [[datasets.subsets]] that sets image_dir",
        )
    return [
        _dataset_spec(
            _table(d, f"{source} datasets[{i}]"), general, config, f"{source} datasets[{i}]"
        )
        for i, d in enumerate(datasets)
    ]


def _dataset_spec(
    dataset: dict[str, Any], general: dict[str, Any], config: TrainConfig, where: str
) -> DatasetSpec:
    _check_level(dataset, DATASET_LEVEL_KEYS, where)
    subsets = dataset.get("subsets")
    if not isinstance(subsets, list) or not subsets:
        raise ConfigError(
            "this dataset has no [[datasets.subsets]]",
            where=where,
            fix='add [[datasets.subsets]] with image_dir = "path/to/images"',
        )
    levels = [dataset, general]

    def value(name: str, default: Any) -> Any:
        return _lookup(name, levels, default)

    resolution = parse_resolution(value("resolution", config.resolution))
    buckets = BucketOptions(
        enable=value("enable_bucket", config.enable_bucket),
        min_reso=value("min_bucket_reso", config.min_bucket_reso),
        max_reso=value("max_bucket_reso", config.max_bucket_reso),
        reso_steps=value("bucket_reso_steps", config.bucket_reso_steps),
        no_upscale=value("bucket_no_upscale", config.bucket_no_upscale),
    )
    _check_values(
        config,
        where,
        resolution=f"{resolution[0]},{resolution[1]}",
        enable_bucket=buckets.enable,
        min_bucket_reso=buckets.min_reso,
        max_bucket_reso=buckets.max_reso,
        bucket_reso_steps=buckets.reso_steps,
    )
    batch_size = value("batch_size", config.train_batch_size)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}", where=where)
    specs = [
        _subset_spec(_table(s, f"{where}.subsets[{j}]"), levels, config, f"{where}.subsets[{j}]")
        for j, s in enumerate(subsets)
    ]
    return DatasetSpec(
        subsets=specs,
        resolution=resolution,
        batch_size=batch_size,
        buckets=buckets,
        prior_loss_weight=config.prior_loss_weight,
        allow_symlinks=config.allow_symlinks,
        skip_bad_images=config.skip_bad_images,
    )


def _subset_spec(
    subset: dict[str, Any], parents: list[dict[str, Any]], config: TrainConfig, where: str
) -> SubsetSpec:
    _check_level(subset, SUBSET_LEVEL_KEYS, where)
    if "image_dir" not in subset:
        raise ConfigError(
            "a subset has no image_dir", where=where, fix='add image_dir = "path/to/images"'
        )
    levels = [subset, *parents]

    def value(name: str, default: Any) -> Any:
        return _lookup(name, levels, default)

    captions = CaptionOptions(
        **{name: value(name, getattr(config, name)) for name in CaptionOptions.__dataclass_fields__}
    )
    augment = AugmentOptions(
        **{name: value(name, getattr(config, name)) for name in AugmentOptions.__dataclass_fields__}
    )
    if captions.caption_extension and not captions.caption_extension.startswith("."):
        # kohya adds the dot itself here
        captions = replace(captions, caption_extension="." + captions.caption_extension)
    _check_values(config, where, **captions.__dict__, **augment.__dict__)
    image_dir = Path(subset["image_dir"]).expanduser()
    if not image_dir.is_dir():
        raise ConfigError(
            "image_dir is not a folder" if image_dir.exists() else "image_dir does not exist",
            where=f"{where}: {image_dir}",
            fix="a relative image_dir is read from the folder you run the command in, as in kohya; "
            "give an absolute path to be sure",
        )
    return SubsetSpec(
        image_dir=image_dir,
        num_repeats=value("num_repeats", 1),
        class_tokens=value("class_tokens", None),
        is_reg=subset.get("is_reg", False),
        captions=captions,
        augment=augment,
    )


def _check_values(config: TrainConfig, where: str, **values: Any) -> None:
    """The training options' own checks, run on the values this dataset or subset resolved to."""
    try:
        validate_dataset_options(replace(config, dataset_config=None, **values))
    except ConfigError as e:
        raise ConfigError(e.what, where=where, fix=e.fix) from None


def _lookup(name: str, levels: list[dict[str, Any]], default: Any) -> Any:
    # kohya's search_value: the first level that sets it (None counts as not set)
    for level in levels:
        if level.get(name) is not None:
            return level[name]
    return default


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError("expected a table of key = value", where=where)
    return value


def _check_keys(data: dict[str, Any], allowed: dict[str, str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(f"unknown key '{key}'", where=where, fix=_suggest(key, allowed))


def _check_level(data: dict[str, Any], allowed: dict[str, str], where: str) -> None:
    _check_keys(data, allowed, where)
    for key, value in data.items():
        _check_type(key, value, allowed[key], where)
        if key in _UNSUPPORTED_DEFAULTS and value not in (_UNSUPPORTED_DEFAULTS[key], {}):
            raise ConfigError(
                f"'{key}' is a kohya dataset option this version does not support yet",
                where=where,
                fix=f"remove {key} from the dataset config",
            )


def _check_type(key: str, value: Any, kind: str, where: str) -> None:
    ok = {
        _BOOL: isinstance(value, bool),
        _INT: isinstance(value, int) and not isinstance(value, bool),
        _NUM: isinstance(value, (int, float)) and not isinstance(value, bool),
        _STR: isinstance(value, str),
    }.get(kind, True)
    if key == "resolution":
        ok = _is_resolution(value)
    if key == "subsets":
        ok = isinstance(value, list)
    if not ok:
        raise ConfigError(f"'{key}' must be {kind}, got {value!r}", where=where)


def _is_resolution(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return True
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def _suggest(key: str, allowed: dict[str, str]) -> str:
    if key in _TRAINING_ONLY:
        return f"{key} is a training option, not a dataset option: set it in the training config or with --{key}"
    if key == "metadata_file":
        return "fine-tuning datasets (metadata_file) are not supported yet: use image_dir folders"
    if key in SUBSET_ONLY_KEYS:
        return f"{key} belongs in a [[datasets.subsets]] table"
    if key in DATASET_KEYS:
        return f"{key} belongs in [general] or a [[datasets]] table, not in a subset"
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return "allowed here: " + ", ".join(sorted(allowed))
