"""The saved file's dtype follows kohya: save_precision when given, else the network's dtype."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lora_trainer.config import BUILTIN_TINY_MODEL, config_from_dict
from lora_trainer.demo import make_demo_dataset
from lora_trainer.errors import ConfigError
from lora_trainer.lora.kohya_file import cast_for_save, load_kohya_lora, save_dtype
from lora_trainer.train.job import run_training


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("data"), count=2)


def _train(dataset_dir: Path, out: Path, **options) -> dict[str, torch.Tensor]:
    values = {
        "pretrained_model_name_or_path": BUILTIN_TINY_MODEL,
        "train_data_dir": str(dataset_dir),
        "output_dir": str(out),
        "caption_extension": ".txt",
        "resolution": "64",
        "max_train_steps": 2,
        "seed": 0,
        "device": "cpu",
        "max_data_loader_n_workers": 0,
    }
    values.update(options)
    return load_kohya_lora(run_training(config_from_dict(values)).output_path).tensors


@pytest.mark.parametrize(
    ("options", "dtype"),
    [
        ({"mixed_precision": "bf16", "full_bf16": True}, torch.bfloat16),
        ({"mixed_precision": "bf16", "full_bf16": True, "save_precision": "float"}, torch.float32),
        ({"mixed_precision": "bf16", "full_bf16": True, "save_precision": "fp16"}, torch.float16),
        ({"mixed_precision": "bf16"}, torch.float32),  # fp32 LoRA weights under autocast
        ({"mixed_precision": "bf16", "save_precision": "bf16"}, torch.bfloat16),
    ],
)  # fmt: skip
def test_file_dtype_of_each_precision_setting(dataset_dir, tmp_path, options, dtype):
    tensors = _train(dataset_dir, tmp_path, **options)
    # kohya casts the whole network, alpha buffers too, so every tensor has one dtype
    assert {t.dtype for t in tensors.values()} == {dtype}
    alphas = [t for k, t in tensors.items() if k.endswith(".alpha")]
    assert alphas and all(t.shape == () and t.float().item() == 1.0 for t in alphas)


def test_save_dtype_rules():
    assert save_dtype(None) == torch.float32
    assert save_dtype(None, torch.float16) == torch.float16
    assert save_dtype("float", torch.bfloat16) == torch.float32
    assert save_dtype("bf16", torch.float32) == torch.bfloat16
    with pytest.raises(ConfigError, match="save_precision 'fp8' is not supported"):
        save_dtype("fp8")
    half = cast_for_save({"lora_unet_x.alpha": 4.0}, None, torch.float16)
    assert half["lora_unet_x.alpha"].dtype == torch.float16
