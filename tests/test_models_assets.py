"""Bundled SD2/SDXL configs and the OpenCLIP tokenizer settings; the built-in tiny models."""

from __future__ import annotations

import pytest
import torch

from lora_trainer.errors import ModelError
from lora_trainer.models import assets
from lora_trainer.models.arch_configs import bundled_configs, normalise_prediction_type
from lora_trainer.models.ldm_bundle import default_tokenizers
from lora_trainer.models.loading import BUILTIN_MODELS, load_bundle

PROMPTS = ["a photo of a cat", "Hello, World!!", "wow ! !!!", "café naïve", "the " * 100, ""]


def test_openclip_tokenizer_is_clip_with_zero_padding():
    clip, openclip = assets.load_clip_tokenizer(), assets.load_openclip_tokenizer()
    assert (openclip.pad_token, openclip.pad_token_id) == ("!", 0)
    assert (openclip.bos_token_id, openclip.eos_token_id, openclip.model_max_length) == (
        49406,
        49407,
        77,
    )
    for prompt in PROMPTS:
        ours = openclip(prompt, padding="max_length", truncation=True, max_length=77).input_ids
        theirs = clip(prompt, padding="max_length", truncation=True, max_length=77).input_ids
        end = theirs.index(49407) + 1  # identical up to EOS, then 0 instead of 49407
        assert ours[:end] == theirs[:end]
        assert set(ours[end:]) <= {0} and len(ours) == 77
    # a "!" in a caption is text, never the padding id
    assert 0 not in openclip("wow ! !!!").input_ids


def test_families_get_their_tokenizers_and_configs():
    assert [t.pad_token_id for t in default_tokenizers("sd1")] == [49407]
    assert [t.pad_token_id for t in default_tokenizers("sd2")] == [0]
    assert [t.pad_token_id for t in default_tokenizers("sdxl")] == [49407, 0]
    sd2, sdxl = bundled_configs("sd2"), bundled_configs("sdxl")
    assert sd2.unet["use_linear_projection"] and sd2.text_encoders[0].num_hidden_layers == 23
    assert sd2.scale_factor == pytest.approx(0.18215) and sd2.prediction_type == "epsilon"
    assert sdxl.unet["addition_embed_type"] == "text_time" and sdxl.scale_factor == pytest.approx(
        0.13025
    )
    assert [c.hidden_size for c in sdxl.text_encoders] == [768, 1280]
    assert sd2.with_prediction_type("v").scheduler["prediction_type"] == "v_prediction"
    assert sd2.scheduler["prediction_type"] == "epsilon"  # a copy was changed
    with pytest.raises(ModelError, match="prediction type 'x'"):
        normalise_prediction_type("x")
    with pytest.raises(ModelError, match="unknown model family"):
        bundled_configs("sd3")


@pytest.mark.parametrize(
    ("name", "arch", "prediction", "encoders"),
    [
        ("builtin:tiny-sd1", "sd1", "epsilon", 1),
        ("builtin:tiny-sd2", "sd2", "v_prediction", 1),
        ("builtin:tiny-sdxl", "sdxl", "epsilon", 2),
    ],
)
def test_builtin_tiny_models(name, arch, prediction, encoders):
    assert name in BUILTIN_MODELS
    bundle = load_bundle(name)
    assert (bundle.arch, bundle.prediction_type, len(bundle.text_encoders)) == (
        arch,
        prediction,
        encoders,
    )
    assert bundle.source.name == name
    again = load_bundle(name)  # seeded: the same weights every time
    assert all(torch.equal(a, b) for a, b in zip(bundle.unet.parameters(), again.unet.parameters()))
    assert not any(p.requires_grad for m in bundle.modules().values() for p in m.parameters())
