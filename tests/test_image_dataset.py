"""ImageCaptionDataset: repeats, captions read up front, image checks, kohya metadata forms."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from lora_trainer.dataset.folders import scan_image_folder
from lora_trainer.dataset.image_dataset import ImageCaptionDataset, TrainItem
from lora_trainer.errors import DatasetError

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
KOHYA_METADATA = json.loads(
    (FIXTURES / "kohya_sd15_rank4.metadata.json").read_text(encoding="utf-8")
)


def _png(path: Path, size=(48, 32), color=(90, 160, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _kohya_fixture_dataset(root: Path) -> Path:
    """The fixture run's dataset: img/2_sks dog/ with 3 PNGs and .txt captions (KOHYA.md)."""
    folder = root / "2_sks dog"
    for name, caption in [
        ("1", "sks dog, red ball"),
        ("2", "sks dog, blue box"),
        ("3", "sks dog, purple triangle"),
    ]:
        _png(folder / f"{name}.png", (64, 64))
        (folder / f"{name}.txt").write_text(caption, encoding="utf-8")
    return root


def test_metadata_forms_match_kohya_fixture(tmp_path):
    root = _kohya_fixture_dataset(tmp_path)
    ds = ImageCaptionDataset(scan_image_folder(root, caption_extension=".txt"), (64, 64), ".txt")
    assert ds.tag_frequency() == json.loads(KOHYA_METADATA["ss_tag_frequency"])
    assert ds.dataset_dirs() == json.loads(KOHYA_METADATA["ss_dataset_dirs"])
    assert len(ds) == int(KOHYA_METADATA["ss_num_train_images"])


def test_length_and_deterministic_index_mapping(tmp_path):
    for i in range(3):
        _png(tmp_path / "2_a" / f"{i}.png")
    for i in range(2):
        _png(tmp_path / "5_b" / f"{i}.png")
    scan = scan_image_folder(tmp_path)
    ds = ImageCaptionDataset(scan, (32, 32), ".caption")
    assert len(ds) == scan.num_train_images == 2 * 3 + 5 * 2
    assert len(ds.items) == 5
    mapping = [ds.item_for_index(i) for i in range(len(ds))]
    assert mapping == [ds.item_for_index(i) for i in range(len(ds))]
    counts = Counter(mapping)
    assert counts == {0: 2, 1: 2, 2: 2, 3: 5, 4: 5}  # each image once per repeat
    assert [ds.items[k].subset_name for k in mapping[:6]] == ["2_a"] * 6
    assert ds[len(ds) - 1]["item_index"] == mapping[-1]
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_getitem(tmp_path):
    img = _png(tmp_path / "1_sks dog" / "a.png", (90, 40))
    (tmp_path / "1_sks dog" / "a.caption").write_text("sks dog, on grass\n", encoding="utf-8")
    ds = ImageCaptionDataset(scan_image_folder(tmp_path), (64, 32), ".caption")
    assert ds.items == [TrainItem(img, "sks dog, on grass", "1_sks dog")]
    example = ds[0]
    assert example["caption"] == "sks dog, on grass"
    assert example["item_index"] == 0
    pv = example["pixel_values"]
    assert pv.shape == (3, 32, 64) and pv.dtype == torch.float32
    assert torch.allclose(pv[:, 16, 32], torch.tensor([90, 160, 30]) / 255 * 2 - 1, atol=1e-6)


def test_works_with_a_dataloader(tmp_path):
    for i in range(2):
        _png(tmp_path / "2_x" / f"{i}.png")
    ds = ImageCaptionDataset(scan_image_folder(tmp_path), (16, 16), ".caption")
    batches = list(torch.utils.data.DataLoader(ds, batch_size=2))
    assert len(batches) == 2
    assert batches[0]["pixel_values"].shape == (2, 3, 16, 16)
    assert batches[0]["caption"] == ["x", "x"]


def test_missing_captions_use_class_tokens_and_are_counted(tmp_path):
    folder = tmp_path / "3_sks cat"
    _png(folder / "a.png")
    _png(folder / "b.png")
    (folder / "a.txt").write_text("sks cat, Sofa", encoding="utf-8")
    ds = ImageCaptionDataset(scan_image_folder(tmp_path), (32, 32), ".txt")
    assert [i.caption for i in ds.items] == ["sks cat, Sofa", "sks cat"]
    assert ds.missing_captions == [folder / "b.png"]
    # kohya counts the fallback caption too, once per image, lower-cased
    assert ds.tag_frequency() == {"3_sks cat": {"sks cat": 2, "sofa": 1}}


def test_caption_errors_come_at_construction(tmp_path):
    folder = tmp_path / "1_x"
    _png(folder / "a.png")
    (folder / "a.txt").write_bytes(b"\xff\xfe bad")
    scan = scan_image_folder(tmp_path, caption_extension=".txt")
    with pytest.raises(DatasetError) as e:
        ImageCaptionDataset(scan, (32, 32), ".txt")
    assert str(folder / "a.txt") in str(e.value)


def test_check_images_lists_every_bad_file(tmp_path):
    folder = tmp_path / "4_x"
    _png(folder / "good.png")
    (folder / "random.jpg").write_bytes(bytes(range(256)) * 3)
    good = (folder / "good.png").read_bytes()
    (folder / "cut.png").write_bytes(good[: len(good) // 2])
    ds = ImageCaptionDataset(scan_image_folder(tmp_path), (32, 32), ".caption")
    assert len(ds) == 12  # scanning never decodes
    with pytest.raises(DatasetError) as e:
        ds.check_images()
    msg = str(e.value)
    assert "2 of 3 images" in msg
    assert str(folder / "random.jpg") in msg and str(folder / "cut.png") in msg
    assert str(folder / "good.png") not in msg


def test_check_images_passes_on_good_data_and_warns_about_alpha(tmp_path, caplog):
    _png(tmp_path / "1_x" / "a.png")
    ds = ImageCaptionDataset(scan_image_folder(tmp_path), (8, 8), ".caption")
    with caplog.at_level("WARNING"):
        ds.check_images()
    assert "transparency" not in caplog.text
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / "1_x" / "b.png")
    ds = ImageCaptionDataset(scan_image_folder(tmp_path), (8, 8), ".caption")
    with caplog.at_level("WARNING"):
        ds.check_images()
    assert "1 images have transparency" in caplog.text and "b.png" in caplog.text
