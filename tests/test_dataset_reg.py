"""Regularization images: kohya's balancing, per-sample prior_loss_weight, steps and metadata."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from dataset_helpers import concept, group, one_torch_thread  # noqa: F401

from lora_trainer.config import BUILTIN_TINY_MODEL, config_from_dict
from lora_trainer.dataset.regularization import balance_reg_repeats
from lora_trainer.errors import DatasetError
from lora_trainer.lora.kohya_file import load_kohya_lora
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.train.batch import make_batch
from lora_trainer.train.job import run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _kohya_loop(num_train: int, reg: list[int]) -> list[int]:
    """kohya's DreamBoothDataset loop, transcribed literally (info.num_repeats += 1)."""
    repeats = [0] * len(reg)
    n, first = 0, True
    while n < num_train:
        for i, r in enumerate(reg):
            if first:
                repeats[i] = r
                n += r
            else:
                repeats[i] += 1
                n += 1
            if n >= num_train:
                break
        first = False
    return repeats


@pytest.mark.parametrize(
    ("num_train", "reg", "expected"),
    [
        (10, [1, 1, 1], [4, 3, 3]),  # fewer reg samples: extra repeats in turn
        (4, [3, 3, 3], [3, 3, 0]),  # more: the last image is not used
        (6, [1] * 10, [1] * 6 + [0] * 4),
        (5, [2, 2], [3, 2]),
        (0, [1, 1], [0, 0]),
    ],
)
def test_balancing_matches_kohyas_loop(num_train, reg, expected):
    assert balance_reg_repeats(num_train, reg) == expected == _kohya_loop(num_train, reg)
    assert sum(expected) >= num_train


def _layout(tmp_path, reg_count=10, reg_repeats=1):
    concept(tmp_path / "img", "2_sks dog", 3, captions=["sks dog"])
    concept(tmp_path / "reg", f"{reg_repeats}_dog", reg_count)
    return tmp_path / "img", tmp_path / "reg"


def test_reg_doubles_samples_and_reports_unused(tmp_path):
    img, reg = _layout(tmp_path)
    plain = group(img)
    data = group(img, reg_data_dir=str(reg), prior_loss_weight=0.5)
    assert len(plain) == 6 and len(data) == 12  # 6 training + 6 of the 10 reg images
    assert data.num_batches(1) == 2 * plain.num_batches(1)
    assert (data.num_train_images, data.num_reg_images) == (6, 10)
    d = data.datasets[0]
    assert len(d.unused_reg_images) == 4
    assert any("4 of 10 regularization images are not used" in w for w in d.warnings)
    assert data.reg_dataset_dirs() == {"1_dog": {"n_repeats": 1, "img_count": 10}}
    assert data.dataset_dirs() == {"2_sks dog": {"n_repeats": 2, "img_count": 3}}
    assert set(data.tag_frequency()) == {"2_sks dog", "1_dog"}  # kohya counts reg folders too


def test_few_reg_images_are_repeated_to_match(tmp_path):
    img, reg = _layout(tmp_path, reg_count=2)
    data = group(img, reg_data_dir=str(reg))
    reg_items = [i for i in data.datasets[0].items if i.is_reg]
    assert [i.repeats for i in reg_items] == [3, 3] and len(data) == 12


def test_reg_samples_carry_prior_loss_weight_into_the_batch(tmp_path):
    img, reg = _layout(tmp_path)
    data = group(img, reg_data_dir=str(reg), prior_loss_weight=0.25)
    samples = [data[i] for i in range(len(data))]
    weights = Counter(s["loss_weight"] for s in samples)
    assert weights == {1.0: 6, 0.25: 6}
    d = data.datasets[0]
    for i, s in enumerate(samples):
        assert s["loss_weight"] == (0.25 if d.items[d.item_for_index(i)].is_reg else 1.0)
    batch = make_batch(
        samples[:2] + samples[-2:], build_tiny_sd1(), torch.Generator(), torch.device("cpu")
    )
    assert batch.loss_weights.tolist() == [1.0, 1.0, 0.25, 0.25]


def test_training_with_reg_takes_twice_the_steps_and_writes_kohyas_keys(tmp_path):
    img, reg = _layout(tmp_path, reg_count=4)
    config = config_from_dict({
        "pretrained_model_name_or_path": BUILTIN_TINY_MODEL, "train_data_dir": str(img),
        "reg_data_dir": str(reg), "prior_loss_weight": 0.5, "output_dir": str(tmp_path / "out"),
        "caption_extension": ".txt", "resolution": "64", "max_train_epochs": 1, "seed": 1,
        "device": "cpu", "network_train_unet_only": True,
    })  # fmt: skip
    result = run_training(config)
    assert result.steps == 12  # (3 x 2 training + 6 reg) samples, batch 1
    md = load_kohya_lora(result.output_path).metadata
    assert md["ss_num_train_images"] == "6" and md["ss_num_reg_images"] == "4"
    assert json.loads(md["ss_reg_dataset_dirs"]) == {"1_dog": {"n_repeats": 1, "img_count": 4}}
    assert md["ss_prior_loss_weight"] == "0.5" and md["ss_num_batches_per_epoch"] == "12"


def test_reg_folder_errors_are_clear(tmp_path):
    img, _ = _layout(tmp_path)
    with pytest.raises(DatasetError, match="regularization folder does not exist"):
        group(img, reg_data_dir=str(tmp_path / "nope"))
