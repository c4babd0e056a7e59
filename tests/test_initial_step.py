"""kohya's initial_epoch / initial_step / skip_until_initial_step."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import tiny_config

from lora_trainer.config import TrainConfig
from lora_trainer.dataset import image_dataset
from lora_trainer.demo import make_demo_dataset
from lora_trainer.errors import ConfigError
from lora_trainer.lora.kohya_file import load_kohya_lora
from lora_trainer.train.events import StepEvent
from lora_trainer.train.job import prepare, run_training
from lora_trainer.train.plan import StepPlan
from lora_trainer.train.start_position import start_position

# 4 images x 2 repeats, batch 1: 8 batches an epoch


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("data"), count=4)


def _config(dataset_dir: Path, out: Path, **options) -> TrainConfig:
    defaults = {
        "max_train_steps": 12,
        "seed": 4,
        "lr_scheduler": "linear",
        "token_warmup_step": 20,  # captions depend on the step counter
    }
    return tiny_config(dataset_dir, out, defaults, **options)


class Recorder:
    """Every sample loaded (index, clock epoch, clock step) and every step event."""

    def __init__(self, monkeypatch) -> None:
        self.loads: list[tuple[int, int, int]] = []
        self.steps: list[StepEvent] = []
        original = image_dataset.ImageCaptionDataset.__getitem__

        def recording(dataset, index):
            self.loads.append((index, dataset.clock.epoch, dataset.clock.step))
            return original(dataset, index)

        monkeypatch.setattr(image_dataset.ImageCaptionDataset, "__getitem__", recording)

    def __call__(self, event) -> None:
        if isinstance(event, StepEvent):
            self.steps.append(event)

    def run(self, config: TrainConfig):
        self.loads.clear()
        self.steps.clear()
        return run_training(config, emit=self)


def test_skip_until_initial_step_trains_the_data_an_unbroken_run_trains_next(
    dataset_dir, tmp_path, monkeypatch
):
    record = Recorder(monkeypatch)
    record.run(_config(dataset_dir, tmp_path / "unbroken", max_data_loader_n_workers=0))
    unbroken_loads, unbroken_lrs = list(record.loads), [e.lrs for e in record.steps]

    config = _config(
        dataset_dir, tmp_path / "skip", initial_step=10, skip_until_initial_step=True,
        save_every_n_steps=11,
    )  # fmt: skip
    result = record.run(config)
    assert [(e.step, e.epoch) for e in record.steps] == [(11, 2), (12, 2)]
    # the same samples under the same clock as the unbroken run's steps 11 and 12
    assert record.loads == unbroken_loads[10:]
    # kohya: the lr schedule is not advanced (no state to take it from)
    assert [e.lrs for e in record.steps] == unbroken_lrs[:2]
    assert (tmp_path / "skip" / "t-step00000011.safetensors").is_file()
    assert load_kohya_lora(result.output_path).metadata["ss_steps"] == "12"
    assert result.steps == 12 and len(result.losses) == 2


def test_initial_epoch_without_skipping_only_renumbers_the_epochs(
    dataset_dir, tmp_path, monkeypatch
):
    record = Recorder(monkeypatch)
    config = _config(
        dataset_dir, tmp_path, max_train_epochs=3, initial_epoch=2, save_every_n_epochs=1
    )
    result = record.run(config)
    # kohya: epochs 2 and 3 trained in full, the step counter from 0
    assert [e.step for e in record.steps] == list(range(1, 17))
    assert {e.epoch for e in record.steps[:8]} == {2} and {e.epoch for e in record.steps[8:]} == {3}
    assert all(e.total_steps == 16 for e in record.steps)
    assert [clock for _, clock, _ in record.loads] == [2] * 8 + [3] * 8
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [
        "t-000002.safetensors", "t.safetensors",
    ]  # fmt: skip
    assert load_kohya_lora(result.output_path).metadata["ss_steps"] == "16"


def test_skip_with_gradient_accumulation_skips_whole_steps(dataset_dir, tmp_path, monkeypatch):
    # 8 batches, accumulation 2: 4 steps an epoch; step 5 is one step into epoch 2
    # (kohya 48d368fa would skip 2 epochs here: sd-scripts#2407)
    record = Recorder(monkeypatch)
    options = {"gradient_accumulation_steps": 2, "max_train_steps": 8}
    record.run(_config(dataset_dir, tmp_path / "a", max_data_loader_n_workers=0, **options))
    unbroken = list(record.loads)
    config = _config(
        dataset_dir, tmp_path / "b", initial_step=5, skip_until_initial_step=True, **options
    )
    record.run(config)
    assert [(e.step, e.epoch) for e in record.steps] == [(6, 2), (7, 2), (8, 2)]
    assert record.loads == unbroken[10:]


def test_start_position_arithmetic():
    plan = StepPlan(num_samples=10, batches_per_epoch=10, steps_per_epoch=5, total_steps=20,
                    total_epochs=4)  # fmt: skip

    def position(**options):
        return start_position(TrainConfig(gradient_accumulation_steps=2, **options), plan)

    assert position() is None and position(initial_step=0) is None
    assert position(initial_epoch=1) is None
    p = position(initial_epoch=3)  # (3 - 1) x 5 steps
    assert (p.initial_step, p.epoch, p.step, p.skip_batches, p.last_step) == (10, 3, 0, 0, 10)
    p = position(initial_step=12, skip_until_initial_step=True)
    assert (p.epoch, p.step, p.skip_batches, p.last_step) == (3, 12, 4, 20)
    p = position(initial_step=3)  # inside the first epoch: nothing changes but the check
    assert (p.epoch, p.step, p.last_step) == (1, 0, 20)
    with pytest.raises(ConfigError, match="initial_step 20 is not before the end of training"):
        position(initial_step=20)
    with pytest.raises(ConfigError, match=r"initial_epoch 5 \(step 20\)"):
        position(initial_epoch=5, initial_step=None)


def test_bad_initial_values_are_refused_before_training(dataset_dir, tmp_path):
    with pytest.raises(ConfigError, match="initial_epoch must be at least 1"):
        _config(dataset_dir, tmp_path, initial_epoch=0)
    with pytest.raises(ConfigError, match="initial_step must be at least 0"):
        _config(dataset_dir, tmp_path, initial_step=-1)
    with pytest.raises(ConfigError, match="cannot be used with resume"):
        _config(dataset_dir, tmp_path, initial_step=3, resume=str(tmp_path))
    with pytest.raises(ConfigError, match="not before the end of training"):
        prepare(_config(dataset_dir, tmp_path, initial_step=12))
