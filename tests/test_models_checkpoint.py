"""Loading SD1 models: the LDM conversion shares tensors, checkpoint files load offline."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from lora_trainer.errors import ModelError
from lora_trainer.models import ldm_convert
from lora_trainer.models.checkpoint_file import sd1_configs
from lora_trainer.models.loading import load_bundle


def test_ldm_conversion_shares_every_tensor(fixtures):
    path = fixtures / "tiny-sd1.safetensors"
    state_dict = load_file(str(path))
    unet_cfg, vae_cfg, te_cfg = sd1_configs(path, state_dict)
    ptrs = {t.untyped_storage().data_ptr() for t in state_dict.values()}
    modules = [
        ldm_convert.sd1_unet(state_dict, unet_cfg),
        ldm_convert.sd1_vae(state_dict, vae_cfg),
        ldm_convert.sd1_text_encoder(state_dict, te_cfg),
    ]
    params = [p for m in modules for p in m.parameters()]
    assert len(params) > 250
    shared = [p for p in params if p.untyped_storage().data_ptr() in ptrs]
    assert len(shared) == len(params)
    assert not any(p.requires_grad for p in params)


def test_tiny_checkpoint_file_loads_offline(fixtures, tmp_path):
    # the .yaml beside the checkpoint names the text encoder folder relative to itself
    for name in ("tiny-sd1.safetensors", "tiny-sd1.yaml"):
        shutil.copy(fixtures / name, tmp_path / name)
    shutil.copytree(fixtures / "tiny-clip", tmp_path / "tiny-clip")
    bundle = load_bundle(str(tmp_path / "tiny-sd1.safetensors"))
    assert bundle.arch == "sd1"
    assert list(bundle.unet.config.block_out_channels) == [32, 64]
    assert bundle.text_encoder.config.hidden_size == 32
    assert bundle.source.name == "tiny-sd1.safetensors"
    assert bundle.source.sha256.startswith("4c9fedc4b7")
    assert all(p.dtype == torch.float32 for p in bundle.unet.parameters())
    latents = torch.zeros(1, 4, 8, 8)
    ids = bundle.tokenizer(
        ["a photo of a cat"], padding="max_length", max_length=77, return_tensors="pt"
    ).input_ids
    context = bundle.text_encoder(ids).last_hidden_state
    out = bundle.unet(latents, torch.tensor([10]), context).sample
    assert out.shape == latents.shape and torch.isfinite(out).all()


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="cannot read the checkpoint"):
        load_bundle(str(bad))
    with pytest.raises(ModelError, match="not found"):
        load_bundle(str(tmp_path / "missing.safetensors"))
    with pytest.raises(ModelError, match="pretrained_model_name_or_path is not set"):
        load_bundle(None)


def test_non_sd_state_dict_is_refused():
    with pytest.raises(ModelError, match="not a Stable Diffusion checkpoint"):
        ldm_convert.detect_arch({"foo.weight": torch.zeros(1)})


def test_attention_heads_derived_from_head_channels():
    params = {"num_head_channels": 8, "model_channels": 32, "channel_mult": [1, 2]}
    assert ldm_convert.unet_heads_from_ldm(params) == [4, 8]
