"""Folders and switches of the running WebUI that the extension reads."""

from __future__ import annotations

from pathlib import Path


def lora_dir() -> Path:
    """The WebUI's Lora folder (`--lora-dir`, default models/Lora)."""
    from modules import shared

    return Path(shared.cmd_opts.lora_dir)


def outputs_dir() -> Path:
    """The WebUI's outputs folder (<data dir>/outputs), where run folders go."""
    from modules import paths_internal

    return Path(paths_internal.default_output_dir)


def loaded_checkpoint_file() -> Path | None:
    """The file of the checkpoint loaded in the WebUI, if any."""
    from .live_model import loaded_model

    info = getattr(loaded_model(), "sd_checkpoint_info", None)
    filename = getattr(info, "filename", None)
    return Path(filename) if filename else None


def api_enabled() -> bool:
    """The WebUI's HTTP API is on (--api, or --nowebui which serves only the API)."""
    from modules import shared

    return bool(
        getattr(shared.cmd_opts, "api", False) or getattr(shared.cmd_opts, "nowebui", False)
    )
