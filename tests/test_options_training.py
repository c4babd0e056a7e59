"""kohya's training options in real runs: each reaches the training step, and the metadata says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import lora_trainer.lora.dropout as dropout_module
import lora_trainer.train.job as job_module
import lora_trainer.train.loop as loop_module
import lora_trainer.train.losses as losses_module
import lora_trainer.train.noise_options as noise_module
from lora_trainer.config import BUILTIN_TINY_MODEL, config_from_dict
from lora_trainer.demo import make_demo_dataset
from lora_trainer.lora.kohya_file import load_kohya_lora
from lora_trainer.train.events import StepEvent
from lora_trainer.train.job import run_training
from lora_trainer.train.noise import NoiseSchedule


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("data"), count=2)


def _run(dataset_dir: Path, out: Path, **options):
    config = config_from_dict(
        {
            "pretrained_model_name_or_path": BUILTIN_TINY_MODEL, "train_data_dir": str(dataset_dir),
            "output_dir": str(out), "output_name": "t", "caption_extension": ".txt",
            "resolution": "64", "max_train_steps": 2, "seed": 3, "device": "cpu", **options,
        }
    )  # fmt: skip
    events: list = []
    result = run_training(config, emit=events.append)
    return load_kohya_lora(result.output_path), [e for e in events if isinstance(e, StepEvent)]


def _spy(monkeypatch, module, name: str, calls: list) -> None:
    original = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)


OPTIONS = {
    "conv_dim": 4, "conv_alpha": 2, "network_dropout": 0.1,
    "network_args": ["rank_dropout=0.1", "module_dropout=0.1"],
    "optimizer_args": ["weight_decay=0.05"],
    "lr_scheduler": "cosine_with_restarts", "lr_warmup_steps": 1, "lr_scheduler_num_cycles": 2,
    "noise_offset": 0.05, "noise_offset_random_strength": True, "adaptive_noise_scale": 0.01,
    "multires_noise_iterations": 2, "multires_noise_discount": 0.5, "ip_noise_gamma": 0.05,
    "zero_terminal_snr": True, "min_timestep": 100, "max_timestep": 900,
    "min_snr_gamma": 5, "debiased_estimation_loss": True,
    "loss_type": "huber", "huber_schedule": "exponential", "huber_c": 0.2,
    "scale_weight_norms": 1.0, "max_grad_norm": 0.5, "gradient_checkpointing": True,
}  # fmt: skip


def test_every_option_reaches_the_step_and_the_metadata(dataset_dir, tmp_path, monkeypatch):
    calls: dict[str, list] = {
        name: []
        for name in (
            "offset",
            "pyramid",
            "timesteps",
            "huber",
            "weights",
            "max_norm",
            "clip",
            "rank",
        )
    }
    _spy(monkeypatch, noise_module, "offset_noise", calls["offset"])
    _spy(monkeypatch, noise_module, "pyramid_noise", calls["pyramid"])
    _spy(monkeypatch, NoiseSchedule, "sample_timesteps", calls["timesteps"])
    _spy(monkeypatch, losses_module, "huber_threshold", calls["huber"])
    _spy(monkeypatch, losses_module.DenoisingLoss, "weight_per_timestep", calls["weights"])
    _spy(monkeypatch, loop_module, "apply_max_norm", calls["max_norm"])
    _spy(monkeypatch, torch.nn.utils, "clip_grad_norm_", calls["clip"])
    _spy(monkeypatch, dropout_module, "rank_mask", calls["rank"])
    lora, steps = _run(dataset_dir, tmp_path, **OPTIONS)

    assert len(calls["offset"]) == 2 and calls["offset"][0][0][3] == 0.01  # adaptive scale
    assert [c[0][1:3] for c in calls["pyramid"]] == [(2, 0.5)] * 2
    schedule = calls["timesteps"][0][0][0]
    assert (schedule.min_timestep, schedule.max_timestep) == (100, 900)
    assert float(schedule.scheduler.alphas_cumprod[-1]) == 0.0  # zero_terminal_snr
    assert calls["huber"] and calls["huber"][0][0][0].huber_schedule == "exponential"
    assert calls["weights"] and calls["max_norm"][0][0][1] == 1.0
    assert {c[0][1] for c in calls["clip"]} == {0.5}
    assert calls["rank"] and calls["rank"][0][0][1] == 0.1
    assert [s.lr for s in steps] == pytest.approx([0.0, 1e-4])  # warmup of one step

    assert any("_resnets_" in k and k.endswith("conv1.lora_down.weight") for k in lora.tensors)
    # with gradient checkpointing the text encoder's LoRA still learns (kohya's workaround)
    te_up = [v for k, v in lora.tensors.items() if k.startswith("lora_te_") and "lora_up" in k]
    learned = [bool(torch.count_nonzero(v)) for v in te_up]
    assert sum(learned) > len(learned) / 2  # module_dropout may skip a few in the one real step
    md = lora.metadata
    expected = {
        "ss_network_dropout": "0.1",
        "ss_optimizer": "torch.optim.adamw.AdamW(weight_decay=0.05)",
        "ss_lr_scheduler": "cosine_with_restarts", "ss_lr_warmup_steps": "1",
        "ss_noise_offset": "0.05", "ss_noise_offset_random_strength": "True",
        "ss_adaptive_noise_scale": "0.01", "ss_multires_noise_iterations": "2",
        "ss_multires_noise_discount": "0.5", "ss_ip_noise_gamma": "0.05",
        "ss_ip_noise_gamma_random_strength": "False", "ss_zero_terminal_snr": "True",
        "ss_min_snr_gamma": "5.0", "ss_debiased_estimation": "True", "ss_loss_type": "huber",
        "ss_huber_schedule": "exponential", "ss_huber_c": "0.2", "ss_huber_scale": "1.0",
        "ss_scale_weight_norms": "1.0", "ss_max_grad_norm": "0.5", "ss_mixed_precision": "no",
        "ss_full_fp16": "False", "ss_gradient_checkpointing": "True",
        "modelspec.timestep_range": "100,900",
    }  # fmt: skip
    assert {k: md[k] for k in expected} == expected
    assert json.loads(md["ss_network_args"]) == {
        "rank_dropout": "0.1", "module_dropout": "0.1", "conv_dim": "4", "conv_alpha": "2",
        "dropout": 0.1,
    }  # fmt: skip


def test_adafactor_with_full_bf16(dataset_dir, tmp_path, monkeypatch):
    # one step: bf16 arithmetic is emulated, slowly, on most CPUs
    loaded: list = []
    original_prepare = job_module.prepare_model

    def prepare_model(config, bundle, weight_dtype):
        model = original_prepare(config, bundle, weight_dtype)
        loaded.append((model.bundle, weight_dtype))
        return model

    monkeypatch.setattr(job_module, "prepare_model", prepare_model)
    lrs_calls: list = []
    _spy(monkeypatch, loop_module, "current_lrs", lrs_calls)
    lora, steps = _run(
        dataset_dir, tmp_path, optimizer_type="Adafactor", mixed_precision="bf16", full_bf16=True,
        max_train_steps=1,
    )  # fmt: skip
    ((bundle, weight_dtype),) = loaded
    assert weight_dtype == torch.bfloat16
    assert bundle.unet.dtype == bundle.text_encoder.dtype == bundle.vae.dtype == torch.bfloat16
    optimizer = lrs_calls[0][0][0]
    assert {p.dtype for g in optimizer.param_groups for p in g["params"]} == {torch.bfloat16}
    assert steps[0].lr == pytest.approx(1e-4)  # kohya's adafactor schedule starts at learning_rate
    md = lora.metadata
    assert md["ss_optimizer"] == "transformers.optimization.Adafactor(relative_step=True)"
    assert (md["ss_lr_scheduler"], md["ss_learning_rate"]) == ("adafactor:0.0001", "None")
    assert all(torch.isfinite(t).all() for t in lora.tensors.values())
