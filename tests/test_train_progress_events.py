"""The engine's progress events: caches ready before the first step, per-step extras, the console line."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from train_helpers import tiny_config

from lora_trainer.demo import make_demo_dataset
from lora_trainer.train.events import CachesReadyEvent, StepEvent
from lora_trainer.train.job import run_training
from lora_trainer.train.progress import ConsoleProgress, extras_text


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("data"), count=3)


def _train(dataset_dir: Path, out: Path, **options) -> list:
    config = tiny_config(dataset_dir, out, {"max_train_steps": 2, "seed": 1}, **options)
    events: list = []
    run_training(config, emit=events.append)
    return events


def _kinds(events: list) -> list[str]:
    return [type(e).__name__ for e in events if isinstance(e, (CachesReadyEvent, StepEvent))]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, CachesReadyEvent()),
        ({"cache_latents": True}, CachesReadyEvent(latents=3)),
        (
            {"cache_text_encoder_outputs": True, "network_train_unet_only": True},
            CachesReadyEvent(text_encoder_outputs=3),  # one caption per demo image
        ),
    ],
)
def test_caches_ready_once_before_the_first_step(dataset_dir, tmp_path, options, expected):
    events = _train(dataset_dir, tmp_path, **options)
    assert _kinds(events) == ["CachesReadyEvent", "StepEvent", "StepEvent"]
    (ready,) = [e for e in events if isinstance(e, CachesReadyEvent)]
    assert ready == expected
    assert ready.cached == tuple(
        n for n in ("latents", "text_encoder_outputs") if getattr(expected, n)
    )


def test_step_extras_carry_kohyas_max_norm_numbers(dataset_dir, tmp_path):
    plain = [e for e in _train(dataset_dir, tmp_path / "a") if isinstance(e, StepEvent)]
    assert all(e.extras == {} for e in plain)
    capped = _train(dataset_dir, tmp_path / "b", scale_weight_norms=1e-4, learning_rate=0.05)
    steps = [e for e in capped if isinstance(e, StepEvent)]
    for event in steps:
        extras = event.extras
        assert list(extras) == [
            "max_norm/keys_scaled",
            "norm/avg_key_norm",
            "max_norm/max_key_norm",
        ]
        assert extras["max_norm/keys_scaled"] >= 1  # the tiny cap scales modules at every step
        assert 0 < extras["norm/avg_key_norm"] <= extras["max_norm/max_key_norm"] <= 1e-4 * 1.001


def _step(**extras) -> StepEvent:
    return StepEvent(3, 10, 1, 2, 0.1234, 0.2345, {"unet": 1e-4}, 3.0, 7.0, extras=extras)


def test_extras_text_is_compact_and_ordered():
    extras = {
        "norm/avg_key_norm": 0.0123456,
        "max_norm/max_key_norm": 0.5,
        "max_norm/keys_scaled": 3.0,
    }
    assert extras_text(extras) == "keys scaled 3, avg key norm 0.01235, max key norm 0.5"
    assert extras_text({}) == ""
    assert extras_text({"other": 2.5}) == "other 2.5"


def test_console_line_shows_the_extras():
    stream = io.StringIO()
    progress = ConsoleProgress(stream)
    progress(_step(**{"max_norm/keys_scaled": 3.0, "norm/avg_key_norm": 0.25}))
    progress.close()
    line = stream.getvalue()
    assert "loss=0.1234" in line and "keys scaled=3" in line and "avg key norm=0.25" in line
    stream = io.StringIO()
    progress = ConsoleProgress(stream)
    progress(_step())
    progress.close()
    assert "loss=0.1234" in stream.getvalue() and "scaled" not in stream.getvalue()
