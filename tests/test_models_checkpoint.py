"""Checkpoint files: SD1/SD2/SDXL offline, .ckpt safely, SD2's prediction type, a separate VAE."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import save_file
from tiny_ldm_layouts import ldm_state_dict

from lora_trainer.errors import ModelError
from lora_trainer.models import ldm_convert
from lora_trainer.models.checkpoint_file import load_checkpoint_file, metadata_prediction_type
from lora_trainer.models.loading import load_bundle
from lora_trainer.models.tiny_sd2 import build_tiny_sd2, tiny_sd2_configs
from lora_trainer.models.tiny_sdxl import build_tiny_sdxl, tiny_sdxl_configs


@pytest.fixture(scope="module")
def sd2_file(tmp_path_factory):
    """A tiny SD2 checkpoint in the LDM layout, written as .safetensors."""
    path = tmp_path_factory.mktemp("sd2") / "tiny-sd2.safetensors"
    save_file(ldm_state_dict(build_tiny_sd2()), str(path))
    return path


def _copy(src, dst_dir, name=None, metadata=None):
    dst = dst_dir / (name or src.name)
    if metadata is None:
        shutil.copy(src, dst)
    else:
        from safetensors.torch import load_file

        save_file(load_file(str(src)), str(dst), metadata=metadata)
    return dst


def test_tiny_sd1_checkpoint_file_loads_offline(fixtures, tmp_path):
    # the .yaml beside the checkpoint names the text encoder folder relative to itself
    for name in ("tiny-sd1.safetensors", "tiny-sd1.yaml"):
        shutil.copy(fixtures / name, tmp_path / name)
    shutil.copytree(fixtures / "tiny-clip", tmp_path / "tiny-clip")
    bundle = load_bundle(str(tmp_path / "tiny-sd1.safetensors"))
    assert bundle.arch == "sd1" and bundle.prediction_type == "epsilon"
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


def test_ckpt_is_read_with_weights_only(sd2_file, tmp_path):
    from safetensors.torch import load_file

    tensors = load_file(str(sd2_file))
    ckpt = tmp_path / "tiny-sd2.ckpt"
    torch.save({"state_dict": tensors, "global_step": 3}, ckpt)
    bundle = load_checkpoint_file(ckpt, configs=tiny_sd2_configs(), prediction_type="v")
    reference = load_checkpoint_file(sd2_file, configs=tiny_sd2_configs(), prediction_type="v")
    ours, theirs = bundle.unet.state_dict(), reference.unet.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in ours.items())
    torch.save({"state_dict": tensors, "callback": _NotAWeight()}, tmp_path / "evil.ckpt")
    with pytest.raises(ModelError, match=r"objects besides weights.*_NotAWeight.*safetensors"):
        load_checkpoint_file(tmp_path / "evil.ckpt", configs=tiny_sd2_configs())


class _NotAWeight:
    """An object a weights-only unpickler must refuse to build."""


def _with_out_bias(path, tmp_path, bias: float):
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    tensors["model.diffusion_model.out.2.bias"] = torch.full_like(
        tensors["model.diffusion_model.out.2.bias"], bias
    )
    out = tmp_path / f"probe{bias}.safetensors"
    save_file(tensors, str(out))
    return out


def test_sd2_prediction_type_from_the_weights_like_the_webui(sd2_file, tmp_path):
    # the WebUI's probe: a strongly negative output at t=999 means v-prediction (A1111.md)
    v_model = load_checkpoint_file(
        _with_out_bias(sd2_file, tmp_path, -2.0), configs=tiny_sd2_configs()
    )
    assert v_model.prediction_type == "v_prediction"
    assert v_model.extra["prediction_type_from"] == "probe"
    assert v_model.scheduler_config["prediction_type"] == "v_prediction"
    eps_model = load_checkpoint_file(
        _with_out_bias(sd2_file, tmp_path, 2.0), configs=tiny_sd2_configs()
    )
    assert eps_model.prediction_type == "epsilon"


def test_sd2_prediction_type_from_option_yaml_and_metadata(sd2_file, tmp_path):
    eps_file = _with_out_bias(sd2_file, tmp_path, 2.0)  # the probe would say epsilon
    flagged = load_checkpoint_file(eps_file, configs=tiny_sd2_configs(), prediction_type="v")
    assert (flagged.prediction_type, flagged.extra["prediction_type_from"]) == (
        "v_prediction",
        "option",
    )
    tagged = _copy(eps_file, tmp_path, "tagged.safetensors", {"modelspec.prediction_type": "v"})
    from_metadata = load_checkpoint_file(tagged, configs=tiny_sd2_configs())
    assert from_metadata.extra["prediction_type_from"] == "metadata"
    assert from_metadata.base_model_version == "sd_v2_v"
    assert (
        metadata_prediction_type({"modelspec.architecture": "stable-diffusion-v2-768-v"})
        == "v_prediction"
    )
    assert metadata_prediction_type({"modelspec.architecture": "stable-diffusion-v2-512"}) is None
    folder = tmp_path / "yaml"
    folder.mkdir()
    with_yaml = _copy(eps_file, folder, "m.safetensors")
    (folder / "m.yaml").write_text(_SD2_TINY_YAML)
    from_yaml = load_checkpoint_file(with_yaml, configs=tiny_sd2_configs())
    assert from_yaml.extra["prediction_type_from"] == "yaml"
    assert from_yaml.prediction_type == "v_prediction"
    # without configs the yaml gives the UNet's sizes; open_clip towers are known by
    # name only, and this tiny one has no standard width: a clear error, as in the WebUI
    with pytest.raises(ModelError, match="text encoder weights do not have the sizes"):
        load_checkpoint_file(with_yaml)


# the tiny SD2 model as an ldm v2-inference-v.yaml would describe it
_SD2_TINY_YAML = """
model:
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    parameterization: "v"
    scale_factor: 0.18215
    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        in_channels: 4
        out_channels: 4
        model_channels: 32
        attention_resolutions: [1]
        num_res_blocks: 2
        channel_mult: [1, 2]
        num_head_channels: 8
        use_linear_in_transformer: true
        transformer_depth: 1
        context_dim: 32
    first_stage_config:
      target: ldm.models.autoencoder.AutoencoderKL
      params:
        embed_dim: 4
        ddconfig:
          double_z: true
          z_channels: 4
          resolution: 256
          in_channels: 3
          out_ch: 3
          ch: 32
          ch_mult: [1, 2, 2, 2]
          num_res_blocks: 2
          attn_resolutions: []
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder
      params:
        freeze: true
        layer: "penultimate"
