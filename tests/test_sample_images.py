"""Sample images during training: when, names, content, samplers, and no effect on training."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from train_helpers import tiny_config

from lora_trainer.config import TrainConfig
from lora_trainer.demo import make_demo_dataset
from lora_trainer.errors import ConfigError
from lora_trainer.lora.kohya_file import load_kohya_lora
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.models.tiny_sd2 import build_tiny_sd2
from lora_trainer.models.tiny_sdxl import build_tiny_sdxl
from lora_trainer.train import sampling
from lora_trainer.train.events import MessageEvent, SampleEvent, StepEvent
from lora_trainer.train.job import run_training
from lora_trainer.train.sample_prompts import SamplePrompt
from lora_trainer.train.sampling import ImageSampler, eval_mode, preserved_rng

PROMPTS = (
    "sks toy, red circle --n blurry --w 64 --h 64 --s 3 --d 7 --l 5\n"
    "# a comment\n"
    "a green square --w 72 --h 64 --s 2 --ss euler_a\n"
)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("data"), count=4)


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_sd1()


@pytest.fixture()
def prompt_file(tmp_path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text(PROMPTS, encoding="utf-8")
    return path


def _config(dataset_dir: Path, out: Path, **options) -> TrainConfig:
    defaults = {
        "max_train_steps": 4,
        "seed": 1,
    }
    return tiny_config(dataset_dir, out, defaults, **options)


def _samples(events: list) -> list[SampleEvent]:
    return [e for e in events if isinstance(e, SampleEvent)]


def test_sample_at_first_and_every_n_steps(dataset_dir, prompt_file, tmp_path):
    events: list = []
    config = _config(
        dataset_dir, tmp_path / "out", sample_prompts=str(prompt_file), sample_every_n_steps=2,
        sample_at_first=True,
    )  # fmt: skip
    run_training(config, emit=events.append)
    samples = _samples(events)
    assert [(e.step, e.epoch) for e in samples] == [(0, 0), (2, None), (4, None)]
    names = [p.name for e in samples for p in e.paths]
    # kohya's names: <output_name>_<e+epoch or step>_<prompt index>_<timestamp>[_<seed>].png
    patterns = [
        r"t_e000000_00_\d{14}_7\.png", r"t_e000000_01_\d{14}\.png",
        r"t_000002_00_\d{14}_7\.png", r"t_000002_01_\d{14}\.png",
        r"t_000004_00_\d{14}_7\.png", r"t_000004_01_\d{14}\.png",
    ]  # fmt: skip
    assert len(names) == len(patterns)
    for name, pattern in zip(names, patterns):
        assert re.fullmatch(pattern, name), name
    assert samples[0].prompts == ("sks toy, red circle", "a green square")
    first, second = samples[0].paths
    assert first.parent == tmp_path / "out" / "sample"
    with Image.open(first) as image:
        assert image.size == (64, 64) and image.mode == "RGB"
        info = image.info["parameters"]
    assert info.splitlines() == [
        "sks toy, red circle",
        "Negative prompt: blurry",
        "Steps: 3, Sampler: ddim, CFG scale: 5.0, Seed: 7, Size: 64x64",
    ]
    with Image.open(second) as image:
        assert image.size == (72, 64)
        assert "Sampler: euler_a" in image.info["parameters"]


def test_sampling_does_not_change_the_trained_weights(dataset_dir, prompt_file, tmp_path):
    # LoRA dropout draws from torch's global generator during training
    common = {"network_dropout": 0.1, "max_train_steps": 3}
    plain = run_training(_config(dataset_dir, tmp_path / "a", **common))
    sampled_config = _config(
        dataset_dir, tmp_path / "b", sample_prompts=str(prompt_file), sample_every_n_steps=2,
        **common,
    )  # fmt: skip
    sampled = run_training(sampled_config)
    assert len(list((tmp_path / "b" / "sample").glob("*.png"))) == 2
    a = load_kohya_lora(plain.output_path).tensors
    b = load_kohya_lora(sampled.output_path).tensors
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert plain.losses == sampled.losses


def test_every_n_epochs_wins_over_steps_and_names_by_epoch(dataset_dir, prompt_file, tmp_path):
    events: list = []
    # 4 images x 2 repeats, batch 4: 2 steps per epoch
    config = _config(
        dataset_dir, tmp_path, sample_prompts=str(prompt_file), sample_every_n_steps=1,
        sample_every_n_epochs=1, train_batch_size=4, max_train_epochs=2,
    )  # fmt: skip
    run_training(config, emit=events.append)
    samples = _samples(events)
    assert [(e.step, e.epoch) for e in samples] == [(2, 1), (4, 2)]
    assert re.fullmatch(r"t_e000002_01_\d{14}\.png", samples[1].paths[1].name)


def test_prompt_file_edits_during_training_are_used(dataset_dir, prompt_file, tmp_path):
    events: list = []

    def emit(event):
        events.append(event)
        if isinstance(event, StepEvent) and event.step == 1:
            prompt_file.write_text("a blue triangle --w 64 --h 64 --s 1\n", encoding="utf-8")

    config = _config(
        dataset_dir, tmp_path, sample_prompts=str(prompt_file), sample_every_n_steps=2,
        max_train_steps=2,
    )  # fmt: skip
    run_training(config, emit=emit)
    assert [e.prompts for e in _samples(events)] == [("a blue triangle",)]


def test_prompt_problems_stop_before_training(dataset_dir, tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(ConfigError, match="sample_prompts file does not exist"):
        run_training(
            _config(dataset_dir, tmp_path, sample_prompts=str(missing), sample_at_first=True)
        )
    bad = tmp_path / "bad.txt"
    bad.write_text("fine --s 2\nodd --ss warp_drive\n", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"sampler 'warp_drive' is not known \(.*bad.txt, prompt 2\)"
    ):
        run_training(_config(dataset_dir, tmp_path, sample_prompts=str(bad), sample_at_first=True))
    with pytest.raises(ConfigError, match="sampler 'fast' is not known"):
        run_training(_config(dataset_dir, tmp_path, sample_sampler="fast"))
    assert not list(tmp_path.rglob("*.safetensors"))


def test_prompts_without_a_schedule_warn(dataset_dir, prompt_file, tmp_path):
    events: list = []
    run_training(
        _config(dataset_dir, tmp_path, sample_prompts=str(prompt_file), max_train_steps=1),
        emit=events.append,
    )
    warnings = [e.text for e in events if isinstance(e, MessageEvent) and e.level == "warning"]
    assert any("no sample images will be made" in w for w in warnings)
    assert not (tmp_path / "sample").exists()
    events.clear()
    # the other way round (the kohya_ss GUI's empty prompt file): a warning, no samples
    config = _config(dataset_dir, tmp_path / "b", sample_every_n_steps=1, max_train_steps=1)
    run_training(config, emit=events.append)
    warnings = [e.text for e in events if isinstance(e, MessageEvent) and e.level == "warning"]
    assert any("sample_prompts is not set: none will be made" in w for w in warnings)
    assert not _samples(events)


def _prompt(**changes) -> SamplePrompt:
    base = SamplePrompt(0, "sks toy", None, 64, 64, None, 7.5, 3, "euler")
    return replace(base, **changes)


def _sampler(bundle, tmp_path: Path, **options) -> ImageSampler:
    config = replace(TrainConfig(output_name="s", resolution="64"), **options)
    return ImageSampler(bundle, config, tmp_path, torch.device("cpu"), lambda e: None)


def test_images_follow_seed_guidance_and_negative_prompt(tiny, tmp_path):
    sampler = _sampler(tiny, tmp_path)

    def pixels(seed: int = 3, **changes) -> torch.Tensor:
        image = sampler.image(_prompt(**changes), seed)
        return torch.tensor(list(image.getdata()), dtype=torch.float32)

    base = pixels()
    assert torch.equal(base, pixels())
    assert not torch.equal(base, pixels(seed=4))
    assert not torch.equal(base, pixels(scale=1.0))  # guidance off: the prompt alone
    assert not torch.equal(base, pixels(negative_prompt="blurry"))
    assert torch.equal(pixels(scale=1.0), pixels(scale=1.0, negative_prompt="blurry"))


@pytest.mark.parametrize(
    "name", ["euler", "euler_a", "ddim", "DPM++ 2M", "DPM++ 2M Karras", "k_dpm_2_a", "pndm"]
)
def test_samplers_make_finite_latents(tiny, tmp_path, name):
    sampler = _sampler(tiny, tmp_path)
    latents = sampler._denoise(
        _prompt(sampler=name), torch.Generator().manual_seed(0), sampling.contextlib.nullcontext
    )
    assert latents.shape == (1, 4, 8, 8) and torch.isfinite(latents).all()


def test_v_prediction_and_sdxl_models(tmp_path, monkeypatch):
    built = []
    real = sampling.build_scheduler

    def spy(name, config, prediction_type="epsilon", zero_terminal_snr=False):
        built.append(prediction_type)
        return real(name, config, prediction_type, zero_terminal_snr)

    monkeypatch.setattr(sampling, "build_scheduler", spy)
    sd2 = _sampler(build_tiny_sd2(), tmp_path)
    assert sd2.image(_prompt(), 1).size == (64, 64)
    assert built == ["v_prediction"]
    sdxl_bundle = build_tiny_sdxl()
    seen = []
    sdxl_bundle.unet.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["added_cond_kwargs"]["time_ids"]),
        with_kwargs=True,
    )
    image = _sampler(sdxl_bundle, tmp_path).image(_prompt(width=96), 1)
    assert image.size == (96, 64)
    # SDXL size conditioning as kohya samples: original = target = (h, w), no crop
    assert seen[0].tolist() == [[64.0, 96.0, 0.0, 0.0, 64.0, 96.0]] * 2


def test_eval_mode_inside_and_flags_restored(tmp_path, prompt_file):
    bundle = build_tiny_sd1()
    bundle.unet.train()
    bundle.unet.conv_in.eval()  # a submodule with its own flag
    modes = []
    bundle.unet.register_forward_pre_hook(lambda m, args: modes.append(m.training))
    sampler = _sampler(bundle, tmp_path, sample_prompts=str(prompt_file))
    paths = sampler.generate(None, 5)
    assert len(paths) == 2 and set(modes) == {False}
    assert bundle.unet.training and not bundle.unet.conv_in.training
    assert bundle.unet.down_blocks[0].training and not bundle.vae.training


def test_random_state_is_put_back():
    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(9)
    before, gen_before = torch.get_rng_state(), gen.get_state()
    with preserved_rng([gen]):
        torch.rand(10)
        torch.rand(3, generator=gen)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(gen.get_state(), gen_before)


def test_eval_mode_context_restores_on_error():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    model.train()
    with pytest.raises(RuntimeError), eval_mode([model]):
        assert not model[1].training
        raise RuntimeError
    assert model.training and model[1].training
