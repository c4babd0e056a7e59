"""kohya's --dataset_config TOML: schema, fallback order, errors, same samples as folders, ss_datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from dataset_helpers import concept, group, one_torch_thread  # noqa: F401

from lora_trainer.config import BUILTIN_TINY_MODEL, TrainConfig, config_from_dict
from lora_trainer.dataset.dataset_config import dataset_specs_from_config, load_dataset_config
from lora_trainer.errors import ConfigError
from lora_trainer.lora.kohya_file import load_kohya_lora
from lora_trainer.train.job import run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _specs(tmp_path: Path, text: str, **options):
    config = TrainConfig(**options)
    return dataset_specs_from_config(load_dataset_config(_toml(tmp_path / "d.toml", text)), config)


def test_fallback_order_subset_dataset_general_command_line_default(tmp_path):
    for name in ("a", "b", "c"):
        concept(tmp_path, name, 1)
    specs = _specs(
        tmp_path,
        f"""
[general]
keep_tokens = 3
caption_extension = ".caption"
flip_aug = true

[[datasets]]
resolution = [128, 64]
keep_tokens = 2

  [[datasets.subsets]]
  image_dir = '{tmp_path / "a"}'
  keep_tokens = 1
  num_repeats = 4
  class_tokens = "sks a"

  [[datasets.subsets]]
  image_dir = '{tmp_path / "b"}'
  caption_extension = "txt"
  flip_aug = false

[[datasets]]
batch_size = 3
  [[datasets.subsets]]
  image_dir = '{tmp_path / "c"}'
  is_reg = true
""",
        train_batch_size=2,
        resolution="96",
        shuffle_caption=True,
        caption_prefix="cli",
    )
    first, second = specs
    a, b = first.subsets
    (c,) = second.subsets
    assert a.captions.keep_tokens == 1  # subset
    assert b.captions.keep_tokens == 2  # dataset
    assert c.captions.keep_tokens == 3  # general
    assert a.captions.shuffle_caption and a.captions.caption_prefix == "cli"  # command line
    assert (a.num_repeats, b.num_repeats, a.class_tokens, b.class_tokens) == (4, 1, "sks a", None)
    assert b.captions.caption_extension == ".txt"  # kohya adds the dot
    assert a.captions.caption_extension == ".caption"
    assert (a.augment.flip_aug, b.augment.flip_aug) == (True, False)  # false overrides true
    assert first.resolution == (128, 64) and second.resolution == (96, 96)
    assert (first.batch_size, second.batch_size) == (2, 3)
    assert c.is_reg and not a.is_reg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[general]\nshuffle_captions = true", "unknown key 'shuffle_captions'.*did you mean 'shuffle_caption'"),
        ("[[datasets]]\n[[datasets.subsets]]\nimage_dir = '{d}'\nbatch_size = 2",
         "unknown key 'batch_size'.*belongs in \\[general\\] or a \\[\\[datasets\\]\\]"),
        ("[general]\nimage_dir = '{d}'", "unknown key 'image_dir'.*subsets"),
        ("prior_loss_weight = 1.0", "unknown key 'prior_loss_weight'.*training option"),
        ("[general]\nprior_loss_weight = 1.0", "training option, not a dataset option"),
        ("[[datasets]]\n[[datasets.subsets]]\nimage_dir = '{d}'\nmetadata_file = 'm.json'", "fine-tuning"),
        ("[general]\nkeep_tokens = 'two'", "'keep_tokens' must be a whole number"),
        ("[general]\nresolution = [512]", "'resolution' must be"),
        ("[general]\nalpha_mask = false", "unknown key 'alpha_mask'.*subsets"),
        ("[[datasets]]\n[[datasets.subsets]]\nimage_dir = '{d}'\nalpha_mask = true", "does not support yet"),
        ("[general]\nflip_aug = true", "no \\[\\[datasets\\]\\]"),
        ("[[datasets]]\nresolution = 512", "no \\[\\[datasets.subsets\\]\\]"),
        ("[[datasets]]\n[[datasets.subsets]]\nnum_repeats = 2", "no image_dir"),
        ("[[datasets]]\n[[datasets.subsets]]\nimage_dir = '{d}/nope'", "image_dir does not exist"),
        ("[[datasets]]\n[[datasets.subsets]]\nimage_dir = '{d}'\ncaption_dropout_rate = 1.5",
         "caption_dropout_rate must be between 0 and 1.*datasets\\[0\\].subsets\\[0\\]"),
        ("[[datasets]]\nenable_bucket = true\nmax_bucket_reso = 256\nresolution = 512\n[[datasets.subsets]]\nimage_dir = '{d}'",
         "max_bucket_reso \\(256\\) is smaller.*datasets\\[0\\]"),
        ("[[datasets]]\n[[datasets.subsets]]\nimage_dir = '{d}'\ncolor_aug = true", "color_aug"),
    ],
)  # fmt: skip
def test_bad_files_name_the_key_and_the_place(tmp_path, text, expected):
    concept(tmp_path, "imgs", 1)
    with pytest.raises(ConfigError, match=expected):
        _specs(tmp_path, text.replace("{d}", str(tmp_path / "imgs")), cache_latents=True)


def test_alpha_mask_false_and_cache_info_are_accepted(tmp_path):
    concept(tmp_path, "imgs", 1)
    text = f"[general]\ncache_info = true\n[[datasets]]\n[[datasets.subsets]]\nimage_dir = '{tmp_path / 'imgs'}'\nalpha_mask = false"
    assert len(_specs(tmp_path, text)) == 1


def test_parse_errors_and_formats(tmp_path):
    with pytest.raises(ConfigError, match="cannot parse"):
        load_dataset_config(_toml(tmp_path / "bad.toml", "[general\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_dataset_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"\.toml or \.json"):
        load_dataset_config(_toml(tmp_path / "d.yaml", "x: 1"))
    concept(tmp_path, "imgs", 1)
    json_file = tmp_path / "d.json"
    json_file.write_text(
        json.dumps({"datasets": [{"subsets": [{"image_dir": str(tmp_path / "imgs")}]}]})
    )
    assert load_dataset_config(json_file)["datasets"][0]["subsets"][0]["image_dir"]


def _folder_and_toml(tmp_path: Path) -> tuple[Path, Path]:
    img = tmp_path / "img"
    concept(img, "2_sks toy", 3, captions=["sks toy, red", "sks toy, blue", "sks toy, green"])
    concept(img, "1_sks toy", 2, size=(96, 64), captions=["sks toy, wide"])
    toml = _toml(
        tmp_path / "dataset.toml",
        f"""
