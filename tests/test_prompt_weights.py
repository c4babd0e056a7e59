"""Prompt weighting in sample prompts, against the rules of kohya's lpw pipelines (48d368fa)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lora_trainer.config import BUILTIN_TINY_MODEL, TrainConfig, config_from_dict
from lora_trainer.demo import make_demo_dataset
from lora_trainer.errors import ConfigError
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.models.tiny_sd2 import build_tiny_sd2
from lora_trainer.models.tiny_sdxl import build_tiny_sdxl
from lora_trainer.train.conditioning import PromptOptions, encode_conditioning, encode_prompts
from lora_trainer.train.events import MessageEvent, SampleEvent
from lora_trainer.train.job import run_training
from lora_trainer.train.prompt_weights import parse_prompt_attention, tokenize_weighted
from lora_trainer.train.sample_prompts import SamplePrompt, load_sample_prompts
from lora_trainer.train.sampling import ImageSampler
from lora_trainer.train.weighted_conditioning import apply_weights, encode_weighted_prompts

CPU = torch.device("cpu")
R, S = 1.1, 1 / 1.1  # kohya's round and square bracket factors


@pytest.fixture(scope="module")
def sd1():
    return build_tiny_sd1()


@pytest.fixture(scope="module")
def sd2():
    return build_tiny_sd2()


@pytest.fixture(scope="module")
def sdxl():
    return build_tiny_sdxl()


# ---- parsing ----


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", R), (" word", 1.0)]),
        ("a [blurry] b", [("a ", 1.0), ("blurry", S), (" b", 1.0)]),
        ("(sks dog:1.3), x", [("sks dog", 1.3), (", x", 1.0)]),
        ("((a))", [("a", R * R)]),
        ("[[a]]", [("a", S * S)]),
        ("((a:2))", [("a", 2.0 * R)]),
        ("([a])", [("a", S * R)]),  # inner bracket first, as it closes first
        ("(a:-0.5)", [("a", -0.5)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", R)]),
        # kohya's own docstring case: products in its order, equal weights joined
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0), ("house", 1.3 * R * R), (" ", R), ("on", S * R),
                (" a ", R), ("hill", 0.5 * R), (", sun, ", R), ("sky", R * R * R * R),
                (".", R),
            ],
        ),
    ],
)  # fmt: skip
def test_brackets_and_explicit_weights(text, expected):
    got = parse_prompt_attention(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected], rel=1e-12)


def test_kohyas_exact_floating_point_products():
    # the weights multiply in kohya's order, so its documented values come out bit for bit
    weights = dict(parse_prompt_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."))
    assert weights["house"] == 1.5730000000000004
    assert weights["sky"] == 1.4641000000000006


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"\(literal\]", [("(literal]", 1.0)]),
        (r"\[a\) \\ b", [(r"[a) \ b", 1.0)]),
        (r"(a\)b)", [("a)b", R)]),
        (r"a \b", [("a b", 1.0)]),  # a lone backslash is dropped
        ("", [("", 1.0)]),
        ("()", [("", 1.0)]),
    ],
)
def test_escapes(text, expected):
    assert parse_prompt_attention(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(unbalanced", [("unbalanced", R)]),
        ("a [b (c", [("a ", 1.0), ("b ", S), ("c", R * S)]),
        ("a) b]", [("a) b]", 1.0)]),  # closing brackets with no opener are text
        ("x:1.5) y", [("x:1.5) y", 1.0)]),  # a weight outside round brackets is text
        ("[a:1.5]", [("a:1.5", S)]),  # square brackets take no number
        ("a BREAK b", [("a BREAK b", 1.0)]),  # kohya's samples have no BREAK
    ],
)
def test_unbalanced_and_plain_text(text, expected):
    got = parse_prompt_attention(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected], rel=1e-12)


@pytest.mark.parametrize("text", ["(dog:1.2.3)", "(dog:.)", "((a:-.))"])
def test_a_weight_that_is_not_a_number_is_a_clear_error(text):
    with pytest.raises(ConfigError, match="is not a number") as info:
        parse_prompt_attention(text)
    assert r"\(" in info.value.message  # tells how to write a literal bracket


def test_bad_weights_in_a_prompt_file_are_refused_with_the_prompt_named(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("fine (dog:1.2)\nodd (dog:1.2.3)\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"p.txt, prompt 2\)"):
        load_sample_prompts(path, "ddim")
    path.write_text("fine --n (bad:..)\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"prompt 1, negative prompt\)"):
        load_sample_prompts(path, "ddim")


# ---- tokens ----


def test_pieces_are_tokenized_alone_and_their_tokens_share_the_weight(sd1):
    tokenizer = sd1.tokenizer
    plain = tokenizer("a photo of sks dog, blurry").input_ids[1:-1]
    tokens = tokenize_weighted(tokenizer, "a photo of (sks dog:1.3), [blurry]", 75)
    assert tokens.ids == plain and not tokens.truncated
    n_dog = len(tokenizer("sks dog").input_ids) - 2
    n_head = len(tokenizer("a photo of").input_ids) - 2
    assert tokens.weights[n_head : n_head + n_dog] == [1.3] * n_dog
    assert tokens.weights[-1] == pytest.approx(S) and set(tokens.weights[:n_head]) == {1.0}
    cut = tokenize_weighted(tokenizer, "(a " * 80, 75)
    assert cut.truncated and len(cut.ids) == len(cut.weights) == 75


# ---- SD1 / SD2: kohya's lpw_stable_diffusion ----


@pytest.mark.parametrize("clip_skip", [None, 2])
def test_sd1_weights_of_one_give_the_unweighted_training_encoding(sd1, clip_skip):
    options = PromptOptions(clip_skip=clip_skip)
    prompts = ["", "a photo of sks dog, blurry"]
    with torch.no_grad():
        plain = encode_prompts(sd1, prompts, CPU, options)
        same = encode_weighted_prompts(sd1, prompts, CPU, options).conditioning.context
        unit = encode_weighted_prompts(sd1, ["", "(a photo of sks dog:1.0), blurry"], CPU, options)
    assert torch.equal(same, plain)
    assert torch.equal(unit.conditioning.context, plain)


def test_sd1_weight_scales_exactly_its_tokens_then_the_mean_is_restored():
    sd1 = build_tiny_sd1()
    # the tiny encoder's final norm has no bias, so its states average ~0 and a restored
    # mean would be noise; a real CLIP's bias keeps the mean well away from 0
    with torch.no_grad():
        sd1.text_encoder.text_model.final_layer_norm.bias.fill_(0.25)
    tokenizer = sd1.tokenizer
    head = len(tokenizer("a photo of").input_ids) - 2
    dog = len(tokenizer("sks dog").input_ids) - 2
    with torch.no_grad():
        plain = encode_prompts(sd1, ["a photo of sks dog"], CPU)[0]
        weighted = encode_weighted_prompts(sd1, ["a photo of (sks dog:1.3)"], CPU)
    context = weighted.conditioning.context[0]
    # before restoring the mean: exactly the dog tokens (after BOS) are 1.3 times larger
    weights = torch.ones(1, 77)
    weights[0, 1 + head : 1 + head + dog] = 1.3
    raw = apply_weights(plain[None], weights, restore_mean=False)[0]
    changed = (raw != plain).any(dim=-1).nonzero().flatten().tolist()
    assert changed == list(range(1 + head, 1 + head + dog))
    # after: one factor for the whole prompt brings the mean back
    factor = plain.float().mean() / raw.float().mean()
    assert torch.allclose(context, raw * factor, rtol=1e-5, atol=1e-7)
    assert context.float().mean().item() == pytest.approx(plain.float().mean().item(), rel=1e-4)


def test_mean_restoration_keeps_each_prompts_mean():
    hidden = torch.rand(2, 5, 3) + 0.5
    weights = torch.tensor([[1.0, 2.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.5, 1.0]])
    restored = apply_weights(hidden, weights, restore_mean=True)
    assert torch.allclose(restored.mean(dim=(1, 2)), hidden.mean(dim=(1, 2)))
    ratio = restored / hidden  # per prompt: 2r on the weighted token, r elsewhere
    assert torch.allclose(ratio[0, 1], 2 * ratio[0, 0]) and torch.allclose(ratio[0, 0], ratio[0, 4])
    # a mean of exactly 0 would be 0/0 = NaN in kohya; the weighted states are kept instead
    zero = torch.tensor([[[1.0, -1.0], [2.0, -2.0]]])
    weighted = torch.tensor([[[1.0, -1.0], [6.0, -6.0]]])
    assert torch.equal(apply_weights(zero, torch.tensor([[1.0, 3.0]]), True), weighted)


def test_sd1_long_prompts_use_up_to_three_whole_windows_whatever_max_token_length(sd1):
    options = PromptOptions(max_token_length=None)  # kohya's sample pipeline ignores it
    with torch.no_grad():
        two = encode_weighted_prompts(sd1, ["", "cat " * 100], CPU, options)
        three = encode_weighted_prompts(sd1, ["dog " * 200, "(cat)"], CPU, options)
        cut = encode_weighted_prompts(sd1, ["cat " * 300], CPU, options)
    # no BOS/EOS dropped between windows: 77 states each; prompt and negative share the length
    assert two.conditioning.context.shape == (2, 154, 32)
    assert three.conditioning.context.shape == (2, 231, 32)
    assert two.truncated == (False, False) and cut.truncated == (True,)
    assert cut.conditioning.context.shape[1] == 231


def test_sd2_pads_with_eos_and_repairs_window_ends_as_kohyas_pipeline(sd2):
    tokenizer, encoder = sd2.tokenizer, sd2.text_encoder
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    cat = tokenizer("cat").input_ids[1]
    with torch.no_grad():
        short = encode_weighted_prompts(sd2, ["cat cat"], CPU).conditioning.context
        long = encode_weighted_prompts(sd2, ["cat " * 80], CPU).conditioning.context
        want_short = encoder(torch.tensor([[bos, cat, cat] + [eos] * 74])).last_hidden_state
        windows = torch.tensor(
            [[bos] + [cat] * 75 + [eos], [bos] + [cat] * 5 + [eos] * 71]  # cut window ends in EOS
        )
        want_long = encoder(windows).last_hidden_state.reshape(1, 154, -1)
    assert torch.equal(short, want_short)
    assert torch.equal(long, want_long)


# ---- SDXL: kohya's strategy_sdxl ----


@pytest.mark.parametrize("max_token_length", [None, 150])
def test_sdxl_weights_of_one_give_the_training_encoding(sdxl, max_token_length):
    options = PromptOptions(max_token_length=max_token_length)
    prompts = ["", "a photo of sks dog " * 8]
    with torch.no_grad():
        plain = encode_conditioning(sdxl, prompts, None, CPU, options)
        weighted = encode_weighted_prompts(sdxl, prompts, CPU, options).conditioning
    assert torch.equal(weighted.context, plain.context)
    assert torch.equal(
        weighted.added_cond_kwargs["text_embeds"], plain.added_cond_kwargs["text_embeds"]
    )


@pytest.mark.parametrize("max_token_length", [None, 150])
def test_sdxl_weights_scale_their_tokens_in_both_encoders_and_leave_pooled_alone(
    sdxl, max_token_length
):
    options = PromptOptions(max_token_length=max_token_length)
    filler = "cat " * 80 if max_token_length else ""  # puts the weighted words in window 2
    with torch.no_grad():
        plain = encode_weighted_prompts(sdxl, [filler + "sks dog"], CPU, options).conditioning
        weighted = encode_weighted_prompts(sdxl, [filler + "(sks dog:1.5)"], CPU, options)
    context = weighted.conditioning.context
    first = 1 + len(sdxl.tokenizer(filler).input_ids) - 2
    dog = len(sdxl.tokenizer("sks dog").input_ids) - 2
    rows = list(range(first, first + dog))
    changed = (context != plain.context).any(dim=-1)[0].nonzero().flatten().tolist()
    assert changed == rows  # no mean restored for SDXL
    assert torch.equal(context[0, rows], plain.context[0, rows] * 1.5)
    pooled = weighted.conditioning.added_cond_kwargs["text_embeds"]
    assert torch.equal(pooled, plain.added_cond_kwargs["text_embeds"])


def test_sdxl_prompts_are_cut_at_max_token_length(sdxl):
    with torch.no_grad():
        short = encode_weighted_prompts(sdxl, ["cat " * 100], CPU)
        long = encode_weighted_prompts(
            sdxl, ["cat " * 100], CPU, PromptOptions(max_token_length=150)
        )
    assert short.truncated == (True,) and short.conditioning.context.shape[1] == 77
    assert long.truncated == (False,) and long.conditioning.context.shape[1] == 152


# ---- sampling ----


def _sampler(bundle, tmp_path: Path, emit=lambda e: None) -> ImageSampler:
    config = TrainConfig(output_name="s", resolution="64")
    return ImageSampler(bundle, config, tmp_path, CPU, emit)


def _pixels(sampler: ImageSampler, prompt: SamplePrompt) -> torch.Tensor:
    image = sampler.image(prompt, 3)
    return torch.tensor(list(image.getdata()), dtype=torch.float32)


@pytest.mark.parametrize("build", [build_tiny_sd1, build_tiny_sdxl])
def test_weighted_prompts_change_the_sample_image(build, tmp_path):
    sampler = _sampler(build(), tmp_path)
    base = SamplePrompt(0, "sks toy, red circle", "blurry", 64, 64, None, 5.0, 3, "euler")
    plain = _pixels(sampler, base)
    assert torch.equal(_pixels(sampler, replace(base, prompt="(sks toy, red circle:1.0)")), plain)
    weighted = _pixels(sampler, replace(base, prompt="(sks toy:1.5), [red circle]"))
    negative = _pixels(sampler, replace(base, negative_prompt="(blurry:1.6)"))
    assert torch.isfinite(weighted).all()
    assert not torch.equal(weighted, plain) and not torch.equal(negative, plain)


def test_a_cut_prompt_is_reported_once(sd1, tmp_path):
    events: list = []
    sampler = _sampler(sd1, tmp_path, events.append)
    prompt = SamplePrompt(1, "cat " * 300, "short", 64, 64, 1, 5.0, 1, "euler")
    with torch.no_grad():
        sampler._conditioning(prompt, True, torch.no_grad)
        sampler._conditioning(prompt, True, torch.no_grad)
    texts = [e.text for e in events if isinstance(e, MessageEvent) and e.level == "warning"]
    assert texts == [
        "The prompt of sample 2 is longer than the text encoder takes; its end was cut "
        "(225 tokens for SD1/SD2, max_token_length for SDXL)"
    ]


def test_weighted_sample_prompts_during_training(tmp_path):
    data = make_demo_dataset(tmp_path / "data", count=2)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "a photo of (sks toy:1.3), [blurry] --n (lowres:1.2) --w 64 --h 64 --s 2 --d 5\n",
        encoding="utf-8",
    )
    config = config_from_dict(
        {
            "pretrained_model_name_or_path": BUILTIN_TINY_MODEL,
            "train_data_dir": str(data),
            "output_dir": str(tmp_path / "out"),
            "output_name": "w",
            "caption_extension": ".txt",
            "resolution": "64",
            "max_train_steps": 1,
            "device": "cpu",
            "sample_prompts": str(prompts),
            "sample_at_first": True,
        }
    )
    events: list = []
    run_training(config, emit=events.append)
    samples = [e for e in events if isinstance(e, SampleEvent)]
    assert len(samples) == 1 and samples[0].prompts == ("a photo of (sks toy:1.3), [blurry]",)
    assert samples[0].paths[0].is_file()
