"""The Train LoRA tab inside a (fake) A1111 v1.10.1: it builds under gradio 3.41, and its handlers work."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

pytest.importorskip(
    "gradio", reason="the A1111 profile has gradio 3.41; the Forge profile has none"
)
sys.path.insert(0, str(Path(__file__).resolve().parent / "fake_webui"))

from harness import fresh_webui, live_tiny_model

from lora_trainer.demo import make_demo_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def env(monkeypatch, tmp_path):
    env = fresh_webui(monkeypatch, tmp_path)
    env.shared.sd_model = live_tiny_model()
    return env


@pytest.fixture()
def tab(env):
    from lora_trainer.webui.tab import build_blocks

    blocks, controls = build_blocks()
    return blocks, controls


def _load_entry_script():
    # A1111's script loader imports each scripts/*.py by path with the extension root first on sys.path
    spec = importlib.util.spec_from_file_location(
        "lora_trainer_tab.py", ROOT / "scripts" / "lora_trainer_tab.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _values(controls, **changes):
    """The form as the browser sends it: every component's value, some changed."""
    import gradio as gr

    names = [f.name for f in controls.fields]
    # a browser shows an empty gradio Number as 0 and sends 0
    values = [
        0 if isinstance(c, gr.Number) and c.value is None else c.value for c in controls.components
    ]
    for name, value in changes.items():
        values[names.index(name)] = value
    return values


def test_tab_and_settings_register_and_build(env):
    from modules import script_callbacks

    from lora_trainer.webui import settings

    _load_entry_script()
    script_callbacks.ui_settings_callback()
    tabs = script_callbacks.ui_tabs_callback()
    assert not script_callbacks.reported_errors
    (blocks, title, elem_id) = tabs[0]
    assert (title, elem_id) == ("Train LoRA", "lora_trainer")
    config = blocks.get_config_file()  # what gradio sends the browser: fails on a broken layout
    ids = {c["props"].get("elem_id") for c in config["components"]}
    for needed in ("lora_trainer_train", "lora_trainer_stop", "lora_trainer_stop_save", "lora_trainer_gallery",
                   "lora_trainer_loss", "lora_trainer_progress", "lora_trainer_send", "lora_trainer_advanced"):  # fmt: skip
        assert needed in ids
    assert len(blocks.dependencies) >= 17
    for dep in blocks.dependencies:  # page-load events have no target
        assert (dep["targets"] or dep["trigger"] == "load") and (dep["backend_fn"] or dep["js"])
    by_target = {
        blocks.blocks[t[0] if isinstance(t, tuple) else t].elem_id
        for d in blocks.dependencies
        for t in d["targets"]
    }
    assert {"lora_trainer_train", "lora_trainer_stop", "lora_trainer_preset_load"} <= by_target
    for key in (
        settings.OUTPUT_SUBFOLDER,
        settings.EPOCHS_AS_CARDS,
        settings.DEFAULT_PRESET,
        settings.OFFLOAD_CACHED,
    ):
        assert env.shared.opts.data_labels[key].section == ("lora_trainer", "LoRA Trainer")


def test_form_shows_the_loaded_model_and_every_engine_option(tab):
    from lora_trainer.config import OPTION_NAMES
    from lora_trainer.webui.form import NOT_FIELDS

    blocks, controls = tab
    names = {f.name for f in controls.fields}
    assert set(OPTION_NAMES) - NOT_FIELDS <= names  # the Advanced group has all the others
    assert controls.component("resolution").value == "512"  # SD1's native size
    config = blocks.get_config_file()
    values = [
        c["props"].get("value")
        for c in config["components"]
        if c["props"].get("elem_id") == "lora_trainer_checkpoint"
    ]
    assert values == ["tiny-sd1.safetensors [4c9fedc4b7]"]


