"""Prompt conditioning as kohya computes it: SD1/SD2/SDXL, clip_skip, max_token_length, SDXL sizes."""

from __future__ import annotations

import pytest
import torch

from lora_trainer.models.assets import load_clip_tokenizer, load_openclip_tokenizer
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.models.tiny_sd2 import build_tiny_sd2
from lora_trainer.models.tiny_sdxl import build_tiny_sdxl
from lora_trainer.train.conditioning import (
    PromptOptions,
    encode_conditioning,
    encode_prompts,
    encode_text,
    size_time_ids,
)
from lora_trainer.train.token_chunks import join_windows, token_windows

CPU = torch.device("cpu")
BOS, EOS, A = 49406, 49407, 320  # "a" is one token
LONG = "a " * 100  # 100 tokens
TOKENS_76_ON = " ".join(["cat"] * 80)  # word 76 onwards differs between two captions


@pytest.fixture(scope="module")
def sd1():
    return build_tiny_sd1()


@pytest.fixture(scope="module")
def sdxl():
    return build_tiny_sdxl()


def test_default_window_is_the_plain_77_token_encoding():
    tokenizer = load_clip_tokenizer()
    ids = token_windows(tokenizer, ["a photo of a cat", LONG], None)
    plain = tokenizer(
        ["a photo of a cat", LONG],
        padding="max_length",
        truncation=True,
        max_length=77,
        return_tensors="pt",
    ).input_ids
    assert ids.shape == (2, 1, 77) and torch.equal(ids[:, 0], plain)
    assert torch.equal(token_windows(tokenizer, ["x"], 75), token_windows(tokenizer, ["x"], None))


def test_clip_windows_for_150_tokens():
    ids = token_windows(load_clip_tokenizer(), [LONG], 150)[0]
    assert ids.shape == (2, 77)
    assert ids[0].tolist() == [BOS] + [A] * 75 + [EOS]
    assert ids[1].tolist() == [BOS] + [A] * 25 + [EOS] * 51  # pads with EOS


def test_open_clip_windows_get_kohyas_eos_repairs():
    tokenizer = load_openclip_tokenizer()
    long_ids = token_windows(tokenizer, [LONG], 150)[0]
    assert long_ids[0].tolist() == [BOS] + [A] * 75 + [EOS]  # cut inside: last id made EOS
    assert long_ids[1].tolist() == [BOS] + [A] * 25 + [EOS] + [0] * 50
    short_ids = token_windows(tokenizer, ["a a"], 225)[0]
    assert short_ids.shape == (3, 77)
    assert short_ids[0].tolist()[:4] == [BOS, A, A, EOS] and short_ids[0, -1] == 0
    for empty in short_ids[1:]:  # past the caption's end: BOS EOS PAD...
        assert empty.tolist() == [BOS, EOS] + [0] * 75


def test_join_windows_keeps_bos_inner_states_and_the_last_state():
    batch, windows, width = 2, 3, 77
    hidden = torch.arange(batch * windows * width, dtype=torch.float32).reshape(
        batch * windows, width, 1
    )
    joined = join_windows(hidden, batch)
    assert joined.shape == (batch, windows * 75 + 2, 1)
    first = hidden[:windows, :, 0]  # sample 0's windows
    expected = [first[0, 0]] + [v for w in range(windows) for v in first[w, 1:76]] + [first[-1, -1]]
    assert joined[0, :, 0].tolist() == [float(v) for v in expected]
    assert torch.equal(join_windows(hidden[:2], 2), hidden[:2])  # one window: unchanged


def test_clip_skip_takes_the_earlier_layer_through_the_final_norm(sd1):
    te = sd1.text_encoder
    ids = token_windows(sd1.tokenizer, ["a red circle"], None)[:, 0]
    with torch.no_grad():
        out = te(ids, output_hidden_states=True)
        skip2 = encode_prompts(sd1, ["a red circle"], CPU, PromptOptions(clip_skip=2))
        skip1 = encode_prompts(sd1, ["a red circle"], CPU, PromptOptions(clip_skip=1))
        default = encode_prompts(sd1, ["a red circle"], CPU)
    assert torch.equal(skip2, te.text_model.final_layer_norm(out.hidden_states[-2]))
    assert torch.equal(skip1, default) and torch.equal(default, out.last_hidden_state)
    assert not torch.allclose(skip1, skip2)


