"""save_state / resume: a run stopped and resumed ends bit for bit where an unbroken run ends."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from train_helpers import tiny_config

from lora_trainer.config import TrainConfig
from lora_trainer.demo import make_demo_dataset
from lora_trainer.errors import ConfigError
from lora_trainer.lora.kohya_file import load_kohya_lora
from lora_trainer.train.events import StepEvent, StopSignal
from lora_trainer.train.job import run_training

# 4 images x 2 repeats, batch 1: 8 steps per epoch; 10 steps cross into epoch 2
STEPS = 10


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("data"), count=4)


def _config(dataset_dir: Path, out: Path, **options) -> TrainConfig:
    defaults = {
        "max_train_steps": STEPS,
        "seed": 3,
        "learning_rate": 1e-3,
        "lr_scheduler": "cosine",
        "network_dropout": 0.1,  # LoRA dropout draws from torch's global generator
    }
    return tiny_config(dataset_dir, out, defaults, **options)


@pytest.fixture(scope="module")
def unbroken(dataset_dir, tmp_path_factory):
    """The reference: one run of STEPS steps, with states saved along the way."""
    out = tmp_path_factory.mktemp("unbroken")
    config = _config(dataset_dir, out, save_state=True, save_every_n_steps=4, save_every_n_epochs=1)
    result = run_training(config)
    return out, result, load_kohya_lora(result.output_path).tensors


def _assert_same(tensors: dict, path: Path) -> None:
    other = load_kohya_lora(path).tensors
    assert tensors.keys() == other.keys()
    different = [k for k in tensors if not torch.equal(tensors[k], other[k])]
    assert not different, different[:3]


def test_stopped_mid_epoch_and_resumed_equals_unbroken(dataset_dir, unbroken, tmp_path):
    _, reference, tensors = unbroken
    stop = StopSignal()

    def emit(event):
        if isinstance(event, StepEvent) and event.step == 3:
            stop.request(save=True)

    first = run_training(
        _config(dataset_dir, tmp_path, save_state_on_train_end=True), emit=emit, stop=stop
    )
    assert first.stopped and first.steps == 3
    state = tmp_path / "t-state"
    assert json.loads((state / "train_state.json").read_text())["current_step"] == 3
    steps = []
    resumed = run_training(
        _config(dataset_dir, tmp_path, resume=str(state)),
        emit=lambda e: steps.append(e.step) if isinstance(e, StepEvent) else None,
    )
    assert steps == list(range(4, STEPS + 1)) and resumed.steps == STEPS
    assert first.losses + resumed.losses == reference.losses
    _assert_same(tensors, resumed.output_path)
    assert load_kohya_lora(resumed.output_path).metadata["ss_steps"] == str(STEPS)


@pytest.mark.parametrize(
    "state_name", ["t-step00000004-state", "t-step00000008-state", "t-000001-state"]
)
def test_resume_from_step_and_epoch_states(dataset_dir, unbroken, tmp_path, state_name):
    # step 4: mid-epoch; step 8: the epoch's last step, its end work not yet done; epoch 1: done
    out, reference, tensors = unbroken
    state = tmp_path / state_name
    shutil.copytree(out / state_name, state)
    resumed = run_training(_config(dataset_dir, tmp_path, resume=str(state)))
    _assert_same(tensors, resumed.output_path)
    done = STEPS - len(resumed.losses)
    assert resumed.losses == reference.losses[done:]


def test_state_folder_contents_and_names(unbroken):
    out, _, _ = unbroken
    states = sorted(p.name for p in out.iterdir() if p.is_dir())
    # kohya: save_state also saves the last state (<name>-state) at the end
    assert states == ["t-000001-state", "t-state", "t-step00000004-state", "t-step00000008-state"]
    files = sorted(p.name for p in out.glob("*.safetensors"))
    assert files == [
        "t-000001.safetensors", "t-step00000004.safetensors", "t-step00000008.safetensors",
        "t.safetensors",
    ]  # fmt: skip
    assert not list(out.glob(".*"))  # no temporary folder left behind
    state = out / "t-step00000004-state"
    assert sorted(p.name for p in state.iterdir()) == [
        "lora.safetensors", "optimizer.pt", "rng.pt", "scheduler.pt", "train_state.json",
    ]  # fmt: skip
    facts = json.loads((state / "train_state.json").read_text())
    assert (facts["current_epoch"], facts["current_step"], facts["batches_used"]) == (1, 4, 4)
    assert facts["seed"] == 3 and len(facts["epoch_order"]) == 8
    epoch_state = json.loads((out / "t-000001-state" / "train_state.json").read_text())
    assert epoch_state["epoch_done"] and epoch_state["step"] == 8
    meta = load_kohya_lora(out / "t-step00000004.safetensors").metadata
    assert (meta["ss_steps"], meta["ss_epoch"]) == ("4", "1")


def test_keep_last_n_steps_removes_older_files_and_states(dataset_dir, tmp_path):
    config = _config(
        dataset_dir, tmp_path, max_train_steps=6, save_every_n_steps=2, save_last_n_steps=2,
        save_state=True,
    )  # fmt: skip
    run_training(config)
    # kohya: at step 6 the step-2 files go (6 - 2 - 1 = 3, rounded down to a multiple of 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "t-state", "t-step00000004-state", "t-step00000004.safetensors",
        "t-step00000006-state", "t-step00000006.safetensors",
        "t.safetensors",
    ]  # fmt: skip


def test_save_n_epoch_ratio_and_last_n_epochs(tmp_path):
    data = make_demo_dataset(tmp_path / "data", count=2)  # 4 samples: one step per epoch
    # 6 epochs, ratio 3: every 2 epochs; keep the last 1: epoch 2's file goes when 4 is saved
    config = _config(
        data, tmp_path / "out", train_batch_size=4, max_train_epochs=6, save_n_epoch_ratio=3,
        save_last_n_epochs=1,
    )  # fmt: skip
    run_training(config)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.safetensors")) == [
        "t-000004.safetensors",
        "t.safetensors",
    ]


def _state(unbroken, tmp_path: Path, name: str = "t-step00000004-state") -> Path:
    out, _, _ = unbroken
    target = tmp_path / "state"
    shutil.copytree(out / name, target)
    return target


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"network_dim": 8}, "the state was saved with network_dim = 4, this run has 8"),
        ({"train_batch_size": 2}, "train_batch_size = 1"),
        ({"optimizer_type": "SGDNesterov"}, "optimizer_type AdamW"),
        ({"max_train_steps": 4}, "nothing left to train: the state is at step 4"),
        ({"network_train_unet_only": True}, "this run trains ['unet']"),
    ],
)
def test_incompatible_resume_is_refused(dataset_dir, unbroken, tmp_path, change, message):
    state = _state(unbroken, tmp_path)
    config = _config(dataset_dir, tmp_path / "out", resume=str(state), **change)
    with pytest.raises(ConfigError) as info:
        run_training(config)
    assert message in info.value.message
    assert str(state) in info.value.message
    assert not (tmp_path / "out").exists()


def test_bad_resume_folders(dataset_dir, unbroken, tmp_path):
    def error(path: Path) -> str:
        with pytest.raises(ConfigError) as info:
            run_training(_config(dataset_dir, tmp_path / "out", resume=str(path)))
        return info.value.message

    assert "does not exist" in error(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    assert "must be a folder" in error(tmp_path / "file")
    kohya = tmp_path / "kohya-state"
    kohya.mkdir()
    (kohya / "optimizer.bin").write_bytes(b"")
    assert "kohya (accelerate) state folder" in error(kohya)
    state = _state(unbroken, tmp_path)
    (state / "train_state.json").write_text("{broken")
    assert "damaged" in error(state)
    state = _state(unbroken, tmp_path / "again")
    (state / "rng.pt").unlink()
    assert "incomplete" in error(state)


def test_changed_dataset_is_refused(unbroken, tmp_path):
    data = make_demo_dataset(tmp_path / "data", count=5)
    with pytest.raises(ConfigError, match="the dataset changed"):
        run_training(_config(data, tmp_path / "out", resume=str(_state(unbroken, tmp_path))))


def test_resuming_its_own_state_replaces_its_files_a_foreign_one_does_not(
    dataset_dir, unbroken, tmp_path
):
    out, _, tensors = unbroken
    run_dir = tmp_path / "run"
    shutil.copytree(out, run_dir)
    options = {"save_every_n_steps": 4, "save_every_n_epochs": 1, "save_state": True}
    # the run continues itself: the files its first part wrote after step 4 are written again
    own = _config(dataset_dir, run_dir, resume=str(run_dir / "t-step00000004-state"), **options)
    _assert_same(tensors, run_training(own).output_path)
    _assert_same(
        load_kohya_lora(out / "t-000001.safetensors").tensors, run_dir / "t-000001.safetensors"
    )
    # a state from elsewhere must not replace files already there past its step
    foreign = _config(dataset_dir, run_dir, resume=str(_state(unbroken, tmp_path)), **options)
    with pytest.raises(ConfigError, match=r"already exists \(.*run.t\.safetensors"):
        run_training(foreign)
