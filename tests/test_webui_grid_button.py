"""The Train tab's "Render comparison grid" button: train through the tab, then render its grid."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip(
    "gradio", reason="the A1111 profile has gradio 3.41; the Forge profile has none"
)
sys.path.insert(0, str(Path(__file__).resolve().parent / "fake_webui"))

from harness import fresh_webui, live_tiny_model

from lora_trainer.demo import make_demo_dataset

WEIGHTS = ["0.25", "0.5", "0.75", "1"]  # grid.DEFAULT_WEIGHTS without 0


@pytest.fixture()
def env(monkeypatch, tmp_path):
    env = fresh_webui(monkeypatch, tmp_path)
    env.shared.sd_model = live_tiny_model()
    monkeypatch.chdir(tmp_path)  # the WebUI's relative output folders land in its own root
    # the <lora:...> handler, bound to this test's fresh `networks`: generation loads the files
    import extra_networks_lora

    extra_networks_lora.register()
    return env


def _values(controls, **changes):
    """The form as the browser sends it: every component's value, some changed."""
    names = [f.name for f in controls.fields]
    values = [c.value for c in controls.components]
    for name, value in changes.items():
        values[names.index(name)] = value
    return values


def _train_through_the_tab(env, tmp_path, **changes) -> Path:
    from lora_trainer.webui import tab_run
    from lora_trainer.webui.tab import build_blocks

    _, controls = build_blocks()
    data = make_demo_dataset(tmp_path / "d", count=1)  # 1 image x 2 repeats: 1 step at batch 2
    form = dict(train_data_dir=str(data), output_name="toy", resolution="64", network_dim=4,
                max_train_epochs=3, save_every_n_epochs=1, train_batch_size=2, enable_bucket=False)  # fmt: skip
    values = _values(controls, **{**form, **changes})
    token, _, status = tab_run.validate_for_training(controls, *values)
    assert token, status
    (html,) = tab_run.start_training("task(train)", token)
    assert "Done: saved" in html
    *_, grid_button = tab_run.refresh_view()
    assert grid_button["interactive"]
    return env.lora_dir / "toy.safetensors"


def _record_loaded_files(env):
    """The files the Lora extension loaded for each process_images call, with te/unet weights."""
    from modules import processing

    loaded = []

    def record(p):
        loaded.append(
            [
                (Path(n.network_on_disk.filename), n.te_multiplier, n.unet_multiplier)
                for n in env.networks.loaded_networks
            ]
        )

    processing.on_sample = record
    return loaded


@pytest.mark.parametrize("as_cards", [False, True], ids=["work-folder", "epochs-as-cards"])
def test_the_grid_button_renders_epochs_by_weights(env, tmp_path, as_cards):
    from modules import images, processing

    from lora_trainer.webui import settings, tab_run

    if as_cards:
        env.shared.opts.add_option(settings.EPOCHS_AS_CARDS, env.shared.OptionInfo(True, ""))
    final = _train_through_the_tab(
        env, tmp_path, sample_prompt="a sks toy --w 64 --h 64 --s 3 --l 6 --d 5"
    )
    work = next((env.outputs / "lora-trainer" / "toy").iterdir())
    folder = env.lora_dir / "toy_epochs" if as_cards else work
    epochs = [folder / f"toy-00000{e}.safetensors" for e in (1, 2)]
    assert all(p.is_file() for p in epochs)
    assert (env.lora_dir in epochs[0].parents) == as_cards
    processing.calls.clear()
    loaded = _record_loaded_files(env)

    gallery, message = tab_run.render_grid()

    calls = processing.calls
    expected = ["a sks toy"] + [
        f"a sks toy <lora:{stem}:{w}>"
        for stem in ("toy-000001", "toy-000002", "toy")
        for w in WEIGHTS
    ]
    assert [c["prompt"] for c in calls] == expected  # weight 0 is one image for all 3 rows
    settings_used = {
        (c["seed"], c["steps"], c["cfg_scale"], c["sampler_name"], c["width"], c["height"])
        for c in calls
    }
    assert settings_used == {(5, 3, 6.0, "Euler a", 64, 64)}  # the run's sample and sampler
    # every tag loads the right file through the Lora extension's own name lookup
    files = [epochs[0]] * 4 + [epochs[1]] * 4 + [final] * 4
    assert loaded == [[]] + [[(f, float(w), float(w))] for f, w in zip(files, WEIGHTS * 3)]
    assert env.networks.not_found_messages == []

    shown = gallery["value"]
    assert len(shown) == 1 + 15  # the grid, then 3 epochs x 5 weights
    assert shown[0].size == (72 + 5 * 64, 84 + 3 * 64)
    assert all(im.size == (64, 64) for im in shown[1:])
    assert shown[1] is shown[6] is shown[11]  # the shared weight-0 image
    assert "Grid of toy: 15 images, seed 5." in message
    assert "Euler a adds fresh noise at every step" in message
    assert "13 images were generated for 15 cells" in message
    grids = [s for s in images.saved if s["grid"]]
    assert len(grids) == 1 and (tmp_path / grids[0]["path"]).is_file()  # relative to the WebUI
    info = Image.open(grids[0]["path"]).info["parameters"]
    assert "Script: LoRA comparison grid" in info and "LoRA grid Y type: Epoch" in info


def test_the_grid_button_without_sample_prompts_uses_the_activation_text(env, tmp_path):
    from modules import processing

    from lora_trainer.webui import tab_run

    _train_through_the_tab(
        env, tmp_path, max_train_epochs=1, sample_every_n_epochs=0, sample_sampler="ddim", seed=11
    )
    processing.calls.clear()
    gallery, message = tab_run.render_grid()
    calls = processing.calls
    assert [c["prompt"] for c in calls] == ["sks toy"] + [
        f"sks toy <lora:toy:{w}>" for w in WEIGHTS
    ]
    # the training size from ss_resolution, the run's seed and sampler (DDIM: no note)
    assert {(c["width"], c["height"], c["seed"], c["sampler_name"]) for c in calls} == {
        (64, 64, 11, "DDIM")
    }
    assert len(gallery["value"]) == 1 + 5 and "Grid of toy: 5 images, seed 11." in message
    assert "fresh noise" not in message


def test_the_grid_button_before_training_and_after_the_file_is_gone(env):
    from lora_trainer.webui import tab_run
    from lora_trainer.webui.runner import RUNNER

    gallery, message = tab_run.render_grid()
    assert "Train a LoRA first" in message and "lora-trainer-error" in message
    RUNNER.board.update(result={"saved": True, "lora_file": str(env.lora_dir / "gone.safetensors")})
    gallery, message = tab_run.render_grid()
    assert "gone.safetensors is gone" in message and "value" not in gallery
