"""Test harness: a fresh fake A1111 v1.10.1 per test, with the built-in Lora extension loaded.

The WebUI imports the Lora extension's modules as top-level `networks`, `network` and
`lora` (its folder is on sys.path while scripts load), so the fake's folder goes on
sys.path the same way. Folders (--lora-dir, --data-dir, outputs) point into tmp_path.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

FAKE_WEBUI = Path(__file__).resolve().parent
LORA_EXTENSION = FAKE_WEBUI / "extensions-builtin" / "Lora"
FIXTURES = FAKE_WEBUI.parents[2] / "shared" / "fixtures"
_FRESH = ("modules", "networks", "network", "lora", "extra_networks_lora", "lora_trainer.webui")


@dataclass
class WebuiEnv:
    shared: ModuleType
    networks: ModuleType
    root: Path
    lora_dir: Path
    outputs: Path


def fresh_webui(monkeypatch: pytest.MonkeyPatch, root: Path) -> WebuiEnv:
    """Import the fake WebUI anew (no state from other tests) with its folders under `root`."""
    monkeypatch.syspath_prepend(str(LORA_EXTENSION))
    monkeypatch.syspath_prepend(str(FAKE_WEBUI))
    for name in [
        m for m in sys.modules if m in _FRESH or m.startswith(tuple(f"{p}." for p in _FRESH))
    ]:
        monkeypatch.delitem(sys.modules, name)
    from modules import paths_internal, script_callbacks, shared

    script_callbacks.clear_callbacks()
    lora_dir, outputs = root / "models" / "Lora", root / "outputs"
    monkeypatch.setattr(shared.cmd_opts, "lora_dir", str(lora_dir))
    monkeypatch.setattr(shared.cmd_opts, "lyco_dir_backcompat", str(root / "models" / "LyCORIS"))
    monkeypatch.setattr(paths_internal, "data_path", str(root))
    monkeypatch.setattr(paths_internal, "models_path", str(root / "models"))
    monkeypatch.setattr(paths_internal, "default_output_dir", str(outputs))
    import networks  # the extension lists the Lora folder (and creates it) when it loads

    return WebuiEnv(shared, networks, root, lora_dir, outputs)


_MODEL_CACHE: dict[str, object] = {}


def live_tiny_model():
    """The tiny SD1 model as the WebUI holds it (built once per test session; tests restore it)."""
    from fake_sd_model import build_live_tiny_sd1

    if "tiny" not in _MODEL_CACHE:
        _MODEL_CACHE["tiny"] = build_live_tiny_sd1(FIXTURES)
    return _MODEL_CACHE["tiny"]
