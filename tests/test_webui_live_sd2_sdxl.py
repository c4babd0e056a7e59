"""SD2 (768-v) and SDXL through the WebUI adapter: bundle over the live tensors, training, the live model untouched."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent / "fake_webui"))

from fake_sd_model import has_peft_layers, live_record
from fake_sd_model_v2_xl import build_live_tiny_sd2, build_live_tiny_sdxl
from harness import FIXTURES, fresh_webui
from tiny_ldm_layouts import webui_live_layout

from lora_trainer.demo import make_demo_dataset
from lora_trainer.lora.kohya_file import load_kohya_lora

BUILDERS = {"sd2": build_live_tiny_sd2, "sdxl": build_live_tiny_sdxl}
FILES = {"sd2": "tiny-sd2-v.safetensors", "sdxl": "tiny-sdxl.safetensors"}
_LIVE: dict[str, torch.nn.Module] = {}  # built once per session; every test leaves it as it was


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("Stable-diffusion")


@pytest.fixture(params=["sd2", "sdxl"])
def env(request, monkeypatch, tmp_path, model_folder):
    env = fresh_webui(monkeypatch, tmp_path)
    arch = request.param
    if arch not in _LIVE:
        _LIVE[arch] = BUILDERS[arch](model_folder, FIXTURES)
    env.arch, env.model_file = arch, model_folder / FILES[arch]
    env.shared.sd_model = _LIVE[arch]
    env.data = make_demo_dataset(tmp_path / "dataset", count=1)  # 2 steps per epoch
    return env


def _storages(model) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in model.state_dict().values()}


def test_fake_has_the_recorded_live_layout_and_attributes(env):
    """The fake is anchored to the real WebUI's dump: key rule, flags, text-encoder facts."""
    model = env.shared.sd_model
    checkpoint = load_file(str(env.model_file))
    assert set(model.state_dict()) == set(webui_live_layout(checkpoint))
    dump = json.loads((FIXTURES / f"a1111_{env.arch}_state_dict.json").read_text(encoding="utf-8"))
    facts = dump["facts"]
    for name in ("is_sd1", "is_sd2", "is_sdxl", "is_ssd", "is_sd3", "parameterization"):
        assert getattr(model, name) == facts[name]["value"], name
    assert model.scale_factor == facts["scale_factor"]["value"]
    assert str(model.model_type) == facts["model_type"]["value"]
    assert isinstance(model.alphas_cumprod, torch.Tensor)
    is_buffer = any(b is model.alphas_cumprod for b in model.buffers())
    assert is_buffer == facts["alphas_cumprod"]["is_registered_buffer"]
    assert model.alphas_cumprod[0].item() == pytest.approx(
        facts["alphas_cumprod"]["first"], abs=1e-6
    )
    for path, recorded in facts["text_encoders"].items():
        embedder = model.get_submodule(path)
        for key in ("id_start", "id_end", "id_pad", "comma_token", "chunk_length"):
            assert getattr(embedder, key) == recorded[key], (path, key)
        assert embedder.wrapped.layer == recorded["wrapped.layer"]
    # open_clip keeps its causal mask out of the state dict, as the real dump shows
    assert any(name.endswith("attn_mask") for name, _ in model.named_buffers())
    assert not any(key.endswith("attn_mask") for key in dump["state_dict"])
    assert env.shared.sd_model.sd_checkpoint_info.title.startswith(FILES[env.arch])


def test_bundle_shares_every_parameter_with_the_live_model(env):
    from lora_trainer.webui.live_model import build_live_bundle, describe_loaded_model

    model = env.shared.sd_model
    bundle = build_live_bundle(model)
    live = _storages(model)
    params = [p for module in bundle.modules().values() for p in module.parameters()]
    assert len(params) > 500
    # open_clip's q/k/v are row slices of the fused in_proj: same storage, other offsets
    assert all(p.untyped_storage().data_ptr() in live for p in params)
    assert all(not p.requires_grad for p in params)
    assert bundle.arch == env.arch and bundle.source.name == FILES[env.arch]
    assert bundle.source.sha256 == model.sd_checkpoint_info.sha256
    assert bundle.scale_factor == pytest.approx(model.scale_factor)
    info = describe_loaded_model()
    if env.arch == "sd2":
        assert bundle.prediction_type == "v_prediction" and info.v_prediction
        assert info.label.startswith("SD 2.x (v-prediction)") and info.default_resolution == 768
        live_blocks = len(model.cond_stage_model.wrapped.model.transformer.resblocks)
        assert bundle.text_encoder.config.num_hidden_layers == live_blocks - 1  # penultimate
    else:
        assert bundle.prediction_type == "epsilon" and info.default_resolution == 1024
        assert bundle.tokenizers[0] is model.conditioner.embedders[0].wrapped.tokenizer
        assert bundle.unet.config.addition_time_embed_dim == model.conditioner.embedders[2].outdim
        assert len(bundle.text_encoders) == 2