def test_default_form_is_accepted_as_a_browser_sends_it(tab, tmp_path):
    import gradio as gr

    from lora_trainer.webui.request import prepare_run

    _, controls = tab
    data = make_demo_dataset(tmp_path / "d", count=1)
    values = _values(controls, train_data_dir=str(data))
    options = prepare_run(controls.values_to_request(values)).config
    assert options.unet_lr is None and options.seed is None and options.clip_skip is None
    assert isinstance(controls.component("sample_at_first"), gr.Checkbox)
    assert isinstance(controls.component("max_grad_norm"), gr.Number)
    assert isinstance(controls.component("unet_lr"), gr.Textbox)  # empty must stay "not set"
    values = _values(controls, train_data_dir=str(data), unet_lr="2e-4", clip_skip="2")
    options = prepare_run(controls.values_to_request(values)).config
    assert options.unet_lr == 2e-4 and options.clip_skip == 2


def test_user_errors_show_as_a_message_and_keep_the_queue_free(env, tab):
    from modules import progress

    from lora_trainer.webui import tab_run

    _, controls = tab
    token, _estimate, status = tab_run.validate_for_training(
        controls, *_values(controls, network_dim=0)
    )
    assert token == "" and "network_dim must be a positive whole number" in status
    assert "lora-trainer-error" in status and "Traceback" not in status
    token, _, status = tab_run.validate_for_training(
        controls, *_values(controls, train_data_dir="")
    )
    assert token == "" and "train_data_dir" in status
    assert tab_run.start_training("task(x)", token) == ("",)
    assert not progress.pending_tasks and progress.current_task is None


def test_train_click_runs_a_tiny_training_through_the_gpu_wrapper(env, tab, tmp_path):
    from modules import call_queue, progress

    from lora_trainer.webui import tab_run

    _, controls = tab
    data = make_demo_dataset(tmp_path / "d", count=1)
    values = _values(controls, train_data_dir=str(data), output_name="clicked", resolution="64",
                     max_train_epochs=1, network_dim=4, save_every_n_epochs=0, sample_every_n_epochs=0,
                     enable_bucket=False)  # fmt: skip
    estimate, status = tab_run.check_settings(controls, *values)
    assert "2 steps in 1 epochs" in estimate and "fine" in status
    token, estimate, status = tab_run.validate_for_training(controls, *values)
    assert token and "Waiting for the GPU" in status
    (html,) = tab_run.start_training("task(abc)", token)
    assert "Done: saved" in html and "Time taken" in html  # wrap_gradio_gpu_call's stats
    assert "task(abc)" in progress.finished_tasks and not call_queue.reported_errors
    assert (env.lora_dir / "clicked.safetensors").is_file()
    loss, _gallery, log, _status, prompt, train, _stop_save, stop, grid = tab_run.refresh_view()
    assert len(loss["value"]) == 4  # 2 steps x (raw, moving average)
    assert prompt["value"] == "<lora:clicked:0.8> sks toy"
    assert train["interactive"] and not stop["interactive"] and grid["interactive"]
    assert "Saved" in log["value"]


def test_stop_buttons_when_nothing_runs(env):
    from lora_trainer.webui import tab_run

    assert "Nothing is training" in tab_run.request_stop(True)


def test_dataset_helper_builds_and_checks(env, tmp_path):
    from PIL import Image

    from lora_trainer.webui import tab_dataset

    source = tmp_path / "photos"
    source.mkdir()
    for i in range(3):
        Image.new("RGB", (256, 256), (i * 80, 0, 0)).save(source / f"p{i}.png")
    report, train_dir, reg_dir, trigger = tab_dataset.build_dataset(
        str(source), None, "sks", "dog", 5, "{token} {class}", "", "", ".txt", 4, 1
    )
    assert train_dir == str(env.outputs / "lora-trainer" / "datasets" / "sks" / "img")
    assert (Path(train_dir) / "5_sks dog" / "p0.txt").read_text(
        encoding="utf-8"
    ).strip() == "sks dog"
    assert trigger == "sks dog" and reg_dir == "" and "15 images x repeats" in report
    checked = tab_dataset.check_dataset(train_dir, ".txt", 4, 1, 100)
    assert "No problems found." in checked and "60 steps" in checked and "use 8 repeats" in checked
    failed, *_ = tab_dataset.build_dataset(
        "", None, "sks", "dog", 5, "{token}", "", "", ".txt", 1, 1
    )
    assert failed.startswith("Cannot build the dataset: no source images given")
    assert tab_dataset.check_dataset(str(tmp_path / "nope"), ".txt", 1, 1, None).startswith(
        "Cannot check"
    )


