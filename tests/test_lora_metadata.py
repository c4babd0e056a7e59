"""ss_* / modelspec.* metadata compared with what kohya's train_network.py really wrote."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from lora_trainer import __version__
from lora_trainer.config import TrainConfig
from lora_trainer.lora.metadata import (
    KOHYA_DEFAULTS,
    TrainingFacts,
    build_metadata,
    model_version_string,
)

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"

# Fixture keys build_metadata does not produce, and why.
NOT_FROM_BUILD_METADATA = {
    # sd-scripts' own git commit: we are not sd-scripts, and no reader needs it.
    # modelspec.implementation_version names this program instead.
    "ss_sd_scripts_commit_hash",
    # Added by kohya_file.save_kohya_lora from the tensors, after the metadata is built.
    "sshs_model_hash",
    "sshs_legacy_hash",
}
# Fixture values that legitimately differ: the program that wrote the file.
DIFFERENT_BY_DESIGN = {"modelspec.implementation_version"}


@pytest.fixture(scope="module")
def fixture_md() -> dict[str, str]:
    return json.loads((FIXTURES / "kohya_sd15_rank4.metadata.json").read_text())


def fixture_facts(fixture_md: dict[str, str]) -> TrainingFacts:
    """Facts and options of the run that made kohya_sd15_rank4.safetensors (KOHYA.md)."""
    config = TrainConfig(
        pretrained_model_name_or_path="/models/random-sd15.safetensors",
        output_name="kohya_sd15_rank4",
        resolution="64",
        network_dim=4,
        network_alpha=2.0,
        learning_rate=1e-4,
        max_train_steps=2,
        train_batch_size=1,
        seed=42,
        save_precision="fp16",
        caption_extension=".txt",
        enable_bucket=True,
        min_bucket_reso=64,
        max_bucket_reso=128,
        cache_latents=True,
    )
    return TrainingFacts(
        config=config,
        base_model_name="random-sd15.safetensors",
        base_model_legacy_hash="dadeb4e5",
        base_model_sha256=fixture_md["ss_new_sd_model_hash"],
        num_train_images=6,
        num_batches_per_epoch=6,
        num_epochs=1,
        steps=2,
        epoch=1,
        seed=42,
        training_started_at=float(fixture_md["ss_training_started_at"]),
        training_finished_at=float(fixture_md["ss_training_finished_at"]),
        session_id=int(fixture_md["ss_session_id"]),
        tag_frequency={"2_sks dog": {"sks dog": 3, "red ball": 1, "blue box": 1, "purple triangle": 1}},
        dataset_dirs={"2_sks dog": {"n_repeats": 2, "img_count": 3}},
        bucket_info={"buckets": {0: {"resolution": (64, 64), "count": 6}}, "mean_img_ar_error": 0.0},
    )  # fmt: skip


@pytest.fixture
def utc(monkeypatch):
    # kohya writes modelspec.date in local time; the fixture machine ran in UTC.
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset (POSIX)")
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_mirrored_run_gives_kohyas_exact_metadata(fixture_md, utc):
    ours = build_metadata(fixture_facts(fixture_md))
    expected = {k: v for k, v in fixture_md.items() if k not in NOT_FROM_BUILD_METADATA}
    assert set(ours) == set(expected)
    differing = {k: (ours[k], expected[k]) for k in expected if ours[k] != expected[k]}
    assert set(differing) == DIFFERENT_BY_DESIGN
    assert ours["modelspec.implementation_version"] == f"lora_trainer/{__version__}"


def test_default_options_still_cover_every_fixture_key(fixture_md):
    facts = TrainingFacts(config=TrainConfig(), base_model_name="model.safetensors",
                          base_model_legacy_hash="01234567", base_model_sha256="ab" * 32)  # fmt: skip
    ours = build_metadata(facts)
    assert set(fixture_md) - NOT_FROM_BUILD_METADATA <= set(ours)
    assert all(isinstance(v, str) for v in ours.values())


def test_kohya_default_formats():
    md = build_metadata(TrainingFacts(config=TrainConfig(), seed=7))
    assert md["ss_noise_offset"] == "None"
    assert md["ss_shuffle_caption"] == "False"
    assert md["ss_enable_bucket"] == "False"
    assert md["ss_min_bucket_reso"] == md["ss_max_bucket_reso"] == "None"  # kohya: no buckets
    assert md["ss_bucket_info"] == "null"
    assert md["ss_multires_noise_discount"] == "0.3"
    assert md["ss_network_alpha"] == "1.0"
    assert md["ss_resolution"] == "(512, 512)"
    assert md["modelspec.resolution"] == "512x512"
    assert md["ss_seed"] == "7"
    assert md["ss_training_comment"] == "None"
    assert md["ss_text_encoder_lr"] == md["ss_unet_lr"] == "None"
    assert "ss_network_args" not in md and "ss_sd_model_name" not in md
    assert "modelspec.encoder_layer" not in md and "modelspec.timestep_range" not in md


def test_kohya_defaults_are_kohyas():
    # Spot checks against sd-scripts' argparse defaults (train_util.py).
    assert KOHYA_DEFAULTS["min_bucket_reso"] == 256 and KOHYA_DEFAULTS["max_bucket_reso"] == 1024
    assert KOHYA_DEFAULTS["loss_type"] == "l2" and KOHYA_DEFAULTS["huber_c"] == 0.1
    assert KOHYA_DEFAULTS["caption_dropout_every_n_epochs"] == 0


def test_json_values_use_kohyas_json_dumps():
    facts = TrainingFacts(
        config=TrainConfig(), tag_frequency={"1_猫": {"猫耳": 2}}, dataset_dirs={"1_猫": {"n_repeats": 1, "img_count": 2}}
    )  # fmt: skip
    md = build_metadata(facts)
    assert (
        md["ss_tag_frequency"] == '{"1_\\u732b": {"\\u732b\\u8033": 2}}'
    )  # ensure_ascii, ", " / ": "
    assert json.loads(md["ss_dataset_dirs"]) == {"1_猫": {"n_repeats": 1, "img_count": 2}}
    assert md["ss_reg_dataset_dirs"] == "{}"


@pytest.mark.parametrize(
    ("v2", "vparam", "sdxl", "version", "arch", "pred"),
    [
        (False, False, False, "sd_v1", "stable-diffusion-v1/lora", "epsilon"),
        (True, False, False, "sd_v2", "stable-diffusion-v2-512/lora", "epsilon"),
        (True, True, False, "sd_v2_v", "stable-diffusion-v2-768-v/lora", "v"),
        (False, False, True, "sdxl_base_v1-0", "stable-diffusion-xl-v1-base/lora", "epsilon"),
    ],
)
def test_model_families(v2, vparam, sdxl, version, arch, pred):
    md = build_metadata(
        TrainingFacts(config=TrainConfig(), v2=v2, v_parameterization=vparam, sdxl=sdxl)
    )
    assert model_version_string(v2, vparam, sdxl) == version
    assert md["ss_base_model_version"] == version
    assert md["ss_v2"] == str(v2)
    assert md["modelspec.architecture"] == arch
    assert md["modelspec.prediction_type"] == pred
    sgm = "https://github.com/Stability-AI/generative-models"
    assert md["modelspec.implementation"] == (sgm if sdxl else "diffusers")


@pytest.mark.parametrize("version", ["sd_v1", "sd_v2", "sd_v2_v", "sdxl_base_v1-0"])
def test_base_model_version_alone_sets_the_family(version):
    # A caller that only knows kohya's version string gets consistent ss_v2 / modelspec keys.
    from_version = build_metadata(TrainingFacts(config=TrainConfig(), base_model_version=version))
    v2, vparam, sdxl = (
        version.startswith("sd_v2"),
        version.endswith("_v"),
        version.startswith("sdxl"),
    )
    from_flags = build_metadata(
        TrainingFacts(config=TrainConfig(), v2=v2, v_parameterization=vparam, sdxl=sdxl)
    )
    keys = ("ss_v2", "ss_base_model_version", "modelspec.architecture", "modelspec.implementation", "modelspec.prediction_type")  # fmt: skip
    assert {k: from_version[k] for k in keys} == {k: from_flags[k] for k in keys}


def test_options_not_in_config_come_from_kohya_options():
    facts = TrainingFacts(
        config=TrainConfig(
            lr_warmup_steps=10.0, enable_bucket=True, min_bucket_reso=100, max_bucket_reso=1000,
            clip_skip=2, network_args=["conv_dim=4", "conv_alpha=1"], min_timestep=100,
        ),
        kohya_options={"metadata_title": "My LoRA"},
        optimizer_args={"weight_decay": 0.1},
    )  # fmt: skip
    md = build_metadata(facts)
    assert md["ss_clip_skip"] == "2" and md["modelspec.encoder_layer"] == "2"
    assert md["ss_network_args"] == '{"conv_dim": "4", "conv_alpha": "1", "dropout": null}'
    assert (md["ss_min_bucket_reso"], md["ss_max_bucket_reso"]) == ("64", "1024")  # snapped to 64
    assert md["ss_lr_warmup_steps"] == "10"  # kohya's int_or_float
    assert md["modelspec.timestep_range"] == "100,1000"
    assert md["modelspec.title"] == "My LoRA"
    assert md["ss_optimizer"] == "torch.optim.adamw.AdamW(weight_decay=0.1)"


def test_dataset_config_mode_writes_ss_datasets():
    datasets = [
        {"is_dreambooth": True, "batch_size_per_device": 1, "subsets": [{"class_tokens": "sks"}]}
    ]
    md = build_metadata(TrainingFacts(config=TrainConfig(), datasets=datasets))
    assert json.loads(md["ss_datasets"]) == datasets
    # kohya writes the single-dataset keys only without a dataset_config file.
    assert (
        "ss_resolution" not in md and "ss_bucket_info" not in md and "ss_reg_dataset_dirs" not in md
    )
    assert md["ss_tag_frequency"] == "{}"


def test_base_model_without_file_has_name_only():
    md = build_metadata(TrainingFacts(config=TrainConfig(), base_model_name="live model"))
    assert md["ss_sd_model_name"] == "live model"
    assert "ss_sd_model_hash" not in md and "ss_new_sd_model_hash" not in md


def test_finished_at_defaults_to_now_and_output_name_to_config():
    before = time.time()
    facts = TrainingFacts(config=dataclasses.replace(TrainConfig(), output_name="abc"))
    md = build_metadata(facts)
    assert before <= float(md["ss_training_finished_at"]) <= time.time()
    assert md["ss_output_name"] == md["modelspec.title"] == "abc"
    assert 0 <= int(md["ss_session_id"]) <= 2**32
