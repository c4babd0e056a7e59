"""SD2 (v-prediction) trains end to end; model-family options are checked against the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_ldm_layouts import ldm_state_dict, webui_live_layout

from lora_trainer.config import BUILTIN_TINY_MODEL, config_from_dict
from lora_trainer.demo import make_demo_dataset
from lora_trainer.errors import ConfigError
from lora_trainer.lora.kohya_file import load_kohya_lora
from lora_trainer.models.ldm_bundle import bundle_from_ldm_state_dict
from lora_trainer.models.tiny_sd2 import TINY_SD2_NAME, build_tiny_sd2, tiny_sd2_configs
from lora_trainer.train.events import MessageEvent
from lora_trainer.train.job import run_training


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("data"), count=2)


def _config(dataset_dir: Path, out: Path, **options):
    values = {
        "pretrained_model_name_or_path": TINY_SD2_NAME,
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


def test_sd2_v_model_trains_with_kohya_metadata(dataset_dir, tmp_path):
    result = run_training(
        _config(dataset_dir, tmp_path, v2=True, clip_skip=2, max_token_length=150)
    )
    assert result.steps == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    lora = load_kohya_lora(result.output_path)
    md = lora.metadata
    assert md["ss_base_model_version"] == "sd_v2_v"
    assert md["ss_v2"] == "True"
    assert md["modelspec.architecture"] == "stable-diffusion-v2-768-v/lora"
    assert md["modelspec.prediction_type"] == "v"
    assert md["ss_clip_skip"] == "2" and md["modelspec.encoder_layer"] == "2"
    assert md["ss_max_token_length"] == "150"
    proj = lora.tensors["lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight"]
    assert proj.shape == (32, 4, 1, 1) and proj.abs().sum() > 0  # trained, kohya's shape


def test_training_on_the_webuis_tensors_leaves_them_untouched(dataset_dir, tmp_path):
    # what the WebUI adapter does: its live state dict in, a bundle over those tensors
    live = webui_live_layout(ldm_state_dict(build_tiny_sd2()))
    before = {k: v.clone() for k, v in live.items()}
    bundle = bundle_from_ldm_state_dict(live, configs=tiny_sd2_configs(), prediction_type="v")
    result = run_training(_config(dataset_dir, tmp_path), bundle=bundle)
    assert result.output_path.is_file()
    assert all(torch.equal(live[k], before[k]) for k in live)
    assert load_kohya_lora(result.output_path).metadata["ss_base_model_version"] == "sd_v2_v"


def test_family_options_must_fit_the_model(dataset_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"v2 is set but the model is SD1\.x"):
        run_training(
            _config(
                dataset_dir, tmp_path, pretrained_model_name_or_path=BUILTIN_TINY_MODEL, v2=True
            )
        )
    with pytest.raises(ConfigError, match=r"sdxl is set but the model is SD2\.x"):
        run_training(_config(dataset_dir, tmp_path, sdxl=True))
    with pytest.raises(ConfigError, match="clip_skip 3 is more than the text encoder's 2 layers"):
        run_training(_config(dataset_dir, tmp_path, clip_skip=3))
    with pytest.raises(ConfigError, match="vae file is not found"):
        run_training(_config(dataset_dir, tmp_path, vae=str(tmp_path / "missing.safetensors")))


def test_v_parameterization_on_sd1_trains_v_with_a_warning(dataset_dir, tmp_path):
    events = []
    config = _config(
        dataset_dir,
        tmp_path,
        pretrained_model_name_or_path=BUILTIN_TINY_MODEL,
        v_parameterization=True,
    )
    result = run_training(config, emit=events.append)
    warnings = [e.text for e in events if isinstance(e, MessageEvent) and e.level == "warning"]
    assert any("v_parameterization on an SD1.x model" in w for w in warnings)
    infos = [e.text for e in events if isinstance(e, MessageEvent) and e.level == "info"]
    assert "Model: SD1.x, v-prediction (v_parameterization)" in infos
    md = load_kohya_lora(result.output_path).metadata
    assert md["ss_base_model_version"] == "sd_v1_v" and md["ss_v2"] == "False"
    assert md["modelspec.prediction_type"] == "v"
    assert md["modelspec.architecture"] == "stable-diffusion-v1/lora"


def test_a_separate_vae_is_used_and_recorded(dataset_dir, tmp_path):
    donor = build_tiny_sd2(seed=5)
    vae_file = tmp_path / "my-vae.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in donor.vae.state_dict().items()}, str(vae_file))
    result = run_training(_config(dataset_dir, tmp_path / "out", vae=str(vae_file)))
    md = load_kohya_lora(result.output_path).metadata
    assert md["ss_vae_name"] == "my-vae.safetensors"
    assert len(md["ss_new_vae_hash"]) == 64 and len(md["ss_vae_hash"]) == 8


def test_model_option_values_are_checked_early():
    with pytest.raises(ConfigError, match="max_token_length must be 75, 150 or 225"):
        config_from_dict({"max_token_length": 100})
    with pytest.raises(ConfigError, match="clip_skip must be 1 or more"):
        config_from_dict({"clip_skip": 0})
    with pytest.raises(ConfigError, match="v2 and sdxl are both set"):
        config_from_dict({"v2": True, "sdxl": True})
    assert config_from_dict({"max_token_length": 75}).max_token_length is None  # kohya's default