def test_presets_save_load_import_export(env, tab, tmp_path):
    from lora_trainer.webui import tab_presets

    _, controls = tab
    names = [f.name for f in controls.fields]
    message, choices = tab_presets.save_preset(
        controls, "mine", False, *_values(controls, network_dim=32)
    )
    assert "Saved preset 'mine'" in message and "mine" in choices["choices"]
    message, *_ = tab_presets.save_preset(controls, "mine", False, *_values(controls))
    assert "exists" in message
    message, *updates = tab_presets.load_preset(controls, "mine")
    assert updates[names.index("network_dim")]["value"] == 32
    assert "value" not in updates[names.index("train_data_dir")]  # presets leave the dataset alone

    gui = tmp_path / "kohya_gui.json"
    gui.write_text(json.dumps({"LoRA_type": "Standard", "network_dim": 24, "epoch": 6, "lr_warmup": 10,
                               "max_resolution": "768,768", "optimizer": "AdamW", "text_encoder_lr": 0,
                               "unet_lr": 0.0002, "xformers": "xformers", "seed": "123"}))  # fmt: skip
    message, *updates = tab_presets.import_settings(controls, [str(gui)])
    value = lambda name: updates[names.index(name)]["value"]  # noqa: E731
    assert (
        value("network_dim") == 24
        and value("max_train_epochs") == 6
        and value("resolution") == "768,768"
    )
    assert (
        value("lr_warmup_steps") == pytest.approx(0.1) and value("network_train_unet_only") is True
    )
    assert value("seed") == "123" and float(value("unet_lr")) == pytest.approx(2e-4)

    message, path = tab_presets.export_settings(
        controls, *_values(controls, output_name="exp", network_dim=12)
    )
    exported = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    assert exported["network_dim"] == 12 and exported["output_name"] == "exp"
    assert exported["pretrained_model_name_or_path"].endswith("tiny-sd1.safetensors")
    assert (
        exported["output_dir"] == str(env.lora_dir)
        and "device" not in exported
        and "sdxl" not in exported
    )


def test_refresh_model_follows_the_loaded_checkpoint(env, tab):
    from lora_trainer.webui.tab_training import refresh_model_view

    env.shared.sd_model = None
    checkpoint, _arch, resolution, *_ = refresh_model_view()
    assert checkpoint["value"] == "No checkpoint loaded" and resolution["value"] == "512"


def test_default_preset_from_settings_fills_the_form(env):
    from lora_trainer.presets import Preset
    from lora_trainer.webui import settings
    from lora_trainer.webui.presets_store import store
    from lora_trainer.webui.tab import build_blocks

    store().save(
        Preset(
            "house style", {"network_dim": 48, "lr_scheduler": "cosine"}, {"preferred_weight": 0.6}
        )
    )
    env.shared.opts.add_option(settings.DEFAULT_PRESET, env.shared.OptionInfo("house style", ""))
    _, controls = build_blocks()
    assert controls.component("network_dim").value == 48
    assert controls.component("lr_scheduler").value == "cosine"
    assert controls.component("preferred_weight").value == 0.6
    env.shared.opts.data[settings.DEFAULT_PRESET] = "deleted meanwhile"
    _, controls = build_blocks()  # a missing preset leaves the defaults
    assert controls.component("network_dim").value == 16


