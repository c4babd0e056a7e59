"""The host adapter's view of the WebUI's loaded model: bundle over live tensors, refusals, LoRA merges."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "fake_webui"))

from harness import FIXTURES, fresh_webui, live_tiny_model


@pytest.fixture()
def env(monkeypatch, tmp_path):
    env = fresh_webui(monkeypatch, tmp_path)
    env.shared.sd_model = live_tiny_model()
    return env


def _fingerprint(model) -> str:
    from fake_sd_model import state_fingerprint

    return state_fingerprint(model)


def test_bundle_shares_every_tensor_with_the_live_model(env):
    from lora_trainer.webui.live_model import build_live_bundle

    model = env.shared.sd_model
    bundle = build_live_bundle(model)
    live = {t.data_ptr() for t in model.state_dict().values()}
    params = [p for module in bundle.modules().values() for p in module.parameters()]
    assert len(params) > 500
    assert all(p.data_ptr() in live for p in params)
    # the WebUI's own tokenizer, its checkpoint's hashes, its latent scale
    assert bundle.tokenizer is model.cond_stage_model.wrapped.tokenizer
    info = model.sd_checkpoint_info
    assert (bundle.source.name, bundle.source.legacy_hash) == ("tiny-sd1.safetensors", "bf110a88")
    assert bundle.source.sha256.startswith("4c9fedc4b7")
    assert bundle.scale_factor == pytest.approx(0.18215)
    assert info.title == "tiny-sd1.safetensors [4c9fedc4b7]"
    assert all(not p.requires_grad for p in params)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda env, m: setattr(env.shared.cmd_opts, "lowvram", True), "--lowvram or --medvram"),
        (lambda env, m: setattr(env.shared.cmd_opts, "medvram", True), "--lowvram or --medvram"),
        (lambda env, m: setattr(m, "lowvram", True), "--lowvram or --medvram"),
        (lambda env, m: setattr(sys.modules["modules.devices"], "fp8", True), "FP8"),
        (lambda env, m: setattr(m, "is_sd3", True), "Stable Diffusion 3"),
        (lambda env, m: setattr(m, "is_ssd", True), "SSD-1B"),
    ],
)
def test_refuses_what_it_cannot_train(env, monkeypatch, change, expected):
    from modules import devices

    from lora_trainer.errors import ModelError
    from lora_trainer.webui.live_model import build_live_bundle, describe_loaded_model

    model = env.shared.sd_model
    monkeypatch.setattr(devices, "fp8", False)
    for name in ("lowvram", "is_sd3", "is_ssd"):
        monkeypatch.setattr(model, name, getattr(model, name))
    monkeypatch.setattr(env.shared.cmd_opts, "lowvram", False)
    monkeypatch.setattr(env.shared.cmd_opts, "medvram", False)
    change(env, model)
    with pytest.raises(ModelError) as err:
        build_live_bundle(model)
    assert expected in err.value.message
    assert expected in describe_loaded_model().problem


def test_no_model_loaded(env):
    from lora_trainer.errors import ModelError
    from lora_trainer.webui.live_model import check_trainable, describe_loaded_model, loaded_model

    env.shared.sd_model = None
    assert describe_loaded_model() is None
    with pytest.raises(ModelError, match="no checkpoint is loaded"):
        check_trainable(loaded_model())


def test_lora_merged_by_the_webui_is_restored_before_training(env):
    from lora_trainer.webui.live_model import build_live_bundle

    model, networks = env.shared.sd_model, env.networks
    pristine = _fingerprint(model)
    shutil.copy(FIXTURES / "tiny-sd1-lora.safetensors", env.lora_dir)
    networks.list_available_networks()
    networks.load_networks(["tiny-sd1-lora"])
    with torch.no_grad():  # what the next generation's forward pass does in the real WebUI
        for module in model.modules():
            networks.network_apply_weights(module)
    merged = [m for m in model.modules() if getattr(m, "network_current_names", ())]
    assert len(merged) > 3 and _fingerprint(model) != pristine  # every layer that ran is marked

    bundle = build_live_bundle(model)

    assert _fingerprint(model) == pristine
    assert networks.loaded_networks == []
    assert all(m.network_current_names == () for m in merged)
    # the bundle sees the checkpoint's own weights, not the merged ones
    q = model.get_submodule(
        "cond_stage_model.wrapped.transformer.text_model.encoder.layers.0.self_attn.q_proj"
    ).weight
    te_q = bundle.text_encoder.text_model.encoder.layers[0].self_attn.q_proj.weight
    assert te_q.data_ptr() == q.data_ptr() and torch.equal(te_q, networks.store_weights_backup(q))


def test_merged_weights_without_the_extension_are_refused(env, monkeypatch):
    from lora_trainer.errors import ModelError
    from lora_trainer.webui.live_model import build_live_bundle

    module = env.shared.sd_model.get_submodule("model.diffusion_model.out.2")
    monkeypatch.setattr(module, "network_current_names", (("other", 1.0, 1.0, 1.0),), raising=False)
    monkeypatch.delitem(sys.modules, "networks")
    with pytest.raises(ModelError, match="Reload checkpoint"):
        build_live_bundle(env.shared.sd_model)


def test_guard_puts_back_devices_dtypes_hooks_and_modules(env):
    from lora_trainer.webui.live_guard import LiveModelGuard

    model = env.shared.sd_model
    pristine = _fingerprint(model)
    guard = LiveModelGuard(model)
    vae_conv = model.first_stage_model.encoder.conv_in
    weight = vae_conv.weight
    weight.data = weight.data.double()
    handle_target = model.model.diffusion_model
    handle_target.register_forward_hook(lambda *a: None)
    original_out = model.model.diffusion_model.out
    model.model.diffusion_model.out = torch.nn.Identity()

    fixes = guard.restore()

    assert len(fixes) >= 3
    assert model.model.diffusion_model.out is original_out
    assert not handle_target._forward_hooks
    assert vae_conv.weight is weight and weight.dtype == torch.float32
    assert _fingerprint(model) == pristine
    assert guard.restore() == []


def test_offloading_cached_parts_moves_both_sides_together(env):
    from lora_trainer.config import config_from_dict
    from lora_trainer.train.events import CachesReadyEvent
    from lora_trainer.webui.live_guard import LiveModelGuard
    from lora_trainer.webui.live_model import build_live_bundle
    from lora_trainer.webui.offload import parts_to_offload, relocate_shared

    model = env.shared.sd_model
    pristine = _fingerprint(model)
    bundle = build_live_bundle(model)
    cached = config_from_dict({"cache_latents": True, "network_train_unet_only": True,
                               "cache_text_encoder_outputs": True})  # fmt: skip
    cuda = torch.device("cuda")
    assert parts_to_offload(cached, bundle, cuda) == [bundle.vae, bundle.text_encoder]
    assert parts_to_offload(cached, bundle, torch.device("cpu")) == []
    sampling = config_from_dict(
        {"cache_latents": True, "sample_prompts": "p.txt", "sample_every_n_epochs": 1}
    )
    assert parts_to_offload(sampling, bundle, cuda) == []  # samples need the VAE
    assert parts_to_offload(config_from_dict({}), bundle, cuda) == []
    # what the engine reports cached decides too: here only the latents were
    reported = CachesReadyEvent(latents=3)
    assert parts_to_offload(cached, bundle, cuda, reported) == [bundle.vae]
    assert parts_to_offload(cached, bundle, cuda, CachesReadyEvent()) == []

    guard = LiveModelGuard(model)
    params = list(bundle.vae.parameters()) + list(bundle.text_encoder.parameters())
    old_tensors = [
        p.data for p in params
    ]  # kept alive, so new storage cannot reuse their addresses
    old = {t.data_ptr() for t in old_tensors}
    moved = relocate_shared(
        [bundle.vae, bundle.text_encoder], model, lambda t: t.clone()
    )  # new storage
    live = {t.data_ptr() for t in model.state_dict().values()}
    new = {p.data_ptr() for p in params}
    assert (
        moved == len(params) and not (new & old) and new <= live
    )  # still shared, in the new place
    assert guard.restore() == [] and _fingerprint(model) == pristine
