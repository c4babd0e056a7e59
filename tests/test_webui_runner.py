"""Training on the WebUI's loaded model: files where users look, the live model untouched in every case."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "fake_webui"))

from fake_sd_model import has_peft_layers, live_record
from harness import fresh_webui, live_tiny_model

from lora_trainer.demo import make_demo_dataset
from lora_trainer.lora.kohya_file import load_kohya_lora


@pytest.fixture()
def env(monkeypatch, tmp_path):
    env = fresh_webui(monkeypatch, tmp_path)
    env.shared.sd_model = live_tiny_model()
    env.data = make_demo_dataset(tmp_path / "dataset", count=1)  # img/2_sks toy: 2 steps per epoch
    return env


def _options(env, **extra):
    return {
        "output_name": "toy",
        "train_data_dir": str(env.data),
        "resolution": "64",
        "network_dim": 4,
        "max_train_epochs": 2,
        "save_every_n_epochs": 1,
        "enable_bucket": False,
        "seed": 7,
        **extra,
    }


def _request(env, sample: str = "", **extra):
    from lora_trainer.webui.request import TrainRequest

    return TrainRequest(options=_options(env, **extra), sample_prompt=sample)


def _live_record(model):
    """What must not change: state-dict bytes/devices/dtypes, module types, hooks."""
    return live_record(model)


def _no_peft(model) -> bool:
    return not has_peft_layers(model)


def _wait_idle(runner, timeout: float = 120.0):
    assert runner.join(timeout), "the run did not finish"
    return runner.board.snapshot()


def test_train_under_the_gpu_queue_lands_in_the_lora_folder(env, monkeypatch):
    from modules import call_queue, processing, progress

    from lora_trainer.train import loop
    from lora_trainer.webui.output import CARD_KEY
    from lora_trainer.webui.request import prepare_run
    from lora_trainer.webui.runner import RUNNER

    model = env.shared.sd_model
    before = _live_record(model)
    seen = {"locked": [], "textinfo": [], "job_no": []}
    original = loop.TrainLoop._optimizer_step

    def watched(self):
        seen["locked"].append(call_queue.queue_lock._lock.locked())
        return original(self)

    monkeypatch.setattr(loop.TrainLoop, "_optimizer_step", watched)
    processing.StableDiffusionProcessing.cached_c = ["stale", "cond"]
    state = env.shared.state
    original_begin = state.begin

    prepared = prepare_run(_request(env, sample="sks toy --w 64 --h 64 --s 2 --d 5"))
    assert (prepared.total_steps, prepared.total_epochs, prepared.activation_text) == (
        4,
        2,
        "sks toy",
    )
    task = RUNNER.start_in_thread(prepared)
    status = _wait_idle(RUNNER)

    assert status.phase == "done", status.error
    assert seen["locked"] == [True] * 4  # every step ran holding the WebUI's queue lock
    assert task in progress.finished_tasks and progress.current_task is None
    assert state.begin == original_begin and state.job == ""
    lora_file = env.lora_dir / "toy.safetensors"
    lora = load_kohya_lora(lora_file)
    assert (
        lora.metadata["ss_steps"] == "4"
        and lora.metadata["ss_sd_model_name"] == "tiny-sd1.safetensors"
    )
    assert (
        lora.metadata["ss_sd_model_hash"] == "bf110a88" and lora.metadata["ss_output_name"] == "toy"
    )
    assert (env.lora_dir / "toy.png").is_file()
    assert not list(
        env.lora_dir.rglob("*.txt")
    )  # a .txt beside a LoRA would become its description
    card = json.loads((env.lora_dir / "toy.json").read_text(encoding="utf-8"))
    assert card["activation text"] == "sks toy" and card["preferred weight"] == 0.8
    assert card["sd version"] == "SD1" and "rank 4" in card["description"]
    epochs = [Path(p) for p in card[CARD_KEY]["epochs"]]
    assert [p.name for p in epochs] == ["toy-000001.safetensors"] and epochs[0].is_file()
    assert env.lora_dir not in epochs[0].parents  # not a card of its own unless asked
    assert status.samples and status.samples[-1][1].startswith("epoch 2")
    assert [s for s, _, _ in status.losses] == [1, 2, 3, 4]
    assert status.result["prompt"] == "<lora:toy:0.8> sks toy"
    assert "toy" in env.networks.available_networks  # the Lora list knows it at once
    assert processing.StableDiffusionProcessing.cached_c == [None, None]
    assert _live_record(model) == before and _no_peft(model)


def test_progress_reaches_the_webui_state(env, monkeypatch):
    from lora_trainer.webui import progress_bridge
    from lora_trainer.webui.request import prepare_run
    from lora_trainer.webui.runner import RUNNER

    state = env.shared.state
    seen = []
    original = progress_bridge.step_text

    def recording(event):
        text = original(event)
        seen.append((state.job_count, event.step, text))
        return text

    monkeypatch.setattr(progress_bridge, "step_text", recording)
    prepared = prepare_run(_request(env, save_every_n_epochs=None, max_train_epochs=1))
    RUNNER.claim(prepared, "tab")
    RUNNER.execute(prepared)
    assert [s for _, s, _ in seen] == [1, 2]
    assert all(count == 2 for count, _, _ in seen)
    assert state.job_no == 2 and "step 2/2" in state.textinfo and "loss" in state.textinfo
    assert "\n" not in state.textinfo  # the WebUI's bar shows textinfo only on one line


def test_webui_interrupt_stops_and_saves(env, monkeypatch):
    from lora_trainer.webui import progress_bridge
    from lora_trainer.webui.request import prepare_run
    from lora_trainer.webui.runner import RUNNER

    model = env.shared.sd_model
    before = _live_record(model)
    original = progress_bridge.step_text

    def press_interrupt_at_step_2(event):
        if event.step == 2:
            env.shared.state.interrupt()  # the WebUI's Interrupt button
        return original(event)

    monkeypatch.setattr(progress_bridge, "step_text", press_interrupt_at_step_2)
    prepared = prepare_run(
        _request(env, max_train_epochs=None, max_train_steps=6, save_every_n_epochs=None)
    )
    RUNNER.claim(prepared, "tab")
    outcome = RUNNER.execute(prepared)
    assert outcome["stopped"] and outcome["saved"] and outcome["steps"] == 2
    assert load_kohya_lora(env.lora_dir / "toy.safetensors").metadata["ss_steps"] == "2"
    assert RUNNER.board.snapshot().phase == "stopped"
    assert _live_record(model) == before and _no_peft(model)


def test_stop_without_saving_leaves_nothing(env, monkeypatch):
    from lora_trainer.webui import progress_bridge
    from lora_trainer.webui.request import prepare_run
    from lora_trainer.webui.runner import RUNNER

    original = progress_bridge.step_text

    def stop_at_step_1(event):
        RUNNER.request_stop(save=False)
        return original(event)

    monkeypatch.setattr(progress_bridge, "step_text", stop_at_step_1)
    prepared = prepare_run(_request(env, save_every_n_epochs=None))
    RUNNER.claim(prepared, "tab")
    outcome = RUNNER.execute(prepared)
    assert outcome == {"stopped": True, "saved": False, "steps": 1}
    assert list(env.lora_dir.iterdir()) == []
    assert not prepared.output.work_dir.exists()  # an empty run folder is tidied away


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RuntimeError("boom"), "RuntimeError: boom"),
        (
            torch.cuda.OutOfMemoryError("CUDA out of memory"),
            "ran out of memory. Turn on gradient checkpointing",
        ),
    ],
)
def test_error_mid_run_leaves_the_live_model_exactly_as_before(env, monkeypatch, error, expected):
    from lora_trainer.train import loop
    from lora_trainer.webui.request import prepare_run
    from lora_trainer.webui.runner import RUNNER

    model = env.shared.sd_model
    before = _live_record(model)
    original = loop.TrainLoop._optimizer_step
    calls = []

    def failing(self):
        calls.append(1)
        if len(calls) == 2:
            raise error
        return original(self)

    monkeypatch.setattr(loop.TrainLoop, "_optimizer_step", failing)
    prepared = prepare_run(_request(env))
    RUNNER.claim(prepared, "tab")
    outcome = RUNNER.execute(prepared)
    status = RUNNER.board.snapshot()
    assert (
        status.phase == "failed" and expected in status.error and outcome["error"] == status.error
    )
    assert list(env.lora_dir.iterdir()) == []
    assert _live_record(model) == before and _no_peft(model)
    assert not RUNNER.active  # the slot is free for the next run


def test_existing_name_needs_consent_and_epochs_can_be_cards(env, monkeypatch):
    from lora_trainer.errors import ConfigError
    from lora_trainer.webui import settings
    from lora_trainer.webui.request import prepare_run
    from lora_trainer.webui.runner import RUNNER

    (env.lora_dir / "sub").mkdir()
    (env.lora_dir / "sub" / "taken.safetensors").write_bytes(b"x")
    with pytest.raises(ConfigError, match="ambiguous") as err:
        prepare_run(_request(env, output_name="taken"))
    assert "taken_2" in err.value.message

    (env.lora_dir / "toy.safetensors").write_bytes(b"old")
    with pytest.raises(ConfigError, match="already exists") as err:
        prepare_run(_request(env))
    assert "toy_2" in err.value.message and "Replace existing files" in err.value.message

    env.shared.opts.add_option(settings.EPOCHS_AS_CARDS, env.shared.OptionInfo(True, ""))
    request = _request(env)
    request.overwrite = True
    prepared = prepare_run(request)
    RUNNER.claim(prepared, "tab")
    outcome = RUNNER.execute(prepared)
    assert outcome["saved"], RUNNER.board.snapshot().error
    assert (env.lora_dir / "toy.safetensors").read_bytes() != b"old"
    assert (env.lora_dir / "toy_epochs" / "toy-000001.safetensors").is_file()
    assert "toy-000001" in env.networks.available_networks


def test_checks_before_the_queue(env):
    from lora_trainer.errors import UserError
    from lora_trainer.webui.request import prepare_run

    with pytest.raises(UserError, match="network_dim"):
        prepare_run(_request(env, network_dim=0))
    with pytest.raises(UserError, match="does not exist"):
        prepare_run(_request(env, train_data_dir=str(env.root / "missing")))
    with pytest.raises(UserError, match="output name is empty"):
        prepare_run(_request(env, output_name=" "))
    with pytest.raises(UserError, match="sdxl"):
        prepare_run(_request(env, sdxl=True))
    with pytest.raises(UserError, match="outside the Lora folder"):
        from lora_trainer.webui.request import TrainRequest

        prepare_run(TrainRequest(options=_options(env), subfolder="../elsewhere"))
    assert not env.outputs.exists()  # nothing was written by the checks


def test_reset_prompt_cache_makes_the_next_generation_encode_again(env):
    """A1111 keeps the last prompts' conditioning in class-level lists across generations
    (opts.persistent_cond_cache); a retrained LoRA of the same name would reuse stale conds."""
    from modules import processing

    from lora_trainer.webui.finish import reset_prompt_cache

    def generate():
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt="sks toy", negative_prompt="blurry", steps=2, width=64, height=64,
            sampler_name="Euler", enable_hr=True, hr_prompt="sks toy, detailed",
            do_not_save_samples=True, do_not_save_grid=True,
        )  # fmt: skip
        processing.process_images(p)
        p.close()  # what txt2img does after each generation
        return p

    assert env.shared.opts.persistent_cond_cache
    processing.cond_calls.clear()
    first = generate()
    encoded = len(processing.cond_calls)
    assert encoded == 4  # negative, prompt, and the hires pass's own two (other steps)
    generate()
    assert len(processing.cond_calls) == encoded  # same prompts: every cond from the cache

    reset_prompt_cache()

    caches = {
        "cached_c": processing.StableDiffusionProcessing,
        "cached_uc": processing.StableDiffusionProcessing,
        "cached_hr_c": processing.StableDiffusionProcessingTxt2Img,
        "cached_hr_uc": processing.StableDiffusionProcessingTxt2Img,
    }
    for name, cls in caches.items():
        assert getattr(cls, name) == [None, None] and getattr(cls, name) is not getattr(first, name)
    generate()
    assert len(processing.cond_calls) == 2 * encoded  # encoded again after the reset


def test_offload_after_caching_before_the_first_step_and_put_back(env, monkeypatch, caplog):
    """The Settings option (on by default) moves the VAE out once the engine reports its latents
    cached, before step 1; after the run the live model is back, without the guard's help."""
    from lora_trainer.train import data_setup, loop
    from lora_trainer.train.events import CachesReadyEvent
    from lora_trainer.webui import offload, progress_bridge
    from lora_trainer.webui.request import prepare_run
    from lora_trainer.webui.runner import RUNNER

    model = env.shared.sd_model
    before = _live_record(model)
    timeline, reports = [], []
    _record_calls(monkeypatch, data_setup, "_cache_latents", timeline, "latents cached")
    _record_calls(monkeypatch, loop.TrainLoop, "_optimizer_step", timeline, "step")
    _record_calls(monkeypatch, offload, "relocate_shared", timeline, "offload")
    # no GPU here: choose the parts as for a CUDA run, and stand "RAM" in with float64 copies
    choose = offload.parts_to_offload
    monkeypatch.setattr(
        offload,
        "parts_to_offload",
        lambda c, b, d, caches=None: choose(c, b, torch.device("cuda"), caches),
    )
    monkeypatch.setattr(offload, "to_ram", lambda t: t.to(torch.float64))
    seen_vae = []
    original_call = progress_bridge.ProgressBridge.__call__

    def call(self, event):
        if isinstance(event, CachesReadyEvent):
            reports.append(event)
        elif timeline[-1:] == ["step"] and not seen_vae:  # while training: the VAE is away
            seen_vae.append(model.first_stage_model.encoder.conv_in.weight.dtype)
        return original_call(self, event)

    monkeypatch.setattr(progress_bridge.ProgressBridge, "__call__", call)
    prepared = prepare_run(_request(env, cache_latents=True, save_every_n_epochs=None))
    RUNNER.claim(prepared, "tab")
    with caplog.at_level("WARNING"):
        outcome = RUNNER.execute(prepared)

    assert outcome["saved"], RUNNER.board.snapshot().error
    assert timeline[:3] == ["latents cached", "offload", "step"] and timeline.count("offload") == 1
    assert reports == [CachesReadyEvent(latents=1, text_encoder_outputs=None)]
    assert seen_vae == [torch.float64]
    assert not [r for r in caplog.records if "put the WebUI's model back" in r.getMessage()]
    assert _live_record(model) == before and _no_peft(model)