def _model_load_event(blocks):
    """(fn index, dependency) of the page-load event that shows the loaded checkpoint."""
    (found,) = [
        (i, d)
        for i, d in enumerate(blocks.dependencies)
        if d["trigger"] == "load"
        and "lora_trainer_checkpoint" in [blocks.blocks[o].elem_id for o in d["outputs"]]
    ]
    return found


def test_page_load_shows_the_model_the_webui_loaded_after_building_the_ui(env, monkeypatch):
    # Seen in a real A1111 v1.10.1: it builds the tabs, then loads the model in a thread, so
    # the tab said "No checkpoint loaded" next to a loaded checkpoint until Refresh.
    from lora_trainer.webui.tab import build_blocks

    model = env.shared.sd_model
    env.shared.sd_model = None
    blocks, controls = build_blocks()
    assert controls.component("resolution").value == "512"
    env.shared.sd_model = model
    monkeypatch.setattr(model, "is_sdxl", True, raising=False)  # defaults that differ from SD1's
    index, dep = _model_load_event(blocks)
    names = [blocks.blocks[i].elem_id.removeprefix("lora_trainer_") for i in dep["outputs"]]
    shown = {blocks.blocks[i].elem_id: blocks.blocks[i].value for i in dep["inputs"]}
    shown["lora_trainer_mixed_precision"] = "bf16"  # the user's ui-config.json chose this
    out = dict(zip(names, blocks.fns[index].fn(*shown.values())))
    assert out["checkpoint"]["value"] == "tiny-sd1.safetensors [4c9fedc4b7]"
    assert out["arch"]["value"].startswith("SDXL")
    assert out["resolution"]["value"] == "1024" and out["gradient_checkpointing"]["value"] is True
    assert "value" not in out["mixed_precision"]  # kept


def test_page_load_keeps_what_the_default_preset_set(env, monkeypatch):
    from lora_trainer.presets import Preset
    from lora_trainer.webui import settings
    from lora_trainer.webui.presets_store import store
    from lora_trainer.webui.tab import build_blocks

    store().save(Preset("small", {"resolution": "512"}, {}))
    env.shared.opts.add_option(settings.DEFAULT_PRESET, env.shared.OptionInfo("small", ""))
    blocks, _ = build_blocks()
    monkeypatch.setattr(env.shared.sd_model, "is_sdxl", True, raising=False)
    index, dep = _model_load_event(blocks)
    names = [blocks.blocks[i].elem_id.removeprefix("lora_trainer_") for i in dep["outputs"]]
    out = dict(zip(names, blocks.fns[index].fn(*(blocks.blocks[i].value for i in dep["inputs"]))))
    assert "value" not in out["resolution"] and out["max_bucket_reso"]["value"] == 2048


def test_page_load_shows_the_current_run(env):
    # Seen in a real A1111 v1.10.1: the JS's Refresh click at onUiLoaded comes before gradio
    # listens, so a page opened after (or during) a run showed "Ready" and no grid button.
    from lora_trainer.webui import tab_run
    from lora_trainer.webui.tab import build_blocks

    blocks, _ = build_blocks()
    loads = [(i, d) for i, d in enumerate(blocks.dependencies) if d["trigger"] == "load"]
    runs = [(i, d) for i, d in loads if blocks.fns[i].fn is tab_run.refresh_view]
    assert len(runs) == 1
    index, dep = runs[0]
    assert [blocks.blocks[i].elem_id for i in dep["outputs"]] == [
        "lora_trainer_loss", "lora_trainer_gallery", "lora_trainer_log", "lora_trainer_status",
        "lora_trainer_prompt", "lora_trainer_train", "lora_trainer_stop_save",
        "lora_trainer_stop", "lora_trainer_grid",
    ]  # fmt: skip
    assert not dep["inputs"] and len(blocks.fns[index].fn()) == len(dep["outputs"])
