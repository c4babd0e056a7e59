"""ImageCaptionDataset: repeats, captions, image checks, robustness, kohya metadata forms."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
import torch
from dataset_helpers import concept, group, png
from PIL import Image

from lora_trainer.dataset.image_dataset import ImageCaptionDataset, TrainItem
from lora_trainer.dataset.spec import CaptionOptions, DatasetSpec, SubsetSpec
from lora_trainer.errors import DatasetError

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
KOHYA_METADATA = json.loads(
    (FIXTURES / "kohya_sd15_rank4.metadata.json").read_text(encoding="utf-8")
)


def _kohya_fixture_dataset(root: Path) -> Path:
    """The fixture run's dataset: img/2_sks dog/ with 3 PNGs and .txt captions (KOHYA.md)."""
    folder = root / "2_sks dog"
    for name, caption in [
        ("1", "sks dog, red ball"),
        ("2", "sks dog, blue box"),
        ("3", "sks dog, purple triangle"),
    ]:
        png(folder / f"{name}.png", (64, 64))
        (folder / f"{name}.txt").write_text(caption, encoding="utf-8")
    return root


def test_metadata_forms_match_kohya_fixture(tmp_path):
    # the fixture run: resolution 64, buckets 64..128 step 64, batch 1
    root = _kohya_fixture_dataset(tmp_path)
    data = group(root, enable_bucket=True, min_bucket_reso=64, max_bucket_reso=128)
    assert data.tag_frequency() == json.loads(KOHYA_METADATA["ss_tag_frequency"])
    assert data.dataset_dirs() == json.loads(KOHYA_METADATA["ss_dataset_dirs"])
    assert data.reg_dataset_dirs() == json.loads(KOHYA_METADATA["ss_reg_dataset_dirs"])
    assert json.dumps(data.bucket_info()) == KOHYA_METADATA["ss_bucket_info"]
    assert data.num_train_images == int(KOHYA_METADATA["ss_num_train_images"])
    assert data.num_reg_images == int(KOHYA_METADATA["ss_num_reg_images"])
    assert data.num_batches(1) == int(KOHYA_METADATA["ss_num_batches_per_epoch"])


def test_without_buckets_bucket_info_is_none_like_kohya(tmp_path):
    data = group(_kohya_fixture_dataset(tmp_path))
    assert data.bucket_info() is None and data.datasets[0].bucket_lines() == []


def test_length_and_index_mapping(tmp_path):
    concept(tmp_path, "2_a", 3)
    concept(tmp_path, "5_b", 2)
    data = group(tmp_path)
    d = data.datasets[0]
    assert len(data) == 2 * 3 + 5 * 2 and len(d.items) == 5
    counts = Counter(d.item_for_index(i) for i in range(len(d)))
    assert counts == {0: 2, 1: 2, 2: 2, 3: 5, 4: 5}  # each image once per repeat
    assert data[len(data) - 1]["item_index"] == d.item_for_index(len(d) - 1)
    with pytest.raises(IndexError):
        data[len(data)]


def test_getitem(tmp_path):
    img = png(tmp_path / "1_sks dog" / "a.png", (180, 80))
    (tmp_path / "1_sks dog" / "a.txt").write_text("sks dog, on grass\n", encoding="utf-8")
    d = group(tmp_path, resolution="128,64").datasets[0]
    assert d.items[0].image_path == img and d.items[0].caption == "sks dog, on grass"
    assert isinstance(d.items[0], TrainItem) and d.items[0].size == (180, 80)
    example = d[0]
    assert example["caption"] == "sks dog, on grass"
    assert example["loss_weight"] == 1.0 and example["flipped"] is False
    pv = example["pixel_values"]
    assert pv.shape == (3, 64, 128) and pv.dtype == torch.float32
    assert torch.allclose(pv[:, 32, 64], torch.tensor([90, 160, 30]) / 255 * 2 - 1, atol=1e-6)
    assert example["original_size"] == (80, 180) and example["target_size"] == (64, 128)


def test_works_with_a_dataloader(tmp_path):
    concept(tmp_path, "2_x", 2)
    data = group(tmp_path)
    batches = list(torch.utils.data.DataLoader(data, batch_size=2))
    assert len(batches) == 2
    assert batches[0]["pixel_values"].shape == (2, 3, 64, 64)
    assert batches[0]["caption"] == ["x", "x"]


def test_missing_captions_use_class_tokens_and_are_counted(tmp_path):
    folder = tmp_path / "3_sks cat"
    png(folder / "a.png")
    png(folder / "b.png")
    (folder / "a.txt").write_text("sks cat, Sofa", encoding="utf-8")
    d = group(tmp_path).datasets[0]
    assert [i.caption for i in d.items] == ["sks cat, Sofa", "sks cat"]
    assert d.missing_captions == [folder / "b.png"]
    assert any("1 images in 3_sks cat have no .txt caption" in w for w in d.warnings)
    # kohya counts the fallback caption too, once per image, lower-cased
    assert d.tag_frequency() == {"3_sks cat": {"sks cat": 2, "sofa": 1}}


def test_caption_errors_come_at_construction(tmp_path):
    folder = tmp_path / "1_x"
    png(folder / "a.png")
    (folder / "a.txt").write_bytes(b"\xff\xfe bad")
    with pytest.raises(DatasetError) as e:
        group(tmp_path)
    assert str(folder / "a.txt") in str(e.value)


