"""Where the WebUI keeps this extension's presets: `<data dir>/lora-trainer/presets/`."""

from __future__ import annotations

from pathlib import Path

from ..presets import PresetStore


def preset_folder() -> Path:
    """A user-data folder (--data-dir), so presets survive updates of the extension."""
    from modules import paths_internal

    return Path(paths_internal.data_path) / "lora-trainer" / "presets"


def store() -> PresetStore:
    return PresetStore(preset_folder())


def preset_names() -> list[str]:
    return store().names()
