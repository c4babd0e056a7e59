"""The Train LoRA tab registers and builds inside a (fake) A1111 v1.10.1."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from lora_trainer.demo import make_demo_dataset

ROOT = Path(__file__).resolve().parents[1]
FAKE_WEBUI = ROOT / "tests" / "fake_webui"


@pytest.fixture()
def webui(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(FAKE_WEBUI))
    for name in [
        m for m in sys.modules if m == "modules" or m.startswith(("modules.", "lora_trainer.webui"))
    ]:
        monkeypatch.delitem(sys.modules, name)
    from modules import script_callbacks, shared

    script_callbacks.clear_callbacks()
    lora_dir = tmp_path / "Lora"
    lora_dir.mkdir()
    monkeypatch.setattr(shared.cmd_opts, "lora_dir", str(lora_dir))
    checkpoint = SimpleNamespace(filename=str(tmp_path / "models" / "v1-5.safetensors"))
    monkeypatch.setattr(shared, "sd_model", SimpleNamespace(sd_checkpoint_info=checkpoint))
    return SimpleNamespace(callbacks=script_callbacks, shared=shared, lora_dir=lora_dir)


def _load_entry_script():
    # A1111's script loader imports each scripts/*.py by path with the extension root first on sys.path
    spec = importlib.util.spec_from_file_location(
        "lora_trainer_tab.py", ROOT / "scripts" / "lora_trainer_tab.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tab_registers_and_builds(webui):
    pytest.importorskip(
        "gradio", reason="the A1111 profile has gradio 3.41; the Forge profile has none"
    )
    _load_entry_script()
    tabs = webui.callbacks.ui_tabs_callback()
    assert not webui.callbacks.reported_errors
    assert len(tabs) == 1
    blocks, title, elem_id = tabs[0]
    assert (title, elem_id) == ("Train LoRA", "lora_trainer")
    assert type(blocks).__name__ == "Blocks"


def test_command_names_the_loaded_checkpoint_and_lora_folder(webui):
    from lora_trainer.webui.tab import train_command

    command = train_command()
    assert "v1-5.safetensors" in command and str(webui.lora_dir) in command


def test_inspect_a_lora_in_the_folder(webui, tmp_path):
    from lora_trainer.cli import main
    from lora_trainer.webui.tab import describe, list_loras

    data = make_demo_dataset(tmp_path / "d", count=2)
    args = ["train", "--pretrained_model_name_or_path=builtin:tiny-sd1", f"--train_data_dir={data}",
            f"--output_dir={webui.lora_dir / 'sub'}", "--output_name=mine", "--caption_extension=.txt",
            "--resolution=64", "--max_train_steps=1", "--device=cpu"]  # fmt: skip
    assert main(args) == 0
    (webui.lora_dir / "broken.safetensors").write_bytes(b"nope")
    assert list_loras(webui.lora_dir) == ["broken.safetensors", "sub/mine.safetensors"]
    assert "sks toy" in describe("sub/mine.safetensors")
    assert describe("broken.safetensors").startswith("Cannot read this file")
    assert "Pick a LoRA" in describe(None)
