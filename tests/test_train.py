"""Training the tiny model end to end: learning, reproducibility, stop, epochs, options."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from train_helpers import tiny_config

from lora_trainer.config import BUILTIN_TINY_MODEL, TrainConfig
from lora_trainer.demo import make_demo_dataset
from lora_trainer.lora.hashes import file_model_hash
from lora_trainer.lora.kohya_file import load_kohya_lora
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.train.evaluate import fixed_batch_loss
from lora_trainer.train.events import SavedEvent, StepEvent, StopSignal
from lora_trainer.train.job import inject_network, prepare, run_training


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("data"), count=4)


def _config(dataset_dir: Path, out: Path, **options) -> TrainConfig:
    defaults = {
        "max_train_steps": 6,
        "seed": 1,
    }
    return tiny_config(dataset_dir, out, defaults, **options)


def test_training_lowers_the_loss_on_a_fixed_batch(dataset_dir, tmp_path):
    config = _config(dataset_dir, tmp_path, learning_rate=5e-3, network_dim=8, max_train_steps=40)
    result = run_training(config)
    bundle = build_tiny_sd1()
    dataset = prepare(replace(config, overwrite=True)).dataset
    before = fixed_batch_loss(bundle, dataset)
    network = inject_network(bundle, config, seed=0)
    network.load_kohya_state_dict(load_kohya_lora(result.output_path).tensors, "trained")
    after = fixed_batch_loss(bundle, dataset)
    assert after < before * 0.9


def test_same_seed_gives_bit_identical_weights(dataset_dir, tmp_path):
    first = run_training(_config(dataset_dir, tmp_path / "a"))
    second = run_training(_config(dataset_dir, tmp_path / "b"))
    third = run_training(_config(dataset_dir, tmp_path / "c", seed=2))
    a, b, c = (load_kohya_lora(r.output_path).tensors for r in (first, second, third))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert first.losses == second.losses


def test_stop_saves_what_was_trained(dataset_dir, tmp_path):
    stop = StopSignal()

    def emit(event):
        if isinstance(event, StepEvent) and event.step == 3:
            stop.request(save=True)

    result = run_training(_config(dataset_dir, tmp_path, max_train_steps=50), emit=emit, stop=stop)
    assert result.stopped and result.steps == 3
    lora = load_kohya_lora(result.output_path)
    assert lora.metadata["ss_steps"] == "3"
    assert lora.metadata["ss_max_train_steps"] == "50"


def test_stop_without_saving_writes_nothing(dataset_dir, tmp_path):
    stop = StopSignal()
    stop.request(save=False)
    result = run_training(_config(dataset_dir, tmp_path), stop=stop)
    assert result.output_path is None and result.steps == 1
    assert not list(tmp_path.glob("*.safetensors"))


def test_epochs_save_every_n_and_final(dataset_dir, tmp_path):
    # 4 images x 2 repeats = 8 samples, batch 2 -> 4 steps per epoch
    saved = []
    config = _config(
        dataset_dir, tmp_path, train_batch_size=2, max_train_epochs=3, save_every_n_epochs=1
    )
    result = run_training(
        config, emit=lambda e: saved.append(e) if isinstance(e, SavedEvent) else None
    )
    assert result.steps == 12 and result.epochs == 3
    names = [e.path.name for e in saved]
    assert names == ["t-000001.safetensors", "t-000002.safetensors", "t.safetensors"]
    meta = load_kohya_lora(tmp_path / "t-000001.safetensors").metadata
    assert (meta["ss_epoch"], meta["ss_steps"], meta["ss_num_epochs"]) == ("1", "4", "3")


def test_gradient_accumulation_counts_optimizer_steps(dataset_dir, tmp_path):
    steps = []
    config = _config(dataset_dir, tmp_path, gradient_accumulation_steps=3, max_train_epochs=1)
    run_training(config, emit=lambda e: steps.append(e.step) if isinstance(e, StepEvent) else None)
    assert steps == [1, 2, 3]  # 8 batches of 1 -> ceil(8 / 3) optimizer steps


def test_learning_rates_and_warmup_schedule(dataset_dir, tmp_path):
    lrs = []
    config = _config(
        dataset_dir, tmp_path, unet_lr=1e-3, text_encoder_lr=1e-5, lr_scheduler="cosine",
        lr_warmup_steps=2, max_train_steps=6,
    )  # fmt: skip
    run_training(config, emit=lambda e: lrs.append(e.lrs) if isinstance(e, StepEvent) else None)
    unet = [x["unet"] for x in lrs]
    # linear warmup over 2 steps (from 0, as kohya/diffusers do), then cosine decay
    assert unet[:3] == pytest.approx([0.0, 5e-4, 1e-3])
    assert unet[2] > unet[3] > unet[4] > unet[5] > 0
    assert [x["te"] for x in lrs] == pytest.approx([u / 100 for u in unet])


def test_unet_only_precision_and_metadata(dataset_dir, tmp_path, fixtures):
    config = _config(dataset_dir, tmp_path, network_train_unet_only=True, save_precision="fp16")
    lora = load_kohya_lora(run_training(config).output_path)
    assert all(k.startswith("lora_unet_") for k in lora.tensors)
    assert {t.dtype for t in lora.tensors.values()} == {torch.float16}
    kohya = json.loads((fixtures / "kohya_sd15_rank4.metadata.json").read_text())
    # the kohya run had no sd-scripts-specific commit we could claim, and no VAE/base files of ours
    not_ours = {"ss_sd_scripts_commit_hash", "ss_sd_model_hash", "ss_new_sd_model_hash"}
    assert set(kohya) - not_ours <= set(lora.metadata)
    assert lora.metadata["sshs_model_hash"] == file_model_hash(lora.path)
    assert lora.metadata["ss_dataset_dirs"] == '{"2_sks toy": {"n_repeats": 2, "img_count": 4}}'
    assert lora.metadata["ss_resolution"] == "(64, 64)"
    assert lora.metadata["ss_sd_model_name"] == BUILTIN_TINY_MODEL
    assert lora.metadata["modelspec.architecture"] == "stable-diffusion-v1/lora"
