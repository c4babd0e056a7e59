"""Real in-memory LDM/SGM state dicts: the built modules use the caller's tensors, and compute the same."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from tiny_ldm_layouts import ldm_state_dict, webui_live_layout

from lora_trainer.models.ldm_bundle import bundle_from_ldm_state_dict
from lora_trainer.models.tiny import build_tiny_sd1, tiny_sd1_configs
from lora_trainer.models.tiny_sd2 import build_tiny_sd2, tiny_sd2_configs
from lora_trainer.models.tiny_sdxl import build_tiny_sdxl, tiny_sdxl_configs
from lora_trainer.train.conditioning import PromptOptions, encode_conditioning

TINY = {"sd2": (build_tiny_sd2, tiny_sd2_configs), "sdxl": (build_tiny_sdxl, tiny_sdxl_configs)}


def _storages(state_dict: dict) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in state_dict.values()}


def _params(bundle) -> list[torch.Tensor]:
    return [p for m in bundle.modules().values() for p in m.parameters()]


@pytest.mark.parametrize("arch", ["sd2", "sdxl"])
def test_tiny_layouts_use_only_real_checkpoint_keys(fixtures, arch):
    # every key of the tiny layout exists in the real checkpoint of its family
    real = json.loads((fixtures / f"a1111_{arch}_state_dict.json").read_text())["checkpoint_keys"]
    tiny = ldm_state_dict(TINY[arch][0]())
    assert set(tiny) <= set(real)


@pytest.mark.parametrize("arch", ["sd2", "sdxl"])
@pytest.mark.parametrize("live", [False, True])
def test_every_parameter_is_the_callers_tensor(arch, live):
    build, configs = TINY[arch]
    original = build()
    state_dict = ldm_state_dict(original)
    if live:
        state_dict = webui_live_layout(state_dict)
    bundle = bundle_from_ldm_state_dict(state_dict, configs=configs())
    params = _params(bundle)
    assert len(params) > 300
    assert all(p.untyped_storage().data_ptr() in _storages(state_dict) for p in params)
    # open_clip's fused q/k/v are split into views of the one tensor
    attn = bundle.text_encoders[-1].text_model.encoder.layers[0].self_attn
    ptrs = {
        attn.q_proj.weight.untyped_storage().data_ptr(),
        attn.v_proj.weight.untyped_storage().data_ptr(),
    }
    assert len(ptrs) == 1
    for ours, theirs in zip(bundle.modules().values(), original.modules().values()):
        theirs_state = theirs.state_dict()
        assert all(torch.equal(v, theirs_state[k]) for k, v in ours.state_dict().items())


@pytest.mark.parametrize("arch", ["sd2", "sdxl"])
def test_converted_model_computes_like_the_original(arch):
    build, configs = TINY[arch]
    original = build()
    bundle = bundle_from_ldm_state_dict(
        ldm_state_dict(original), configs=configs(), prediction_type=original.prediction_type
    )
    options = PromptOptions(resolution=(64, 64))
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    outs = []
    with torch.no_grad():
        for model in (original, bundle):
            cond = encode_conditioning(model, ["a red circle"], {}, torch.device("cpu"), options)
            kwargs = {"added_cond_kwargs": cond.added_cond_kwargs}
            outs.append(model.unet(latents, torch.tensor([500]), cond.context, **kwargs).sample)
            outs.append(model.vae.decode(latents).sample)
    # equal up to float summation order (SDXL's text projection is a transposed view)
    assert torch.allclose(outs[0], outs[2], atol=1e-5, rtol=1e-5)
    assert torch.equal(outs[1], outs[3])
    assert bundle.prediction_type == original.prediction_type
    assert bundle.scale_factor == original.scale_factor


def test_tiny_sd1_fixture_file_shares_every_tensor(fixtures):
    import yaml

    from lora_trainer.models.arch_configs import configs_from_ldm_yaml

    path = fixtures / "tiny-sd1.safetensors"
    state_dict = load_file(str(path))
    original = yaml.safe_load((fixtures / "tiny-sd1.yaml").read_text())
    configs = configs_from_ldm_yaml(original, state_dict, "sd1", fixtures / "tiny-sd1.yaml")
    bundle = bundle_from_ldm_state_dict(webui_live_layout(state_dict), configs=configs)
    params = _params(bundle)
    assert len(params) > 250
    assert all(p.untyped_storage().data_ptr() in _storages(state_dict) for p in params)
    assert all(p.dtype == torch.float16 for p in params)  # as the caller holds them: no cast


def test_the_sd1_tiny_model_round_trips_too():
    original = build_tiny_sd1()
    state_dict = ldm_state_dict(original)
    bundle = bundle_from_ldm_state_dict(state_dict, configs=tiny_sd1_configs())
    assert all(p.untyped_storage().data_ptr() in _storages(state_dict) for p in _params(bundle))
    ours, theirs = bundle.unet.state_dict(), original.unet.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in ours.items())
