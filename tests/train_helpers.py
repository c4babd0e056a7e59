"""Configs for training the built-in tiny model in tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_trainer.config import BUILTIN_TINY_MODEL, TrainConfig, config_from_dict


def tiny_config(dataset: Path, out: Path, defaults: dict[str, Any], **options: Any) -> TrainConfig:
    """The tiny model on a demo dataset at 64 px on the CPU, then a test file's defaults, then options."""
    values = {
        "pretrained_model_name_or_path": BUILTIN_TINY_MODEL,
        "train_data_dir": str(dataset),
        "output_dir": str(out),
        "output_name": "t",
        "caption_extension": ".txt",
        "resolution": "64",
        "device": "cpu",
    }
    return config_from_dict({**values, **defaults, **options})
