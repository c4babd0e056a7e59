"""Find and load the base model a configuration names."""

from __future__ import annotations

import torch

from ..config import BUILTIN_TINY_MODEL
from ..errors import ModelError
from .bundle import ModelBundle
from .checkpoint_file import load_checkpoint_file
from .tiny import build_tiny_sd1


def load_bundle(name_or_path: str | None, weight_dtype: torch.dtype = torch.float32) -> ModelBundle:
    """`builtin:tiny-sd1` or the path of an SD1.x checkpoint file."""
    if not name_or_path:
        raise ModelError(
            "pretrained_model_name_or_path is not set",
            fix=f"give an SD1.x checkpoint file, or {BUILTIN_TINY_MODEL} to try the tool",
        )
    if name_or_path == BUILTIN_TINY_MODEL:
        return build_tiny_sd1()
    if name_or_path.startswith("builtin:"):
        raise ModelError(
            f"unknown built-in model {name_or_path!r}", fix=f"use {BUILTIN_TINY_MODEL}"
        )
    return load_checkpoint_file(name_or_path, weight_dtype)
