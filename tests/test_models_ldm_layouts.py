"""The WebUI's live state-dict layouts (recorded from a real A1111) convert into complete diffusers modules."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_ldm_layouts import webui_live_layout

from lora_trainer.errors import ModelError
from lora_trainer.models.arch_configs import configs_from_ldm_yaml
from lora_trainer.models.ldm_bundle import bundle_from_ldm_state_dict
from lora_trainer.models.ldm_keys import SCHEDULE_BUFFERS, checkpoint_layout, detect_arch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64}
DDPM = sorted(SCHEDULE_BUFFERS - {"logvar"})
SD2_LAST_BLOCK = [
    f"cond_stage_model.model.transformer.resblocks.23.{name}"
    for name in (
        "attn.in_proj_bias", "attn.in_proj_weight", "attn.out_proj.bias", "attn.out_proj.weight",
        "ln_1.bias", "ln_1.weight", "ln_2.bias", "ln_2.weight", "mlp.c_fc.bias",
        "mlp.c_fc.weight", "mlp.c_proj.bias", "mlp.c_proj.weight",
    )
]  # fmt: skip
# what each layout holds besides the modules' weights, and is left out on purpose
EXPECTED_LEFT_OUT = {
    "sd15": DDPM,
    "sd2": sorted(
        [
            *DDPM,
            "cond_stage_model.model.logit_scale",
            "cond_stage_model.model.text_projection",
            *SD2_LAST_BLOCK,
        ]
    ),
    "sdxl": ["conditioner.embedders.1.model.logit_scale", "denoiser.sigmas"],
    "tiny_sd1": DDPM,
}
ARCH = {"sd15": "sd1", "sd2": "sd2", "sdxl": "sdxl", "tiny_sd1": "sd1"}


def _dump(fixtures, name: str) -> dict:
    return json.loads((fixtures / f"a1111_{name}_state_dict.json").read_text())


def _meta(entries: dict) -> dict[str, torch.Tensor]:
    return {
        k: torch.empty(v["shape"], dtype=DTYPES[v["dtype"]], device="meta")
        for k, v in entries.items()
    }


def _configs(fixtures, name: str, state_dict: dict):
    if name != "tiny_sd1":
        return None  # the bundled standard configs
    import yaml

    original = yaml.safe_load((fixtures / "tiny-sd1.yaml").read_text())
    layout = checkpoint_layout(state_dict)
    return configs_from_ldm_yaml(original, layout, "sd1", fixtures / "tiny-sd1.yaml")


@pytest.mark.parametrize("name", ["sd15", "sd2", "sdxl", "tiny_sd1"])
@pytest.mark.parametrize("layout", ["state_dict", "checkpoint_tensors"])
def test_each_layout_converts_completely(fixtures, name, layout):
    state_dict = _meta(_dump(fixtures, name)[layout])
    bundle = bundle_from_ldm_state_dict(state_dict, configs=_configs(fixtures, name, state_dict))
    # build_with_tensors refuses missing or unexpected keys; what is left over is exactly
    # the schedule buffers and open_clip parts the families do not use
    assert bundle.arch == ARCH[name]
    assert bundle.extra["ignored_keys"] == EXPECTED_LEFT_OUT[name]
    assert bundle.extra["unknown_keys"] == []
    for module in bundle.modules().values():
        assert all(p.is_meta for p in module.parameters())  # every parameter is an input tensor
        assert not any(p.requires_grad for p in module.parameters())


def test_full_size_modules_have_the_expected_shapes(fixtures):
    bundle = bundle_from_ldm_state_dict(_meta(_dump(fixtures, "sdxl")["state_dict"]))
    first, second = bundle.text_encoders
    assert first.config.num_hidden_layers == 12 and second.config.num_hidden_layers == 32
    assert tuple(second.text_projection.weight.shape) == (1280, 1280)
    assert bundle.unet.config.cross_attention_dim == 2048
    assert bundle.scale_factor == pytest.approx(0.13025)
    sd2 = bundle_from_ldm_state_dict(
        _meta(_dump(fixtures, "sd2")["state_dict"]), prediction_type="v"
    )
    assert sd2.text_encoder.config.num_hidden_layers == 23  # open_clip's 24 minus the last
    assert sd2.prediction_type == "v_prediction" and sd2.base_model_version == "sd_v2_v"


@pytest.mark.parametrize("name", ["sd15", "sd2", "sdxl", "tiny_sd1"])
def test_test_helper_reproduces_the_webui_live_layout(fixtures, name):
    # anchors tests/tiny_ldm_layouts.py to the real WebUI: checkpoint keys -> live keys
    dump = _dump(fixtures, name)
    live = webui_live_layout(dict.fromkeys(dump["checkpoint_keys"]))
    assert set(live) == set(dump["state_dict"])
    assert set(checkpoint_layout(dict.fromkeys(dump["state_dict"]))) == set(dump["checkpoint_keys"])


def test_detected_family_and_refusals(fixtures):
    sd2 = _meta(_dump(fixtures, "sd2")["checkpoint_tensors"])
    assert detect_arch(sd2) == "sd2"
    with pytest.raises(ModelError, match="given as SDXL but its weights are SD2"):
        bundle_from_ldm_state_dict(sd2, "sdxl")
    inpaint = dict(sd2)
    inpaint["model.diffusion_model.input_blocks.0.0.weight"] = torch.empty(
        320, 9, 3, 3, device="meta"
    )
    with pytest.raises(ModelError, match="9 input channels"):
        detect_arch(inpaint)
    refiner = {
        "model.diffusion_model.input_blocks.0.0.weight": torch.empty(384, 4, 3, 3),
        "conditioner.embedders.0.model.transformer.resblocks.0.attn.in_proj_weight": torch.empty(1),
    }
    with pytest.raises(ModelError, match="SDXL refiner"):
        detect_arch(refiner)
    with pytest.raises(ModelError, match="not a Stable Diffusion checkpoint"):
        detect_arch({"foo.weight": torch.zeros(1)})


def test_missing_parts_and_wrong_sizes_are_clear_errors(fixtures):
    sd15 = _meta(_dump(fixtures, "sd15")["checkpoint_tensors"])
    no_vae = {k: v for k, v in sd15.items() if not k.startswith("first_stage_model.")}
    with pytest.raises(ModelError, match=r"no VAE weights.*vae option"):
        bundle_from_ldm_state_dict(no_vae)
    no_text = {k: v for k, v in sd15.items() if "layers.3." not in k}
    with pytest.raises(ModelError, match="text encoder weights do not fit"):
        bundle_from_ldm_state_dict(no_text)
    tiny = _meta(_dump(fixtures, "tiny_sd1")["checkpoint_tensors"])
    with pytest.raises(ModelError, match=r"sizes of this architecture.*yaml"):
        bundle_from_ldm_state_dict(tiny)  # bundled SD1.5 configs on a tiny model
    stray = dict(
        sd15, **{"model.diffusion_model.extra_block.weight": torch.empty(1, device="meta")}
    )
    with pytest.raises(ModelError, match="1 of the checkpoint's UNet weights"):
        bundle_from_ldm_state_dict(stray)
