"""What the extension reads from the running WebUI (the only A1111-facing module so far)."""

from __future__ import annotations

from pathlib import Path

from modules import shared


def lora_dir() -> Path:
    """The WebUI's Lora folder (`--lora-dir`, default models/Lora)."""
    return Path(shared.cmd_opts.lora_dir)


def loaded_checkpoint_file() -> Path | None:
    """The file of the checkpoint loaded in the WebUI, if any."""
    info = getattr(shared.sd_model, "sd_checkpoint_info", None)
    filename = getattr(info, "filename", None)
    return Path(filename) if filename else None
