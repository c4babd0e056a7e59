"""The bundled CLIP tokenizer and SD1.5 configs, checked against upstream ground truth."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lora_trainer.errors import ModelError
from lora_trainer.models import assets

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
FIXTURE_CLIP = FIXTURES / "tiny-clip"

CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]

PROMPTS = [
    "a photo of a cat",
    "A Photo Of A CAT",
    "",
    "   ",
    "Hello, World!!",
    "don't stop, it's 3.14159 o'clock",
    "(masterpiece:1.2), [blue hair], {x|y}, <lora:name:0.7>",
    "sks person, portrait photo, 85mm, f/1.8, bokeh",
    "café naïve façade — “quotes” ‘single’ «guillemets»",
    "Straße Œuvre ÆØÅ ñandú",
    "日本語のテキスト 中文 한국어",
    "emoji 🐱🔥 👍🏽 and a ZWJ family 👨\u200d👩\u200d👧",
    "Ω≈ç√∫˜µ≤≥÷ ±§¶ ©®™",
    "tabs\tand\nnewlines\r\nmixed   spaces",
    "<|startoftext|>already special<|endoftext|>",
    "hyphen-ated words_with_underscores and/slashes",
    "1girl, solo, looking_at_viewer, 2boys",
    "numbers 1234567890 and 1,000,000.50",
    "!!!???...,,,;;;:::",
    "ALLCAPSWORDWITHOUTSPACESTHATISVERYLONGANDUNUSUAL",
    "the " * 120,  # far over 77 tokens: must be cut, ending with <|endoftext|>
    "a long scene description, " * 30,
]


def _load_dev_script():
    path = REPO / "dev" / "make_clip_tokenizer.py"
    spec = importlib.util.spec_from_file_location("make_clip_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ours():
    return assets.load_clip_tokenizer()


@pytest.fixture(scope="module")
def reference():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(FIXTURE_CLIP), local_files_only=True)


def _merge_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# --- tokenizer files -------------------------------------------------------------------


def test_vocab_is_the_openai_vocab():
    ours = json.loads((assets.CLIP_TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8"))
    ref = json.loads((FIXTURE_CLIP / "vocab.json").read_text(encoding="utf-8"))
    assert len(ours) == 49408
    assert ours == ref


def test_merges_are_the_openai_merges():
    ours = _merge_lines(assets.CLIP_TOKENIZER_DIR / "merges.txt")
    ref = _merge_lines(FIXTURE_CLIP / "merges.txt")
    assert ours[0].startswith("#version")
    assert ours == ref


def test_generator_derives_the_vocab_from_the_merges():
    # Independent of the bundled files: the script's derivation applied to the hub's merges
    # must give the hub's vocabulary, id for id.
    script = _load_dev_script()
    merges = [tuple(line.split()) for line in _merge_lines(FIXTURE_CLIP / "merges.txt")[1:]]
    ref = json.loads((FIXTURE_CLIP / "vocab.json").read_text(encoding="utf-8"))
    assert script.build_vocab(merges) == ref


def test_byte_symbols_are_printable_and_unique():
    symbols = _load_dev_script().byte_symbols()
    assert len(set(symbols)) == 256
    assert not any(s.isspace() or not s.isprintable() for s in symbols)


def test_bundled_configs_are_what_the_generator_writes():
    script = _load_dev_script()
    folder = assets.CLIP_TOKENIZER_DIR
    assert json.loads((folder / "tokenizer_config.json").read_text()) == script.tokenizer_config()
    assert json.loads((folder / "special_tokens_map.json").read_text()) == script.special_tokens()


# --- tokenizer behaviour ---------------------------------------------------------------


def test_cat_prompt_ids(ours):
    assert ours("a photo of a cat").input_ids == CAT_IDS


def test_special_tokens_are_sd1_conventions(ours, reference):
    assert ours.model_max_length == 77
    assert (ours.bos_token_id, ours.eos_token_id) == (49406, 49407)
    assert ours.pad_token_id == 49407  # SD1 pads with <|endoftext|>
    assert ours.unk_token == reference.unk_token
    assert len(ours) == len(reference) == 49408


@pytest.mark.parametrize("prompt", PROMPTS)
def test_tokenizer_matches_the_openai_tokenizer(ours, reference, prompt):
    kwargs = {"padding": "max_length", "truncation": True, "max_length": 77}
    got = ours(prompt, **kwargs).input_ids
    assert got == reference(prompt, **kwargs).input_ids
    assert len(got) == 77
    assert ours.tokenize(prompt) == reference.tokenize(prompt)


def test_long_prompt_is_cut_at_77(ours):
    ids = ours("the " * 120, truncation=True, max_length=ours.model_max_length).input_ids
    assert len(ids) == 77
    assert ids[0] == 49406 and ids[-1] == 49407
    assert ids[1:-1] == [ours.convert_tokens_to_ids("the</w>")] * 75


# --- configs ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sd15_dump():
    """What a real A1111 v1.10.1 recorded about its loaded SD1.5 model."""
    return json.loads((FIXTURES / "a1111_sd15_state_dict.json").read_text())


@pytest.fixture(scope="module")
def sd15_checkpoint(sd15_dump):
    """Meta tensors with the key layout and shapes of a real SD1.5 checkpoint file."""
    return {
        key: torch.empty(info["shape"], device="meta")
        for key, info in sd15_dump["checkpoint_tensors"].items()
    }


def _shapes(state_dict: dict) -> dict[str, tuple[int, ...]]:
    # position_ids is a buffer whose persistence changed across transformers versions.
    return {k: tuple(v.shape) for k, v in state_dict.items() if not k.endswith("position_ids")}


def test_unet_config_matches_the_converted_sd15_layout(sd15_checkpoint):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    config = assets.sd15_unet_config()
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    converted = convert_ldm_unet_checkpoint(sd15_checkpoint, config)
    assert _shapes(unet.state_dict()) == _shapes(converted)
    assert tuple(unet.conv_in.weight.shape) == (320, 4, 3, 3)
    attn = unet.down_blocks[0].attentions[0].transformer_blocks[0]
    assert attn.attn1.heads == 8 and tuple(attn.attn2.to_k.weight.shape) == (320, 768)
    assert tuple(unet.down_blocks[0].attentions[0].proj_in.weight.shape) == (320, 320, 1, 1)


def test_vae_config_matches_the_converted_sd15_layout(sd15_checkpoint, sd15_dump):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    config = assets.sd15_vae_config()
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(config)
    assert _shapes(vae.state_dict()) == _shapes(convert_ldm_vae_checkpoint(sd15_checkpoint, config))
    assert vae.config.scaling_factor == sd15_dump["facts"]["scale_factor"]["value"]


def test_text_encoder_config_matches_the_sd15_layout(sd15_checkpoint, sd15_dump):
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    config = assets.sd15_text_encoder_config()
    assert isinstance(config, CLIPTextConfig)
    with torch.device("meta"):
        model = CLIPTextModel(config)
    assert _shapes(model.state_dict()) == _shapes(convert_ldm_clip_checkpoint(sd15_checkpoint))
    live_config = sd15_dump["facts"]["text_encoders"]["cond_stage_model"][
        "wrapped.transformer.config"
    ]
    for key, value in live_config.items():
        if not key.startswith("_"):
            assert getattr(config, key) == value, key


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_scheduler_config_gives_the_sd1_schedule_without_warnings(sd15_dump):
    from diffusers import DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler

    config = assets.sd15_scheduler_config()
    # diffusers' loggers do not propagate to the root logger, so listen on its own.
    records = _Records()
    diffusers_logger = logging.getLogger("diffusers")
    diffusers_logger.addHandler(records)
    try:
        ddpm = DDPMScheduler.from_config(config)
        ddim = DDIMScheduler.from_config(config)
        EulerDiscreteScheduler.from_config(config)
        DDPMScheduler.from_config({**config, "not_a_real_key": 1})  # proves we would see it
    finally:
        diffusers_logger.removeHandler(records)
    assert len([m for m in records.messages if "not expected" in m]) == 1
    assert ddpm.config.prediction_type == "epsilon" and ddpm.config.num_train_timesteps == 1000
    assert ddim.config.set_alpha_to_one is False and ddim.config.steps_offset == 1
    # A1111 holds the same schedule as an fp16-rounded buffer.
    facts = sd15_dump["facts"]
    cumprod = ddpm.alphas_cumprod
    assert cumprod[0].half().item() == facts["alphas_cumprod"]["first"]
    assert cumprod[-1].half().item() == facts["alphas_cumprod"]["last"]


def test_json_configs_are_fresh_copies():
    first = assets.sd15_unet_config()
    first["in_channels"] = 9
    assert assets.sd15_unet_config()["in_channels"] == 4


def test_missing_or_foreign_asset_paths_are_refused():
    with pytest.raises(ModelError, match="missing"):
        assets.load_json_config("sd15/nope/config.json")
    with pytest.raises(ValueError):
        assets.load_json_config("../assets.py")


# --- offline -----------------------------------------------------------------------------

_OFFLINE_SCRIPT = """
import socket, sys

def refuse(*args, **kwargs):
    raise OSError("network access attempted")

socket.socket.connect = refuse
socket.create_connection = refuse
import torch
from transformers import CLIPTextModel
from lora_trainer.models import assets

tok = assets.load_clip_tokenizer()
with torch.device("meta"):
    CLIPTextModel(assets.sd15_text_encoder_config())
assets.sd15_unet_config(); assets.sd15_vae_config(); assets.sd15_scheduler_config()
print(tok("a photo of a cat").input_ids)
"""


def test_assets_load_offline_with_an_empty_cache(tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),  # an empty cache: nothing can come from there
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == str(CAT_IDS)
