"""Where a trained LoRA lands: the WebUI's Lora folder, with a preview and a card file.

Layout for a run named NAME:
- `<lora dir>/<sub-folder>/NAME.safetensors`, `NAME.png` (the last sample) and `NAME.json`
  (the Lora page's card data: activation text, preferred weight, sd version, description);
- a work folder `<outputs>/lora-trainer/NAME/<date-time>/` for everything else: epoch
  checkpoints, sample images, the kohya TOML of the run. The Lora page lists every file
  below the Lora folder as a card (it walks sub-folders, hidden ones included by default),
  so epoch checkpoints go into the Lora folder (`NAME_epochs/`, where the comparison grid
  looks for them) only when the user asks; the card JSON lists where they are either way.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import validate_output_name
from ..errors import ConfigError
from .grid_epochs import CARD_KEY, card_epoch_files, epochs_folder

LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt")
SD_VERSIONS = {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL"}
WORK_FOLDER_NAME = "lora-trainer"


@dataclass(frozen=True)
class OutputPlan:
    """The files one run writes."""

    name: str
    folder: Path  # inside the Lora folder
    work_dir: Path  # outside it: epochs, samples, config
    epochs_as_cards: bool = False

    @property
    def lora_file(self) -> Path:
        return self.folder / f"{self.name}.safetensors"

    @property
    def card_file(self) -> Path:
        return self.folder / f"{self.name}.json"

    @property
    def preview_file(self) -> Path:
        return self.folder / f"{self.name}.png"

    @property
    def epochs_folder(self) -> Path:
        """Where epoch checkpoints end up: listed as cards only when asked."""
        return epochs_folder(self.lora_file) if self.epochs_as_cards else self.work_dir


def resolve_subfolder(lora_dir: Path, subfolder: str) -> Path:
    """`<lora dir>/<subfolder>`, refusing anything that leaves the Lora folder."""
    cleaned = (subfolder or "").strip().strip("/\\")
    if not cleaned:
        return lora_dir
    target = (lora_dir / cleaned).resolve()
    if not target.is_relative_to(lora_dir.resolve()):
        raise ConfigError(
            f"the output sub-folder {subfolder!r} is outside the Lora folder",
            fix="give a folder name inside the Lora folder, like 'trained', or leave it empty",
        )
    return lora_dir / cleaned


def plan_output(
    lora_dir: Path,
    subfolder: str,
    name: str,
    outputs_dir: Path,
    *,
    epochs_as_cards: bool = False,
    stamp: str | None = None,
) -> OutputPlan:
    """The output files of a run, checked: a plain name, folders inside the Lora folder."""
    validate_output_name(name)
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    work_dir = outputs_dir / WORK_FOLDER_NAME / name / stamp
    return OutputPlan(name, resolve_subfolder(lora_dir, subfolder), work_dir, epochs_as_cards)


def same_name_files(lora_dir: Path, name: str) -> list[Path]:
    """LoRA files anywhere below the Lora folder whose name is `name` (the page keys cards by it)."""
    if not lora_dir.is_dir():
        return []
    found = []
    for root, _, files in os.walk(lora_dir, followlinks=True):
        for filename in files:
            stem, ext = os.path.splitext(filename)
            if stem == name and ext.lower() in LORA_SUFFIXES:
                found.append(Path(root) / filename)
    return sorted(found)


def free_name(lora_dir: Path, name: str, folder: Path | None = None) -> str:
    """`name`, or `name_2`, `name_3`... whichever no LoRA, card or preview uses yet."""

    def taken(candidate: str) -> bool:
        leftovers = [folder / f"{candidate}{ext}" for ext in (".json", ".png")] if folder else []
        return bool(same_name_files(lora_dir, candidate)) or any(p.exists() for p in leftovers)

    n = 1
    while taken(name if n == 1 else f"{name}_{n}"):
        n += 1
    return name if n == 1 else f"{name}_{n}"


def check_overwrite(plan: OutputPlan, lora_dir: Path, overwrite: bool) -> None:
    """Refuse to replace a LoRA without consent, or to make `<lora:name>` ambiguous."""
    existing = same_name_files(lora_dir, plan.name)
    others = [p for p in existing if p.resolve() != plan.lora_file.resolve()]
    suggestion = free_name(lora_dir, plan.name, plan.folder)
    if others:
        raise ConfigError(
            f"another LoRA named '{plan.name}' exists, so <lora:{plan.name}> would be ambiguous",
            where=str(others[0]),
            fix=f"choose another output name, e.g. '{suggestion}'",
        )
    taken = [p for p in (plan.lora_file, plan.card_file, plan.preview_file) if p.exists()]
    if taken and not overwrite:
        raise ConfigError(
            f"a LoRA named '{plan.name}' already exists",
            where=str(taken[0]),
            fix=f"choose another output name, e.g. '{suggestion}', or tick 'Replace existing files'",
        )


def move_into_place(source: Path, target: Path) -> Path:
    """Move a written file to its place, replacing an older one the user agreed to replace."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.resolve() == target.resolve():
        return target
    try:
        os.replace(source, target)  # same file system: atomic
    except OSError:  # another drive: copy beside the target, then swap it in
        partial = target.with_name(f".{target.name}.partial")
        shutil.copy2(source, partial)
        os.replace(partial, target)
        source.unlink()
    return target


def write_preview(sample: Path | None, plan: OutputPlan) -> Path | None:
    """The last sample image as the card's preview (`NAME.png`)."""
    if sample is None or not sample.is_file():
        return None
    plan.folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sample, plan.preview_file)
    return plan.preview_file


@dataclass
class CardData:
    """What the Lora page's card shows and uses (its user-metadata JSON)."""

    arch: str
    activation_text: str
    preferred_weight: float
    description: str
    notes: str = ""
    trainer: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "sd version": SD_VERSIONS.get(self.arch, "Unknown"),
            "activation text": self.activation_text,
            "preferred weight": self.preferred_weight,
            "negative text": "",
            "notes": self.notes,
            CARD_KEY: self.trainer,
        }


def write_card(card: CardData, plan: OutputPlan) -> Path:
    """`NAME.json` beside the LoRA, in the format the Lora page's metadata editor writes."""
    plan.folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(card.to_json(), indent=4, ensure_ascii=False)
    plan.card_file.write_text(text + "\n", encoding="utf-8")
    return plan.card_file


def read_card(lora_file: Path) -> dict[str, Any]:
    """The card JSON of a LoRA file ({} when there is none or it cannot be read)."""
    try:
        data = json.loads(lora_file.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def epoch_checkpoints(lora_file: Path) -> list[Path]:
    """The epoch checkpoints of a LoRA trained here, oldest first (for comparison grids)."""
    return card_epoch_files(lora_file)  # grid_epochs reads the card: it cannot import this module
