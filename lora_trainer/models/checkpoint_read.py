"""Read a checkpoint's tensors and metadata: .safetensors, or .ckpt/.pt unpickled safely (weights only)."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..errors import ModelError

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors of a checkpoint file, and its safetensors metadata ({} for pickles)."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "not found"
        raise ModelError(f"checkpoint file {what}", where=str(path), fix="check the path")
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise ModelError(
            f"unsupported checkpoint type {path.suffix!r}",
            where=str(path),
            fix="use a .safetensors or .ckpt file",
        )
    if path.suffix.lower() == ".safetensors":
        return _read_safetensors(path)
    return _read_pickle(path), {}


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise ModelError(f"cannot read the checkpoint: {exc}", where=str(path)) from None
    return tensors, metadata


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        example = f" (e.g. {found[1]})" if found else ""
        raise ModelError(
            f"the checkpoint holds Python objects besides weights{example}; "
            "it is not unpickled, since that could run code",
            where=str(path),
            fix="use the .safetensors version of this model",
        ) from None
    except (OSError, RuntimeError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelError(f"cannot read the checkpoint: {exc}", where=str(path)) from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelError("the checkpoint holds no state dict", where=str(path))
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