@pytest.mark.parametrize("build", [build_tiny_sd1, build_tiny_sd2])
def test_long_captions_reach_the_text_encoder_with_max_token_length(build):
    bundle = build()
    captions = [TOKENS_76_ON, " ".join(["cat"] * 75 + ["dog"] * 5)]
    with torch.no_grad():
        short = encode_prompts(bundle, captions, CPU)
        long = encode_prompts(bundle, captions, CPU, PromptOptions(max_token_length=150))
    assert short.shape[1] == 77 and long.shape[1] == 152
    assert torch.equal(short[0], short[1])  # cut at 75 tokens: the ends are lost
    assert not torch.allclose(long[0], long[1])


def test_sdxl_context_pooled_and_sizes(sdxl):
    te1, te2 = sdxl.text_encoders
    caption = ["a red circle"]
    extra = {
        "original_size": torch.tensor([[96, 128]]),
        "crop_top_left": torch.tensor([[8, 16]]),
        "target_size": torch.tensor([[64, 64]]),
    }
    with torch.no_grad():
        cond = encode_conditioning(sdxl, caption, extra, CPU, PromptOptions(clip_skip=2))
        ids1 = token_windows(sdxl.tokenizers[0], caption, None)[:, 0]
        ids2 = token_windows(sdxl.tokenizers[1], caption, None)[:, 0]
        out1 = te1(ids1, output_hidden_states=True)
        out2 = te2(ids2, output_hidden_states=True)
    expected = torch.cat([out1.hidden_states[-2], out2.hidden_states[-2]], dim=-1)
    assert torch.equal(cond.context, expected)  # clip_skip ignored on SDXL, as in kohya
    eos = ids2[0].tolist().index(EOS)
    pooled = te2.text_projection(out2.last_hidden_state[0, eos])
    assert torch.allclose(cond.added_cond_kwargs["text_embeds"][0], pooled)
    assert cond.added_cond_kwargs["time_ids"].tolist() == [[96, 128, 8, 16, 64, 64]]
    latents = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        out = sdxl.unet(
            latents, torch.tensor([10]), cond.context, added_cond_kwargs=cond.added_cond_kwargs
        )
    assert out.sample.shape == latents.shape


def test_sdxl_sizes_change_the_prediction(sdxl):
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    preds = []
    with torch.no_grad():
        for size in ((64, 64), (1024, 768)):
            extra = {"original_size": [size]}
            cond = encode_conditioning(sdxl, ["a"], extra, CPU, PromptOptions(resolution=(64, 64)))
            preds.append(
                sdxl.unet(
                    latents,
                    torch.tensor([10]),
                    cond.context,
                    added_cond_kwargs=cond.added_cond_kwargs,
                ).sample
            )
    assert not torch.allclose(preds[0], preds[1])


def test_sdxl_default_sizes_are_the_training_resolution_as_height_width(sdxl):
    with torch.no_grad():
        cond = encode_conditioning(sdxl, ["a", "b"], None, CPU, PromptOptions(resolution=(96, 64)))
    assert cond.added_cond_kwargs["time_ids"].tolist() == [[64, 96, 0, 0, 64, 96]] * 2
    ids = size_time_ids({"target_size": (32, 48)}, 1, (64, 64))  # one sample's pair
    assert ids.tolist() == [[64, 64, 0, 0, 32, 48]]
    with pytest.raises(ValueError, match="3 entries for a batch of 2"):
        size_time_ids({"original_size": [(1, 2)] * 3}, 2, (64, 64))


def test_sdxl_pooled_comes_from_the_first_window_with_max_token_length(sdxl):
    with torch.no_grad():
        one = encode_text(sdxl, [TOKENS_76_ON], CPU, PromptOptions())
        long = encode_text(sdxl, [TOKENS_76_ON], CPU, PromptOptions(max_token_length=225))
    assert long.context.shape == (1, 227, 64)
    # window 1 is the first 75 tokens + EOS, like the single window: same pooled output
    assert torch.allclose(
        one.added_cond_kwargs["text_embeds"], long.added_cond_kwargs["text_embeds"]
    )
    assert "time_ids" not in long.added_cond_kwargs  # sizes are added per batch


def test_sd_models_have_no_added_conditioning(sd1):
    cond = encode_conditioning(sd1, ["a"], {"original_size": [(1, 1)]}, CPU)
    assert cond.added_cond_kwargs is None
