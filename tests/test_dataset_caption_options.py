"""Caption options with kohya's semantics and order: keep_tokens, separators, dropout, warmup, wildcards."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from dataset_helpers import concept, group

from lora_trainer.dataset.caption_process import (
    TrainingClock,
    expand_wildcards,
    fixed_caption,
    process_caption,
    split_tags,
    warmup_length,
)
from lora_trainer.dataset.spec import CaptionOptions

CAPTION = "sks dog, red collar, grass, sunny, park, ball, tree"
TAGS = [t.strip() for t in CAPTION.split(",")]
N = 4000  # draws for the rate tests; bounds below are about 5 standard deviations


def _run(options: CaptionOptions, caption: str = CAPTION, seed: int = 0, clock=None):
    return process_caption(options, caption, random.Random(seed), clock or TrainingClock())


def _within(count: int, n: int, p: float) -> bool:
    sigma = math.sqrt(n * p * (1 - p))
    return abs(count - n * p) <= 5 * sigma


def test_defaults_leave_the_caption_alone():
    assert _run(CaptionOptions()) == CAPTION


def test_keep_tokens_never_moves_the_first_tags():
    options = CaptionOptions(shuffle_caption=True, keep_tokens=2)
    orders = set()
    for seed in range(200):
        tags = _run(options, seed=seed).split(", ")
        assert tags[:2] == TAGS[:2]
        assert sorted(tags[2:]) == sorted(TAGS[2:])
        orders.add(tuple(tags))
    assert len(orders) > 50  # the rest really is shuffled


def test_keep_tokens_with_tag_dropout_never_drops_kept_tags():
    options = CaptionOptions(keep_tokens=1, caption_tag_dropout_rate=0.9)
    for seed in range(200):
        assert _run(options, seed=seed).split(", ")[0] == "sks dog"


def test_keep_tokens_separator_fixes_a_prefix_and_a_suffix():
    options = CaptionOptions(shuffle_caption=True, keep_tokens_separator="|||", keep_tokens=5)
    caption = "sks dog, photo ||| a, b, c, d ||| best quality, 4k"
    for seed in range(50):
        tags = _run(options, caption, seed).split(", ")
        # the separator wins over keep_tokens
        assert tags[:2] == ["sks dog", "photo"] and tags[-2:] == ["best quality", "4k"]
        assert sorted(tags[2:-2]) == ["a", "b", "c", "d"]


def test_split_keeps_empty_tags_like_kohya_without_separator():
    options = CaptionOptions()
    assert split_tags(options, "a, b, ") == ([], ["a", "b", ""], [])
    sep = CaptionOptions(keep_tokens_separator="|")
    assert split_tags(sep, "a, | b, , c") == (["a"], ["b", "c"], [])


def test_caption_dropout_rate_is_honoured():
    options = CaptionOptions(caption_dropout_rate=0.25)
    dropped = sum(_run(options, seed=s) == "" for s in range(N))
    assert _within(dropped, N, 0.25)
    kept = {_run(options, seed=s) for s in range(N)} - {""}
    assert kept == {CAPTION}


def test_caption_tag_dropout_rate_is_honoured_per_tag():
    options = CaptionOptions(caption_tag_dropout_rate=0.3)
    counts = Counter()
    for seed in range(N):
        counts.update(_run(options, seed=seed).split(", "))
    for tag in TAGS:
        assert _within(N - counts[tag], N, 0.3), tag


def test_dropout_every_n_epochs_drops_whole_epochs():
    options = CaptionOptions(caption_dropout_every_n_epochs=3)
    results = {e: _run(options, clock=TrainingClock(epoch=e)) for e in range(1, 8)}
    assert [e for e, c in results.items() if c == ""] == [3, 6]


def test_token_warmup_grows_as_kohyas_does():
    # kohya: floor(step * (len - min) / warmup_step) + min tags until warmup_step
    options = CaptionOptions(token_warmup_min=1, token_warmup_step=6)
    lengths = [len(_run(options, clock=TrainingClock(step=s)).split(", ")) for s in range(9)]
    assert lengths == [1, 2, 3, 4, 5, 6, 7, 7, 7]
    assert _run(options, clock=TrainingClock(step=2)) == ", ".join(TAGS[:3])  # the first tags


def test_token_warmup_below_one_is_a_fraction_of_all_steps():
    options = CaptionOptions(token_warmup_min=2, token_warmup_step=0.5)
    clock = TrainingClock(step=5, max_train_steps=20)  # warmup over 10 steps
    assert warmup_length(options, 7, clock) == math.floor(5 * (7 - 2) / 10) + 2 == 4
    assert warmup_length(options, 7, TrainingClock(step=10, max_train_steps=20)) is None


def test_warmup_keeps_the_kept_tags():
    options = CaptionOptions(keep_tokens=2, token_warmup_min=0, token_warmup_step=10)
    assert _run(options, clock=TrainingClock(step=0)) == "sks dog, red collar"


def test_prefix_and_suffix_come_first_and_join_with_a_space():
    options = CaptionOptions(caption_prefix="masterpiece,", caption_suffix=", 4k")
    assert _run(options, "sks dog") == "masterpiece, sks dog , 4k"
    # the prefix is part of the tags: keep_tokens counts it (kohya's order)
    shuffled = CaptionOptions(caption_prefix="photo,", keep_tokens=1, shuffle_caption=True)
    assert all(_run(shuffled, seed=s).startswith("photo, ") for s in range(20))


def test_first_line_only_without_wildcards():
    assert _run(CaptionOptions(), "line one\nline two") == "line one"


def test_wildcards_pick_one_option_and_one_line():
    options = CaptionOptions(enable_wildcard=True)
    seen = Counter(_run(options, "a {red|green|blue} ball", s) for s in range(300))
    assert set(seen) == {"a red ball", "a green ball", "a blue ball"}
    lines = Counter(_run(options, "first\nsecond", s) for s in range(300))
    assert set(lines) == {"first", "second"}
    assert expand_wildcards("{{literal}} {x|x}", random.Random(0)) == "{literal} x"


def test_secondary_separator_is_replaced_after_shuffling():
    options = CaptionOptions(shuffle_caption=True, secondary_separator=";;;")
    for seed in range(30):
        out = _run(options, "sks, red;;;collar, tree", seed)
        assert sorted(out.split(", ")) == ["red,collar", "sks", "tree"]


def test_same_seed_same_caption_other_seed_differs():
    options = CaptionOptions(shuffle_caption=True, caption_tag_dropout_rate=0.1)
    assert _run(options, seed=5) == _run(options, seed=5)
    assert len({_run(options, seed=s) for s in range(20)}) > 10


def test_fixed_caption_refuses_random_options():
    assert fixed_caption(CaptionOptions(caption_prefix="p", caption_dropout_rate=0.5), "x") == "p x"
    with pytest.raises(ValueError):
        fixed_caption(CaptionOptions(shuffle_caption=True), "x")


def test_dataset_samples_are_seeded_by_seed_epoch_and_index(tmp_path):
    concept(tmp_path, "4_x", 3, captions=[CAPTION])
    data = group(tmp_path, shuffle_caption=True, keep_tokens=1, seed=7)
    first = [data[i]["caption"] for i in range(len(data))]
    assert first == [data[i]["caption"] for i in range(len(data))]  # reproducible
    assert len(set(first)) > 1  # each repeat draws its own order
    data.set_epoch(2)
    assert [data[i]["caption"] for i in range(len(data))] != first
    other = group(tmp_path, shuffle_caption=True, keep_tokens=1, seed=8)
    assert [other[i]["caption"] for i in range(len(other))] != first
    assert all(c.startswith("sks dog, ") for c in first)


def test_dataset_dropout_by_epoch_and_warmup_by_step(tmp_path):
    concept(tmp_path, "1_x", 2, captions=[CAPTION])
    data = group(tmp_path, caption_dropout_every_n_epochs=2, token_warmup_step=4)
    data.set_epoch(2)
    assert {data[i]["caption"] for i in range(len(data))} == {""}
    data.set_epoch(3)
    data.set_current_step(0)
    assert data[0]["caption"] == "sks dog"  # token_warmup_min 1
    data.set_current_step(4)
    assert data[0]["caption"] == CAPTION


def test_tag_frequency_counts_raw_captions_before_options(tmp_path):
    concept(tmp_path, "2_x", 2, captions=["Sks Dog, grass"])
    data = group(tmp_path, caption_prefix="masterpiece", caption_tag_dropout_rate=0.5)
    assert data.tag_frequency() == {"2_x": {"sks dog": 2, "grass": 2}}
