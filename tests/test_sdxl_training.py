"""SDXL trains end to end: both text encoders, size conditioning, kohya's SDXL file and metadata."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_ldm_layouts import ldm_state_dict, webui_live_layout

from lora_trainer.config import config_from_dict
from lora_trainer.demo import make_demo_dataset
from lora_trainer.lora.kohya_file import load_kohya_lora
from lora_trainer.models.ldm_bundle import bundle_from_ldm_state_dict
from lora_trainer.models.tiny_sdxl import TINY_SDXL_NAME, build_tiny_sdxl, tiny_sdxl_configs
from lora_trainer.train.events import MessageEvent
from lora_trainer.train.job import run_training


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("data"), count=2)


def _config(dataset_dir: Path, out: Path, **options):
    values = {
        "pretrained_model_name_or_path": TINY_SDXL_NAME,
        "train_data_dir": str(dataset_dir),
        "output_dir": str(out),
        "output_name": "t",
        "caption_extension": ".txt",
        "resolution": "64",
        "max_train_steps": 2,
        "seed": 1,
        "device": "cpu",
        "learning_rate": 1e-3,
    }
    values.update(options)
    return config_from_dict(values)


def test_sdxl_trains_with_kohya_names_and_metadata(dataset_dir, tmp_path):
    events = []
    result = run_training(
        _config(dataset_dir, tmp_path, sdxl=True, clip_skip=2), emit=events.append
    )
    assert result.steps == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    warnings = [e.text for e in events if isinstance(e, MessageEvent) and e.level == "warning"]
    assert any("clip_skip does not apply to SDXL" in w for w in warnings)
    lora = load_kohya_lora(result.output_path)
    md = lora.metadata
    assert md["ss_base_model_version"] == "sdxl_base_v1-0"
    assert md["ss_v2"] == "False"
    assert md["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert md["modelspec.implementation"] == "https://github.com/Stability-AI/generative-models"
    assert md["modelspec.prediction_type"] == "epsilon"
    assert lora.text_encoder_prefixes() == ["lora_te1", "lora_te2"]
    unet = [m for m in lora.module_names() if m.startswith("lora_unet_")]
    assert unet and all(m.split("_")[2] in ("input", "middle", "output") for m in unet)
    # both text encoders and the UNet were trained
    for module in ("lora_te1_text_model_encoder_layers_0_mlp_fc1", "lora_te2_text_model_encoder_layers_1_mlp_fc2",
                   "lora_unet_input_blocks_7_1_transformer_blocks_1_attn2_to_k"):  # fmt: skip
        assert lora.up(module).abs().sum() > 0, module


def test_sdxl_from_the_webuis_live_state_dict(dataset_dir, tmp_path):
    live = webui_live_layout(ldm_state_dict(build_tiny_sdxl()))
    before = {k: v.clone() for k, v in live.items()}
    bundle = bundle_from_ldm_state_dict(live, configs=tiny_sdxl_configs(), prediction_type="eps")
    result = run_training(_config(dataset_dir, tmp_path, max_token_length=150), bundle=bundle)
    assert all(torch.equal(live[k], before[k]) for k in live)
    assert load_kohya_lora(result.output_path).metadata["ss_max_token_length"] == "150"