def _request(env, **extra):
    from lora_trainer.webui.request import TrainRequest

    options = {
        "output_name": "toy",
        "train_data_dir": str(env.data),
        "resolution": "64",
        "network_dim": 4,
        "max_train_epochs": 1,
        "enable_bucket": False,
        "seed": 7,
        **extra,
    }
    return TrainRequest(options=options)


def _spy_conditioning(monkeypatch) -> list:
    """Records the conditioning each training step's UNet gets."""
    from lora_trainer.train import loop

    seen = []
    original = loop.encode_conditioning

    def spy(*args, **kwargs):
        cond = original(*args, **kwargs)
        seen.append(cond)
        return cond

    monkeypatch.setattr(loop, "encode_conditioning", spy)
    return seen


def _spy_noise(monkeypatch) -> list:
    from lora_trainer.train import loop

    schedules = []
    original = loop.TrainLoop.run

    def run(self):
        schedules.append(self.noise)
        return original(self)

    monkeypatch.setattr(loop.TrainLoop, "run", run)
    return schedules


def test_full_training_through_the_runner(env, monkeypatch):
    from lora_trainer.webui.request import prepare_run
    from lora_trainer.webui.runner import RUNNER

    model = env.shared.sd_model
    before = live_record(model)
    conds, schedules = _spy_conditioning(monkeypatch), _spy_noise(monkeypatch)
    prepared = prepare_run(_request(env))
    RUNNER.claim(prepared, "tab")
    outcome = RUNNER.execute(prepared)

    assert outcome["saved"] and outcome["steps"] == 2, RUNNER.board.snapshot().error
    lora = load_kohya_lora(env.lora_dir / "toy.safetensors")
    meta = lora.metadata
    assert meta["ss_sd_model_name"] == FILES[env.arch]
    assert meta["ss_new_sd_model_hash"] == model.sd_checkpoint_info.sha256
    if env.arch == "sd2":
        assert schedules[0].v_prediction  # the loss targets v, as the model predicts
        assert (meta["ss_v2"], meta["ss_base_model_version"]) == ("True", "sd_v2_v")
        assert meta["modelspec.prediction_type"] == "v"
        assert any(k.startswith("lora_te_") for k in lora.tensors)
    else:
        assert not schedules[0].v_prediction
        assert meta["ss_base_model_version"].startswith("sdxl")
        assert {k.split("_text_")[0] for k in lora.tensors if k.startswith("lora_te")} == {
            "lora_te1",
            "lora_te2",
        }
        time_ids = conds[0].added_cond_kwargs["time_ids"]
        (image,) = [p for p in env.data.rglob("*.png")]
        with Image.open(image) as opened:
            width, height = opened.size
        # kohya's order: original size (h, w), crop top-left, target size of the 64x64 sample
        assert time_ids.tolist() == [[height, width, 0.0, 0.0, 64.0, 64.0]]
        assert (width, height) != (64, 64)
        assert conds[0].added_cond_kwargs["text_embeds"].shape[-1] == 32
    card = json.loads((env.lora_dir / "toy.json").read_text(encoding="utf-8"))
    assert card["sd version"] == {"sd2": "SD2", "sdxl": "SDXL"}[env.arch]
    assert live_record(model) == before and not has_peft_layers(model)


@pytest.mark.parametrize("how", ["exception", "interrupt"])
def test_live_model_unchanged_after_error_or_interrupt(env, monkeypatch, how):
    from lora_trainer.train import loop
    from lora_trainer.webui.request import prepare_run
    from lora_trainer.webui.runner import RUNNER

    model = env.shared.sd_model
    before = live_record(model)
    original = loop.TrainLoop._optimizer_step
    calls = []

    def step(self):
        calls.append(1)
        if len(calls) == 2 and how == "exception":
            raise RuntimeError("boom")
        if len(calls) == 2:
            env.shared.state.interrupt()  # the WebUI's Interrupt button
        return original(self)

    monkeypatch.setattr(loop.TrainLoop, "_optimizer_step", step)
    prepared = prepare_run(_request(env, max_train_epochs=None, max_train_steps=4))
    RUNNER.claim(prepared, "tab")
    outcome = RUNNER.execute(prepared)

    if how == "exception":
        assert "RuntimeError: boom" in outcome["error"] and not outcome["saved"]
    else:
        assert outcome["stopped"] and outcome["saved"] and outcome["steps"] == 2
    assert live_record(model) == before and not has_peft_layers(model)
    assert all(not p.requires_grad for p in model.first_stage_model.parameters())
    assert not RUNNER.active
