"""The full-size SD1.5 architecture (random weights) trains on the CPU and exports kohya's key set."""

from __future__ import annotations

import json

import pytest
import torch

from lora_trainer.bench.random_model import build_random_bundle, parameter_count
from lora_trainer.config import config_from_dict
from lora_trainer.demo import make_demo_dataset
from lora_trainer.lora.kohya_file import load_kohya_lora
from lora_trainer.train.job import run_training


@pytest.mark.slow
def test_full_size_sd15_trains_three_steps_and_matches_kohya_keys(fixtures, tmp_path):
    # frozen weights in bf16 with bf16 autocast, as kohya stores them for mixed precision:
    # 2.9 GB of memory instead of 5, and faster on the CPU too
    bundle = build_random_bundle("sd1", torch.bfloat16)
    assert parameter_count(bundle) == {"unet": 859520964, "vae": 83653863, "te": 123060480}
    data = make_demo_dataset(tmp_path / "data", count=2)
    config = config_from_dict(
        {
            "pretrained_model_name_or_path": "random-sd1",
            "train_data_dir": str(data),
            "caption_extension": ".txt",
            "output_dir": str(tmp_path / "out"),
            "output_name": "full",
            "resolution": "64",
            "network_dim": 4,
            "network_alpha": 1,
            "learning_rate": 1e-3,
            "max_train_steps": 3,
            "mixed_precision": "bf16",
            "seed": 0,
            "device": "cpu",
        }
    )
    result = run_training(config, bundle=bundle)
    assert result.steps == 3 and all(torch.isfinite(torch.tensor(result.losses)))
    lora = load_kohya_lora(result.output_path)
    kohya = json.loads((fixtures / "kohya_sd15_lora_keys.json").read_text(encoding="utf-8"))["keys"]
    ours = {k: {"shape": list(v.shape), "dtype": "F32"} for k, v in lora.tensors.items()}
    assert {k: v.dtype for k, v in lora.tensors.items()} == dict.fromkeys(
        lora.tensors, torch.float32
    )
    assert ours == {k: {"shape": v["shape"], "dtype": v["dtype"]} for k, v in kohya.items()}
    ups = [v for k, v in lora.tensors.items() if k.endswith("lora_up.weight")]
    assert sum(bool(v.abs().sum()) for v in ups) > len(ups) // 2  # trained: up weights left zero
