"""diffusers model folders load offline, with the family and prediction type read from the folder."""

from __future__ import annotations

import json

import pytest
import torch

from lora_trainer.errors import ModelError
from lora_trainer.models.diffusers_folder import folder_arch
from lora_trainer.models.loading import load_bundle
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.models.tiny_sd2 import build_tiny_sd2
from lora_trainer.models.tiny_sdxl import build_tiny_sdxl

SUBFOLDERS = ("text_encoder", "text_encoder_2")


def _save(bundle, folder, prediction_type: str) -> None:
    bundle.unet.save_pretrained(str(folder / "unet"))
    bundle.vae.save_pretrained(str(folder / "vae"))
    for name, encoder in zip(SUBFOLDERS, bundle.text_encoders):
        encoder.save_pretrained(str(folder / name))
    scheduler = dict(bundle.scheduler_config, prediction_type=prediction_type)
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler))


@pytest.mark.parametrize(
    ("build", "prediction"),
    [(build_tiny_sd1, "epsilon"), (build_tiny_sd2, "v_prediction"), (build_tiny_sdxl, "epsilon")],
)
def test_folder_loads_with_its_family_and_weights(tmp_path, build, prediction):
    original = build()
    _save(original, tmp_path, prediction)
    bundle = load_bundle(str(tmp_path))
    assert bundle.arch == original.arch
    assert bundle.prediction_type == prediction
    assert bundle.scheduler_config["prediction_type"] == prediction
    assert bundle.source.name == tmp_path.name and bundle.source.sha256 is None
    assert [t.pad_token_id for t in bundle.tokenizers] == [
        t.pad_token_id for t in original.tokenizers
    ]
    for ours, theirs in zip(bundle.modules().values(), original.modules().values()):
        theirs_state = theirs.state_dict()
        assert all(torch.equal(v, theirs_state[k]) for k, v in ours.state_dict().items())
        assert not any(p.requires_grad for p in ours.parameters())


def test_v_parameterization_overrides_the_folder(tmp_path):
    _save(build_tiny_sd2(), tmp_path, "epsilon")
    assert load_bundle(str(tmp_path), v_parameterization=True).prediction_type == "v_prediction"


def test_incomplete_folder_is_a_clear_error(tmp_path):
    build_tiny_sd1().unet.save_pretrained(str(tmp_path / "unet"))
    with pytest.raises(ModelError, match=r"no vae/config\.json"):
        load_bundle(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="a folder, not a file"):
        load_bundle(str(empty))


def test_family_from_the_unet_config():
    assert (
        folder_arch({"addition_embed_type": "text_time", "use_linear_projection": True}) == "sdxl"
    )
    assert folder_arch({"use_linear_projection": True, "cross_attention_dim": 1024}) == "sd2"
    assert folder_arch({"use_linear_projection": False, "cross_attention_dim": 768}) == "sd1"
