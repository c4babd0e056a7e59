"""Aspect-ratio buckets against kohya_buckets.json, and bucketed batches in a dataset."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from dataset_helpers import concept, group

from lora_trainer.dataset.buckets import (
    BucketOptions,
    BucketSelector,
    bucket_info,
    crop_ltrb,
    make_bucket_resolutions,
    snap_bucket_limits,
)

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
CASES = json.loads((FIXTURES / "kohya_buckets.json").read_text(encoding="utf-8"))["configs"]
ASSIGNMENTS = [
    pytest.param(c, a, id=f"{c['max_reso'][0]}-{a['image_size'][0]}x{a['image_size'][1]}-noup{a['bucket_no_upscale']}")
    for c in CASES
    for a in c["assignments"]
]  # fmt: skip


def test_fixture_has_three_configs_of_fourteen_cases():
    assert [len(c["assignments"]) for c in CASES] == [14, 14, 14]
    assert [len(c["resolutions"]) for c in CASES] == [17, 65, 19]


@pytest.mark.parametrize("case", CASES, ids=lambda c: str(c["max_reso"][0]))
def test_resolution_sets_equal_kohyas(case):
    resos = make_bucket_resolutions(
        tuple(case["max_reso"]), case["min_size"], case["max_size"], case["divisible"]
    )
    assert [list(r) for r in resos] == case["resolutions"]


@pytest.mark.parametrize(("case", "a"), ASSIGNMENTS)
def test_every_image_lands_in_kohyas_bucket(case, a):
    options = BucketOptions(
        True, case["min_size"], case["max_size"], case["divisible"], a["bucket_no_upscale"]
    )
    choice = BucketSelector(options, tuple(case["max_reso"])).select(*a["image_size"])
    assert list(choice.reso) == a["bucket_reso"]
    assert list(choice.resized_size) == a["resized_size"]
    assert choice.ar_error == a["ar_error"]  # exactly: same float operations
    assert list(crop_ltrb(choice.reso, tuple(a["image_size"]))) == a["crop_ltrb"]


def test_without_buckets_every_image_goes_to_the_training_resolution():
    selector = BucketSelector(BucketOptions(enable=False), (512, 768))
    for size in [(100, 100), (2000, 500), (512, 768)]:
        choice = selector.select(*size)
        assert choice.reso == (512, 768)
        assert choice.resized_size[0] >= 512 and choice.resized_size[1] >= 768


def test_limits_snap_to_the_step_like_kohya():
    lo, hi, notes = snap_bucket_limits(BucketOptions(True, 300, 1000, 64))
    assert (lo, hi) == (256, 1024) and len(notes) == 2
    assert snap_bucket_limits(BucketOptions(True, 256, 1024, 64))[2] == []


def test_bucket_info_is_kohyas_form():
    info = bucket_info({(64, 128): 4, (64, 64): 6}, [0.0, -0.5, 0.25])
    assert info == {
        "buckets": {
            0: {"resolution": (64, 64), "count": 6},
            1: {"resolution": (64, 128), "count": 4},
        },
        "mean_img_ar_error": 0.25,
    }
    assert bucket_info({}, [])["mean_img_ar_error"] == 0


def _mixed(tmp_path):
    concept(tmp_path, "2_wide", 3, size=(128, 64))
    concept(tmp_path, "1_tall", 5, size=(64, 128))
    concept(tmp_path, "3_square", 2, size=(96, 96))
    # resolution 96: buckets 64x64, 64x128 and 128x64
    return group(tmp_path, resolution="96", enable_bucket=True, min_bucket_reso=64,
                 max_bucket_reso=128, bucket_reso_steps=64, train_batch_size=2)  # fmt: skip


def test_dataset_buckets_counts_and_kohya_metadata(tmp_path):
    data = _mixed(tmp_path)
    d = data.datasets[0]
    assert d.bucket_counts() == {(128, 64): 6, (64, 128): 5, (64, 64): 6}
    info = d.bucket_info()
    assert [b["resolution"] for b in info["buckets"].values()] == [(64, 64), (64, 128), (128, 64)]
    # wide and tall images sit exactly in 2:1 buckets; squares too: no aspect error
    assert info["mean_img_ar_error"] == 0.0
    lines = d.bucket_lines()
    assert lines[0] == "bucket 0: resolution (64, 64), count: 6" and "mean aspect" in lines[-1]


def test_batches_are_drawn_per_bucket_and_cover_every_sample(tmp_path):
    data = _mixed(tmp_path)
    d = data.datasets[0]
    gen = torch.Generator().manual_seed(0)
    batches = data.epoch_batches(2, gen)
    # each bucket is cut on its own: 6 -> 3 batches, 5 -> 3 (one short), 6 -> 3
    assert len(batches) == data.num_batches(2) == 9
    assert sorted(i for b in batches for i in b) == list(range(len(data)))
    for batch in batches:
        assert len({d.items[d.item_for_index(i)].bucket.reso for i in batch}) == 1
    sizes = Counter(len(b) for b in batches)
    assert sizes == {2: 8, 1: 1}


def test_bucket_order_is_shuffled_per_epoch_by_the_seed(tmp_path):
    data = _mixed(tmp_path)
    gen = torch.Generator().manual_seed(0)
    first, second = data.epoch_batches(2, gen), data.epoch_batches(2, gen)
    assert first != second  # a new order each epoch
    again = torch.Generator().manual_seed(0)
    assert data.epoch_batches(2, again) == first  # the same seed gives the same order

    def reso_order(batches):
        d = data.datasets[0]
        return [d.items[d.item_for_index(b[0])].bucket.reso for b in batches]

    orders = {tuple(reso_order(data.epoch_batches(2, gen))) for _ in range(10)}
    assert len(orders) > 1  # buckets interleave differently from epoch to epoch


def test_samples_have_their_bucket_size_and_sdxl_extras(tmp_path):
    data = _mixed(tmp_path)
    d = data.datasets[0]
    for index in range(len(d)):
        sample = d[index]
        item = d.items[d.item_for_index(index)]
        w, h = item.bucket.reso
        assert sample["pixel_values"].shape == (3, h, w)
        assert sample["target_size"] == (h, w)
        assert sample["original_size"] == (item.size[1], item.size[0])
    # a 96 px square in a 64 px bucket: no crop; kohya's get_crop_ltrb gives (0, 0)
    square = next(i for i in range(len(d)) if d.items[d.item_for_index(i)].size == (96, 96))
    assert d[square]["crop_top_left"] == (0, 0)


def test_crop_extras_follow_kohya_when_flipped(tmp_path):
    concept(tmp_path, "1_x", 1, size=(150, 100))
    data = group(tmp_path, resolution="96", enable_bucket=True, min_bucket_reso=64,
                 max_bucket_reso=128, bucket_reso_steps=64, flip_aug=True)  # fmt: skip
    d = data.datasets[0]
    item = d.items[0]
    left, top, right, _ = crop_ltrb(item.bucket.reso, item.size)
    assert d.size_extras(0, False)["crop_top_left"] == (int(top), int(left))
    assert d.size_extras(0, True)["crop_top_left"] == (int(top), int(item.bucket.reso[0] - right))


def test_bucket_no_upscale_keeps_small_images_small(tmp_path):
    concept(tmp_path, "1_x", 2, size=(64, 64))
    concept(tmp_path, "1_y", 1, size=(200, 100))
    data = group(tmp_path, resolution="128", enable_bucket=True, bucket_no_upscale=True,
                 min_bucket_reso=64, max_bucket_reso=256, bucket_reso_steps=64)  # fmt: skip
    d = data.datasets[0]
    assert {i.bucket.reso for i in d.items} == {(64, 64), (128, 64)}
    assert any("bucket_no_upscale" in w for w in d.warnings)
