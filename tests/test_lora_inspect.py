"""`inspect` summaries of real kohya files and of kohya key layouts for every model family."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lora_trainer.lora.inspect import describe_lora, guess_architecture, top_tags, trigger_words
from lora_trainer.lora.kohya_file import KohyaLora, load_kohya_lora

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


@pytest.fixture(scope="module")
def kohya() -> KohyaLora:
    return load_kohya_lora(FIXTURES / "kohya_sd15_rank4.safetensors")


def from_key_list(name: str) -> KohyaLora:
    """A LoRA with a kohya key layout and no metadata; weights on the meta device (shapes only)."""
    keys = json.loads((FIXTURES / name).read_text())["keys"]
    tensors = {
        k: torch.tensor(1.0) if k.endswith(".alpha") else torch.empty(v["shape"], device="meta")
        for k, v in keys.items()
    }
    return KohyaLora(tensors=tensors, metadata={}, path=None)


def text(lines: list[str]) -> str:
    return "\n".join(lines)


def test_describes_the_kohya_fixture(kohya):
    out = text(describe_lora(kohya))
    for expected in (
        "File: kohya_sd15_rank4.safetensors (4.8 MB)",
        "Architecture: SD 1.x (from metadata)",
        "Network: LoRA, networks.lora",
        "Rank / alpha: 4 / 2 (scale 0.5)",
        "Modules: 264 (UNet 192, text encoder 72)",
        "Precision: fp16",
        "Trigger words (folder class tokens): sks dog",
        "Top caption tags: sks dog (3), red ball (1)",
        "learning_rate 0.0001",
        "steps 2 of 2",
        "epoch 1 of 1",
        "resolution 64x64",
        "optimizer AdamW",
        "scheduler constant",
        "seed 42",
        "Base model: random-sd15.safetensors (hash dadeb4e5, sha256 80014dc6b3)",
        "Trained: 2026-11-24 17:33 UTC, took 16 s",
        "sshs_model_hash 52c3a9acda verifies, sshs_legacy_hash verifies",
    ):
        assert expected in out


def test_describes_the_tiny_lora_without_hashes():
    out = text(describe_lora(load_kohya_lora(FIXTURES / "tiny-sd1-lora.safetensors")))
    assert "Rank / alpha: 4 / 4 (scale 1)" in out
    assert "Modules: 3 (UNet 2, text encoder 1)" in out
    assert "no sshs_model_hash recorded" in out
    assert "Trigger words" not in out


def test_no_metadata_guesses_from_keys(kohya):
    lora = KohyaLora(tensors=kohya.tensors, metadata={}, path=None)
    out = text(describe_lora(lora))
    assert "Architecture: SD 1.x (guessed from layer width 768)" in out
    assert "Metadata: none" in out
    assert "Hash: no sshs_model_hash recorded" in out


@pytest.mark.parametrize(
    ("key_list", "family", "modules"),
    [
        ("kohya_sd15_lora_keys.json", "SD 1.x", "Modules: 264 (UNet 192, text encoder 72)"),
        ("kohya_sd2_lora_keys.json", "SD 2.x", "Modules: 330 (UNet 192, text encoder 138)"),
        (
            "kohya_sdxl_lora_keys.json",
            "SDXL",
            "Modules: 986 (UNet 722, text encoder 1 (CLIP-L) 72, text encoder 2 (OpenCLIP bigG) 192)",
        ),
    ],
)
def test_families_from_kohya_key_layouts(key_list, family, modules):
    lora = from_key_list(key_list)
    assert guess_architecture(lora).startswith(family + " (guessed")
    out = text(describe_lora(lora))
    assert modules in out
    assert "Network: LoRA" in out and "Rank / alpha: 4 / 1 (scale 0.25)" in out


def test_locon_is_recognised():
    out = text(describe_lora(from_key_list("kohya_sd15_locon_keys.json")))
    assert "Network: LoCon (LoRA with" in out
    assert "Conv rank / alpha: 4 / 1" in out


def test_unet_only_lora_guesses_from_cross_attention_width():
    lora = from_key_list("kohya_sd2_lora_keys.json")
    unet_only = {k: v for k, v in lora.tensors.items() if k.startswith("lora_unet_")}
    assert guess_architecture(KohyaLora(unet_only, {}, None)).startswith("SD 2.x (guessed")


def test_metadata_family_wins_over_guess():
    lora = from_key_list("kohya_sd15_lora_keys.json")
    lora.metadata = {"modelspec.architecture": "stable-diffusion-v2-768-v/lora"}
    assert guess_architecture(lora) == "SD 2.x (768-v, v-prediction) (from metadata)"


def test_changed_weights_or_edited_metadata_are_reported(kohya):
    tensors = dict(kohya.tensors)
    key = next(k for k in tensors if k.endswith("lora_up.weight"))
    tensors[key] = tensors[key] + 1
    out = text(describe_lora(KohyaLora(tensors, kohya.metadata, None)))
    assert "sshs_model_hash does NOT match" in out
    edited = dict(kohya.metadata, ss_training_comment="edited later")
    out = text(describe_lora(KohyaLora(kohya.tensors, edited, None)))
    assert "sshs_model_hash 52c3a9acda verifies, sshs_legacy_hash differs" in out


def test_varying_ranks_are_shown():
    up, down = "lora_unet_a_to_q", "lora_unet_b_to_k"
    tensors = {
        f"{up}.lora_down.weight": torch.zeros(4, 8), f"{up}.lora_up.weight": torch.zeros(8, 4),
        f"{down}.lora_down.weight": torch.zeros(8, 8), f"{down}.lora_up.weight": torch.zeros(8, 8),
    }  # fmt: skip
    out = text(describe_lora(KohyaLora(tensors, {}, None)))
    assert "Rank / alpha: 4-8 (varies per module) / 4-8" in out


def test_trigger_words_from_dataset_config_mode():
    datasets = [{"subsets": [{"class_tokens": "ohwx man", "is_reg": False},
                             {"class_tokens": "man", "is_reg": True}]}]  # fmt: skip
    md = {
        "ss_datasets": json.dumps(datasets),
        "ss_dataset_dirs": json.dumps({"img": {}, "5_ohwx man": {}}),
        "ss_tag_frequency": json.dumps({"a": {"x": 1, "y": 3}, "b": {"x": 4}}),
    }
    assert trigger_words(md) == ["ohwx man"]
    assert top_tags(md) == [("x", 5), ("y", 3)]
    assert trigger_words({"ss_dataset_dirs": "not json"}) == []