def test_wildcard_mode_reads_every_line(tmp_path):
    folder = tmp_path / "1_x"
    png(folder / "a.png")
    (folder / "a.txt").write_text("one\n\ntwo\n", encoding="utf-8")
    assert group(tmp_path).datasets[0].items[0].caption == "one"
    assert group(tmp_path, enable_wildcard=True).datasets[0].items[0].caption == "one\ntwo"


def _broken_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "4_x"
    png(folder / "good.png")
    (folder / "random.jpg").write_bytes(bytes(range(256)) * 3)
    good = (folder / "good.png").read_bytes()
    (folder / "cut.png").write_bytes(good[: len(good) // 2])
    return folder


def test_bad_images_are_listed_together_and_stop_by_default(tmp_path):
    folder = _broken_folder(tmp_path)
    with pytest.raises(DatasetError) as e:
        group(tmp_path)
    msg = str(e.value)
    assert "2 of 3 images" in msg and "skip_bad_images" in msg
    assert str(folder / "random.jpg") in msg and str(folder / "cut.png") in msg
    assert str(folder / "good.png") not in msg


def test_skip_bad_images_trains_without_them(tmp_path):
    folder = _broken_folder(tmp_path)
    data = group(tmp_path, skip_bad_images=True)
    d = data.datasets[0]
    assert [i.image_path for i in d.items] == [folder / "good.png"]
    assert len(data) == 4 and {p.name for p, _ in d.skipped_images} == {"random.jpg", "cut.png"}
    assert any("Skipped 2 images" in w and "cut.png" in w for w in d.warnings)


def test_transparency_is_reported(tmp_path, caplog):
    png(tmp_path / "1_x" / "a.png")
    with caplog.at_level("WARNING"):
        group(tmp_path)
    assert "transparency" not in caplog.text
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / "1_x" / "b.png")
    with caplog.at_level("WARNING"):
        group(tmp_path)
    assert "1 images have transparency" in caplog.text and "b.png" in caplog.text


def test_hidden_folders_are_skipped_like_kohya(tmp_path):
    concept(tmp_path, "1_x", 1)
    concept(tmp_path / ".ipynb_checkpoints", "1_y", 1)
    concept(tmp_path, ".ipynb_checkpoints", 1)
    d = group(tmp_path).datasets[0]
    assert [s.spec.name for s in d.subsets] == ["1_x"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_links_leading_outside_are_not_followed_unless_allowed(tmp_path):
    outside = tmp_path / "outside"
    secret = png(outside / "secret.png")
    (outside / "secret.txt").write_text("private", encoding="utf-8")
    root = tmp_path / "img"
    concept(root, "1_x", 1, captions=["inside"])
    (root / "1_x" / "link.png").symlink_to(secret)
    (root / "2_linked").symlink_to(outside, target_is_directory=True)
    (root / "1_x" / "00.txt").unlink()
    (root / "1_x" / "00.txt").symlink_to(outside / "secret.txt")
    try:
        data = group(root)
    except OSError:
        pytest.skip("symlinks not permitted here")
    d = data.datasets[0]
    assert [s.spec.name for s in d.subsets] == ["1_x"]
    assert [i.image_path.name for i in d.items] == ["00.png"]
    assert d.items[0].caption == "x"  # the linked caption was not read
    allowed = group(root, allow_symlinks=True).datasets[0]
    assert sorted(s.spec.name for s in allowed.subsets) == ["1_x", "2_linked"]
    assert "private" in {i.caption for i in allowed.items}


def test_large_jpeg_is_decoded_reduced_and_still_fills_its_bucket(tmp_path):
    path = tmp_path / "1_x" / "big.jpg"
    path.parent.mkdir()
    Image.new("RGB", (2048, 1024), (200, 10, 10)).save(path, quality=90)
    data = group(tmp_path, resolution="64", enable_bucket=True, min_bucket_reso=64,
                 max_bucket_reso=128, bucket_reso_steps=64)  # fmt: skip
    d = data.datasets[0]
    assert d.items[0].size == (2048, 1024)
    assert d[0]["pixel_values"].shape[1:] == (64, 64)
    from lora_trainer.dataset.images import load_image_rgb

    # draft mode: decoded at 1/8 scale (256x128), still covering the 128x64 resize target
    assert load_image_rgb(path, at_least=(128, 64)).size == (256, 128)


def test_subset_spec_errors_and_ignored_subsets(tmp_path):
    concept(tmp_path, "a", 1)
    spec = DatasetSpec(
        [
            SubsetSpec(tmp_path / "a", 1, "a"),
            SubsetSpec(tmp_path / "a", 2, "again"),  # the same folder twice: kohya keeps the first
            SubsetSpec(tmp_path / "a", 0, "zero"),
        ],
        resolution=(64, 64),
    )
    d = ImageCaptionDataset(spec)
    assert len(d.subsets) == 1 and len(d) == 1
    assert any("listed twice" in w for w in d.warnings) and any(
        "num_repeats is 0" in w for w in d.warnings
    )
    with pytest.raises(DatasetError, match="does not exist"):
        ImageCaptionDataset(DatasetSpec([SubsetSpec(tmp_path / "none")], (64, 64)))


def test_class_tokens_none_gives_empty_caption_with_warning(tmp_path):
    concept(tmp_path, "a", 1)
    d = ImageCaptionDataset(
        DatasetSpec([SubsetSpec(tmp_path / "a", 1, None, captions=CaptionOptions())], (64, 64))
    )
    assert d.items[0].caption == "" and any("empty caption" in w for w in d.warnings)