"""


def test_separate_vae_in_each_layout(sd2_file, tmp_path):
    from safetensors.torch import load_file

    donor = build_tiny_sd2(seed=7)  # a VAE with other weights than the checkpoint's
    full = ldm_state_dict(donor)
    ldm_vae = {k: v for k, v in full.items() if k.startswith("first_stage_model.")}
    files = {
        "full.safetensors": ldm_vae,
        "vae-only.safetensors": {
            k.removeprefix("first_stage_model."): v for k, v in ldm_vae.items()
        },
        "diffusers.safetensors": {k: v.clone() for k, v in donor.vae.state_dict().items()},
    }
    expected = donor.vae.state_dict()
    for name, tensors in files.items():
        save_file(tensors, str(tmp_path / name))
        bundle = load_checkpoint_file(sd2_file, configs=tiny_sd2_configs(), vae=tmp_path / name)
        assert all(torch.equal(v, expected[k]) for k, v in bundle.vae.state_dict().items()), name
        assert bundle.vae_source.name == name and len(bundle.vae_source.sha256) == 64
    donor.vae.save_pretrained(str(tmp_path / "vae-folder"))
    bundle = load_checkpoint_file(sd2_file, configs=tiny_sd2_configs(), vae=tmp_path / "vae-folder")
    assert all(torch.equal(v, expected[k]) for k, v in bundle.vae.state_dict().items())
    # a checkpoint without a VAE loads when one is given
    no_vae = {
        k: v for k, v in load_file(str(sd2_file)).items() if not k.startswith("first_stage_model.")
    }
    save_file(no_vae, str(tmp_path / "no-vae.safetensors"))
    bundle = load_checkpoint_file(
        tmp_path / "no-vae.safetensors",
        configs=tiny_sd2_configs(),
        vae=tmp_path / "full.safetensors",
    )
    assert bundle.vae is not None
    save_file({"foo": torch.zeros(1)}, str(tmp_path / "not-a-vae.safetensors"))
    with pytest.raises(ModelError, match="no VAE weights"):
        load_checkpoint_file(
            sd2_file, configs=tiny_sd2_configs(), vae=tmp_path / "not-a-vae.safetensors"
        )


def test_sdxl_checkpoint_file(tmp_path):
    original = build_tiny_sdxl()
    path = tmp_path / "tiny-sdxl.safetensors"
    save_file(ldm_state_dict(original), str(path))
    bundle = load_checkpoint_file(path, configs=tiny_sdxl_configs())
    assert bundle.arch == "sdxl" and len(bundle.text_encoders) == 2
    assert bundle.extra["prediction_type_from"] == "default"  # no probe for SDXL
    assert [t.pad_token_id for t in bundle.tokenizers] == [49407, 0]
    theirs = original.text_encoders[1].state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in bundle.text_encoders[1].state_dict().items())


def test_weight_dtype_is_applied(sd2_file):
    bundle = load_checkpoint_file(
        sd2_file, torch.bfloat16, configs=tiny_sd2_configs(), prediction_type="v"
    )
    assert {p.dtype for m in bundle.modules().values() for p in m.parameters()} == {torch.bfloat16}


def test_bad_files_are_clear_errors(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="cannot read the checkpoint"):
        load_bundle(str(bad))
    with pytest.raises(ModelError, match="not found"):
        load_bundle(str(tmp_path / "missing.safetensors"))
    with pytest.raises(ModelError, match="pretrained_model_name_or_path is not set"):
        load_bundle(None)
    with pytest.raises(ModelError, match="unsupported checkpoint type"):
        (tmp_path / "model.onnx").write_bytes(b"x")
        load_bundle(str(tmp_path / "model.onnx"))
    with pytest.raises(ModelError, match="builtin:tiny-sd2"):
        load_bundle("builtin:tiny-sd3")
    save_file({"foo.weight": torch.zeros(1)}, str(tmp_path / "lora.safetensors"))
    with pytest.raises(ModelError, match="not a Stable Diffusion checkpoint"):
        load_bundle(str(tmp_path / "lora.safetensors"))


def test_attention_heads_derived_from_head_channels():
    params = {"num_head_channels": 8, "model_channels": 32, "channel_mult": [1, 2]}
    assert ldm_convert.unet_heads_from_ldm(params) == [4, 8]


def test_tiny_sd1_fixture_file_trains(fixtures, tmp_path):
    from lora_trainer.config import config_from_dict
    from lora_trainer.demo import make_demo_dataset
    from lora_trainer.lora.kohya_file import load_kohya_lora
    from lora_trainer.train.job import run_training

    for name in ("tiny-sd1.safetensors", "tiny-sd1.yaml"):
        shutil.copy(fixtures / name, tmp_path / name)
    shutil.copytree(fixtures / "tiny-clip", tmp_path / "tiny-clip")
    config = config_from_dict(
        {
            "pretrained_model_name_or_path": str(tmp_path / "tiny-sd1.safetensors"),
            "train_data_dir": str(make_demo_dataset(tmp_path / "data", count=2)),
            "output_dir": str(tmp_path / "out"),
            "caption_extension": ".txt",
            "resolution": "64",
            "max_train_steps": 2,
            "seed": 1,
            "device": "cpu",
        }
    )
    result = run_training(config)
    md = load_kohya_lora(result.output_path).metadata
    assert md["ss_sd_model_name"] == "tiny-sd1.safetensors"
    assert md["ss_new_sd_model_hash"].startswith("4c9fedc4b7")
    assert md["ss_base_model_version"] == "sd_v1"