[general]
caption_extension = ".txt"
shuffle_caption = true
keep_tokens = 1

[[datasets]]
resolution = 64
batch_size = 2

  [[datasets.subsets]]
  image_dir = '{img / "1_sks toy"}'
  num_repeats = 1
  class_tokens = "sks toy"

  [[datasets.subsets]]
  image_dir = '{img / "2_sks toy"}'
  num_repeats = 2
  class_tokens = "sks toy"
""",
    )
    return img, toml


def test_toml_gives_the_same_samples_as_the_folder_layout(tmp_path):
    img, toml = _folder_and_toml(tmp_path)
    folders = group(img, train_batch_size=2, shuffle_caption=True, keep_tokens=1, seed=3)
    from_file = group(dataset_config=str(toml), train_batch_size=2, seed=3)
    assert len(folders) == len(from_file) == 8
    for data in (folders, from_file):
        data.set_epoch(1)
    ga, gb = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    batches_a, batches_b = folders.epoch_batches(2, ga), from_file.epoch_batches(2, gb)
    assert batches_a == batches_b
    for batch in batches_a:
        for i in batch:
            a, b = folders[i], from_file[i]
            assert a["caption"] == b["caption"]
            assert torch.equal(a["pixel_values"], b["pixel_values"])
    assert folders.tag_frequency() == from_file.tag_frequency()
    assert folders.dataset_dirs() == from_file.dataset_dirs()


def _train(tmp_path: Path, name: str, **options):
    values = {
        "pretrained_model_name_or_path": BUILTIN_TINY_MODEL, "output_dir": str(tmp_path / "out"),
        "output_name": name, "caption_extension": ".txt", "resolution": "64",
        "max_train_steps": 4, "seed": 1, "device": "cpu", "train_batch_size": 2,
        "shuffle_caption": True, "keep_tokens": 1,
    }  # fmt: skip
    values.update(options)
    return run_training(config_from_dict(values))


def test_toml_trains_like_the_folders_and_writes_ss_datasets(tmp_path):
    img, toml = _folder_and_toml(tmp_path)
    folders = _train(tmp_path, "folders", train_data_dir=str(img))
    from_file = _train(tmp_path, "file", dataset_config=str(toml), train_data_dir=str(img))
    assert folders.losses == from_file.losses
    a = load_kohya_lora(folders.output_path)
    b = load_kohya_lora(from_file.output_path)
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    md = b.metadata
    assert "ss_bucket_info" not in md and "ss_reg_dataset_dirs" not in md
    (dataset,) = json.loads(md["ss_datasets"])
    assert dataset["batch_size_per_device"] == 2 and dataset["num_train_images"] == 8
    assert dataset["resolution"] == [64, 64] and dataset["enable_bucket"] is False
    assert [s["image_dir"] for s in dataset["subsets"]] == ["1_sks toy", "2_sks toy"]
    assert (
        dataset["subsets"][1] | {"keep_tokens": 1, "shuffle_caption": True} == dataset["subsets"][1]
    )
    assert json.loads(md["ss_dataset_dirs"]) == json.loads(a.metadata["ss_dataset_dirs"])
    assert md["ss_tag_frequency"] == a.metadata["ss_tag_frequency"]


def test_two_datasets_keep_their_own_batch_sizes(tmp_path):
    concept(tmp_path, "a", 3)
    concept(tmp_path, "b", 4, size=(128, 128))
    toml = _toml(
        tmp_path / "d.toml",
        f"""
[[datasets]]
batch_size = 3
  [[datasets.subsets]]
  image_dir = '{tmp_path / "a"}'
[[datasets]]
resolution = 128
batch_size = 2
  [[datasets.subsets]]
  image_dir = '{tmp_path / "b"}'
""",
    )
    data = group(dataset_config=str(toml), train_batch_size=1)
    assert data.num_batches(1) == 1 + 2
    batches = data.epoch_batches(1, torch.Generator().manual_seed(0))
    assert sorted(len(b) for b in batches) == [2, 2, 3]
    shapes = {tuple(data[b[0]]["pixel_values"].shape) for b in batches}
    assert shapes == {(3, 64, 64), (3, 128, 128)}