def _record_calls(monkeypatch, owner, name: str, timeline: list, label: str) -> None:
    original = getattr(owner, name)

    def recorded(*args, **kwargs):
        result = original(*args, **kwargs)
        timeline.append(label)
        return result

    monkeypatch.setattr(owner, name, recorded)


def test_no_offload_without_caches_or_with_the_setting_off(env, monkeypatch):
    from lora_trainer.webui import offload, settings
    from lora_trainer.webui.request import prepare_run
    from lora_trainer.webui.runner import RUNNER

    calls = []
    monkeypatch.setattr(offload, "relocate_shared", lambda *a: calls.append(a) or 0)
    choose = offload.parts_to_offload
    monkeypatch.setattr(
        offload,
        "parts_to_offload",
        lambda c, b, d, caches=None: choose(c, b, torch.device("cuda"), caches),
    )
    for run, options in enumerate(({}, {"cache_latents": True})):
        if options:
            env.shared.opts.add_option(settings.OFFLOAD_CACHED, env.shared.OptionInfo(False, ""))
        extra = {"save_every_n_epochs": None, "max_train_epochs": 1, **options}
        prepared = prepare_run(_request(env, output_name=f"toy{run}", **extra))
        RUNNER.claim(prepared, "tab")
        assert RUNNER.execute(prepared)["saved"]
    assert calls == []


