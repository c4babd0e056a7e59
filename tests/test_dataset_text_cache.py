"""Text-encoder output cache: refused where captions vary, one encoding per caption, same loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from dataset_helpers import concept, group, one_torch_thread  # noqa: F401

from lora_trainer.config import BUILTIN_TINY_MODEL, config_from_dict
from lora_trainer.dataset.text_cache import TextEncoderCache, cache_text_encoder_outputs
from lora_trainer.errors import ConfigError
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.train.batch import make_batch
from lora_trainer.train.conditioning import Conditioning, encode_conditioning
from lora_trainer.train.job import run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    img = tmp_path / "img"
    concept(img, "2_x", 3, captions=["x, red", "x, blue", "x, red"])
    concept(img, "1_y", 2)  # no captions: class tokens "y"
    return img


def test_kohyas_conditions_are_enforced():
    with pytest.raises(ConfigError, match=r"frozen text encoder.*network_train_unet_only"):
        config_from_dict({"cache_text_encoder_outputs": True})
    for option in ({"shuffle_caption": True}, {"caption_tag_dropout_rate": 0.1},
                   {"token_warmup_step": 10}, {"enable_wildcard": True}):  # fmt: skip
        with pytest.raises(ConfigError, match="captions change every step"):
            config_from_dict(
                {"cache_text_encoder_outputs": True, "network_train_unet_only": True, **option}
            )
    # whole-caption dropout is fine: the empty caption is cached too
    config_from_dict({"cache_text_encoder_outputs": True, "network_train_unet_only": True,
                      "caption_dropout_rate": 0.5, "caption_dropout_every_n_epochs": 2})  # fmt: skip


def test_varying_subsets_from_a_dataset_config_are_refused(root):
    data = group(root, shuffle_caption=True)
    with pytest.raises(ConfigError, match=r"2_x.*shuffle"):
        cache_text_encoder_outputs(data.datasets, lambda c, e: None, False)


def test_each_distinct_caption_is_encoded_once(root):
    bundle = build_tiny_sd1()
    calls: list[list[str]] = []

    def encode(captions, extras):
        calls.append(captions)
        return encode_conditioning(bundle, captions, None, torch.device("cpu"))

    data = group(root, caption_dropout_rate=0.3, caption_prefix="photo of")
    cache = cache_text_encoder_outputs(data.datasets, encode, uses_size_extras=False)
    assert sorted(c[0] for c in calls) == ["", "photo of x, blue", "photo of x, red", "photo of y"]
    assert len(cache) == 4
    samples = [data[i] for i in range(len(data))]
    assert {s["caption"] for s in samples} <= {
        "",
        "photo of x, blue",
        "photo of x, red",
        "photo of y",
    }
    for s in samples:
        expected = encode_conditioning(bundle, [s["caption"]], None, torch.device("cpu")).context
        assert torch.equal(s["conditioning"].context, expected)
        assert not s["conditioning"].context.requires_grad
    batch = make_batch(samples[:3], bundle, torch.Generator(), torch.device("cpu"))
    assert batch.conditioning.context.shape[0] == 3


def test_size_extras_make_separate_entries_when_they_matter(root):
    cache = TextEncoderCache(uses_size_extras=True)
    a = {"original_size": (64, 64), "crop_top_left": (0, 0), "target_size": (64, 64)}
    b = {**a, "crop_top_left": (0, 8)}
    cache.add("x", a, "first")
    cache.add("x", b, "second")
    assert (cache.lookup("x", a), cache.lookup("x", b), len(cache)) == ("first", "second", 2)
    flat = TextEncoderCache(uses_size_extras=False)
    flat.add("x", a, "only")
    assert flat.lookup("x", b) == "only"
    with pytest.raises(KeyError, match="not cached"):
        flat.lookup("y", a)
    # with flip_aug a tall image's crop moves when flipped (SDXL time_ids): two entries
    concept(root.parent / "tall", "1_t", 2, size=(64, 100), captions=["t, a", "t, b"])
    tall = group(root.parent / "tall", flip_aug=True).datasets[0]
    variants = tall.caption_variants()
    assert len(variants) == 4
    assert {dict(e)["crop_top_left"] for _, e in variants} == {(0, 11), (0, 12)}
    assert len(group(root.parent / "tall").datasets[0].caption_variants()) == 2


def test_concat_keeps_sdxl_style_extras(root):
    from lora_trainer.train.batch import concat_conditioning

    parts = [
        Conditioning(
            torch.ones(1, 77, 8) * i,
            {"text_embeds": torch.ones(1, 4) * i, "time_ids": torch.ones(1, 6)},
        )
        for i in range(3)
    ]
    joined = concat_conditioning(parts, torch.device("cpu"))
    assert joined.context.shape == (3, 77, 8) and joined.added_cond_kwargs["text_embeds"][
        :, 0
    ].tolist() == [0, 1, 2]


class CountingTextEncoder:
    def __init__(self, module):
        self.calls = 0
        module.register_forward_hook(self.hook)

    def hook(self, *args):
        self.calls += 1


def _train(tmp_path: Path, root: Path, name: str, **options):
    bundle = build_tiny_sd1()
    counter = CountingTextEncoder(bundle.text_encoder)
    values = {
        "pretrained_model_name_or_path": BUILTIN_TINY_MODEL, "train_data_dir": str(root),
        "output_dir": str(tmp_path / "out"), "output_name": name, "caption_extension": ".txt",
        "resolution": "64", "max_train_steps": 4, "seed": 2, "device": "cpu",
        "train_batch_size": 2, "network_train_unet_only": True, "caption_dropout_rate": 0.3,
    }  # fmt: skip
    values.update(options)
    result = run_training(config_from_dict(values), bundle=bundle)
    return result, counter.calls


def test_cached_and_uncached_training_give_the_same_loss(tmp_path, root):
    plain, plain_calls = _train(tmp_path, root, "plain")
    cached, cached_calls = _train(tmp_path, root, "cached", cache_text_encoder_outputs=True)
    assert plain.losses == pytest.approx(cached.losses, rel=1e-5)
    assert plain_calls == 4  # one text-encoder run per step
    assert (
        cached_calls == 4
    )  # one per distinct caption ("", "x, red", "x, blue", "y"), none per step
