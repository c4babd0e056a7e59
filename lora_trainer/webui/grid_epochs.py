"""Where a LoRA's epoch checkpoints live, and how to find them.

kohya (and our trainer, train/job.py output_file) names them `<name>-000002.safetensors`.
They are found in three places: the files the LoRA's card `<name>.json` lists (the Train
tab writes them into its "lora trainer" block; by default they stay in the run's work
folder `<outputs>/lora-trainer/<name>/<date-time>/`, out of the Lora page), the sub-folder
`<name>_epochs/` beside the LoRA (where the tab puts them when they are to be cards), and
the LoRA's own folder (kohya's output_dir layout).

The card is read here rather than through output.py, which imports this module.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

EPOCHS_FOLDER_SUFFIX = "_epochs"
EPOCH_DIGITS = 6  # kohya: f"{name}-{epoch:06d}"
LORA_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt")  # what the Lora extension lists
CARD_KEY = "lora trainer"  # our block inside the card JSON (the Lora page keeps unknown keys)
CARD_EPOCHS = "epochs"  # in that block: the epoch checkpoints, oldest first


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


def card_epoch_files(lora_file: Path) -> list[Path]:
    """The epoch checkpoints the LoRA's card lists (files that still exist), oldest first."""
    try:
        card = json.loads(lora_file.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no card, or one the user broke: nothing listed
        return []
    trainer = card.get(CARD_KEY) if isinstance(card, dict) else None
    listed = trainer.get(CARD_EPOCHS) if isinstance(trainer, dict) else None
    if not isinstance(listed, list):
        return []
    paths = [_card_path(item, lora_file.parent) for item in listed if isinstance(item, str)]
    return [p for p in paths if p.is_file() and p.suffix.lower() in LORA_FILE_SUFFIXES]


def find_epoch_files(lora_file: Path) -> dict[int, Path]:
    """Epoch number -> file, for the epoch files of `lora_file` (card, its folder, `_epochs/`)."""
    found: dict[int, Path] = {}
    for path in card_epoch_files(lora_file):
        # the card lists them by their written names: a LoRA renamed since keeps its epochs
        epoch = epoch_of(path.stem, base_name(path.stem) or "")
        if epoch:
            found.setdefault(epoch, path)
    for folder in (lora_file.parent, epochs_folder(lora_file)):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            epoch = epoch_of(path.stem, lora_file.stem)
            if epoch and path.is_file() and path.suffix.lower() in LORA_FILE_SUFFIXES:
                found.setdefault(epoch, path)
    return dict(sorted(found.items()))


def _card_path(text: str, folder: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else folder / path