def test_max_norm_numbers_reach_the_progress_text(env, monkeypatch):
    from lora_trainer.webui import progress_bridge
    from lora_trainer.webui.request import prepare_run
    from lora_trainer.webui.runner import RUNNER

    events, texts = [], []
    original = progress_bridge.step_text

    def recording(event):
        events.append(event)
        texts.append(original(event))
        return texts[-1]

    monkeypatch.setattr(progress_bridge, "step_text", recording)
    # a tiny cap and a big learning rate: kohya's max-norm has to scale modules down
    options = {"scale_weight_norms": 1e-4, "learning_rate": 0.05, "save_every_n_epochs": None}
    prepared = prepare_run(_request(env, max_train_epochs=1, **options))
    RUNNER.claim(prepared, "tab")
    assert RUNNER.execute(prepared)["saved"]

    extras = events[-1].extras
    assert set(extras) == {"max_norm/keys_scaled", "norm/avg_key_norm", "max_norm/max_key_norm"}
    assert extras["max_norm/keys_scaled"] > 0
    assert 0 < extras["norm/avg_key_norm"] <= extras["max_norm/max_key_norm"] <= 1e-4 * 1.001
    from lora_trainer.webui.run_status import TRAINING, status_json
    from lora_trainer.webui.tab_run import status_html

    status = RUNNER.board.snapshot()
    assert status.extras == extras and status_json(status)["extras"] == extras
    status.phase = TRAINING  # the tab's running view shows them too
    shown = f"Keys scaled {int(extras['max_norm/keys_scaled'])}, avg key norm"
    assert shown in status_html(status)
    # the WebUI's bar gets one short line; it adds its own percentage and ETA
    assert texts[-1] == f"LoRA step {events[-1].step}/{events[-1].total_steps}, loss " + (
        f"{events[-1].avg_loss:.4f}"
    )
    assert "\n" not in env.shared.state.textinfo
