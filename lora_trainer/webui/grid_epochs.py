"""Where a LoRA's epoch checkpoints live, and how to find them.

kohya (and our trainer, train/job.py output_file) names them `<name>-000002.safetensors`.
They are found beside the final `<name>.safetensors` and in the sub-folder
`<name>_epochs/` beside it, which is where the Train tab puts them (EPOCHS_FOLDER_SUFFIX).
"""

from __future__ import annotations

import re
from pathlib import Path

EPOCHS_FOLDER_SUFFIX = "_epochs"
EPOCH_DIGITS = 6  # kohya: f"{name}-{epoch:06d}"
LORA_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt")  # what the Lora extension lists


def epochs_folder(lora_file: Path) -> Path:
    """The sub-folder for the epoch files of `lora_file`: `<folder>/<name>_epochs`."""
    return lora_file.parent / f"{lora_file.stem}{EPOCHS_FOLDER_SUFFIX}"


def epoch_file_stem(name: str, epoch: int) -> str:
    """kohya's name of the file saved after `epoch`: `<name>-000002`."""
    return f"{name}-{epoch:0{EPOCH_DIGITS}d}"


def epoch_of(stem: str, name: str) -> int | None:
    """The epoch number when `stem` is an epoch file of the LoRA `name`, else None."""
    match = re.fullmatch(rf"{re.escape(name)}-(\d{{{EPOCH_DIGITS}}})", stem)
    return int(match[1]) if match else None


def base_name(stem: str) -> str | None:
    """`name` for an epoch file stem `name-000002`, None for any other stem."""
    match = re.fullmatch(rf"(.+)-\d{{{EPOCH_DIGITS}}}", stem)
    return match[1] if match else None


def find_epoch_files(lora_file: Path) -> dict[int, Path]:
    """Epoch number -> file, for the epoch files of `lora_file` (its folder, then `_epochs/`)."""
    found: dict[int, Path] = {}
    for folder in (lora_file.parent, epochs_folder(lora_file)):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            epoch = epoch_of(path.stem, lora_file.stem)
            if epoch and path.is_file() and path.suffix.lower() in LORA_FILE_SUFFIXES:
                found.setdefault(epoch, path)
    return dict(sorted(found.items()))
