"""LoRA injection: kohya's targets, names, shapes, init and scale; clean removal."""

from __future__ import annotations

import json
import math

import pytest
import torch
from empty_models import empty_bundle
from peft.tuners.lora import LoraLayer
from safetensors import safe_open

from lora_trainer.config import TrainConfig
from lora_trainer.errors import LoraFileError
from lora_trainer.lora.kohya_file import save_kohya_lora
from lora_trainer.lora.network import ADAPTER, LoraNetwork, NetworkSpec
from lora_trainer.lora.targets import text_encoder_targets, unet_targets
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.train.job import inject_network

DTYPE_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


@pytest.fixture(scope="module")
def sd15_empty():
    """Full-size SD1.5 UNet and CLIP-L text encoder with no weights allocated."""
    bundle = empty_bundle("sd1")
    return bundle.unet, bundle.text_encoders[0]


def _materialised(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # LoRA weights of a meta model are meta too; zeros of the same shape/dtype can be written
    return {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in tensors.items()}


def _inject_sd15(sd15_empty, rank: int, conv: bool = False) -> LoraNetwork:
    unet, text_encoder = sd15_empty
    models = {
        "unet": (unet, unet_targets(unet, include_conv3x3=conv)),
        "te": (text_encoder, text_encoder_targets(text_encoder)),
    }
    return LoraNetwork.inject(models, NetworkSpec(rank, 1.0))


def test_sd15_file_matches_kohya_keys_shapes_dtypes(sd15_empty, fixtures, tmp_path):
    expected = json.loads((fixtures / "kohya_sd15_lora_keys.json").read_text())["keys"]
    network = _inject_sd15(sd15_empty, rank=4)
    try:
        path = tmp_path / "sd15.safetensors"
        save_kohya_lora(path, _materialised(network.kohya_state_dict()), {})
    finally:
        network.remove()
    with safe_open(str(path), "pt") as f:
        written = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    assert set(written) == set(expected)
    for key, info in expected.items():
        assert list(written[key].shape) == info["shape"], key
        assert DTYPE_NAMES[written[key].dtype] == info["dtype"], key


def test_rank_8_has_the_same_names_with_scaled_shapes(sd15_empty, fixtures):
    expected = json.loads((fixtures / "kohya_sd15_lora_keys.json").read_text())["keys"]
    network = _inject_sd15(sd15_empty, rank=8)
    try:
        tensors = network.kohya_state_dict()
    finally:
        network.remove()
    assert set(tensors) == set(expected)
    down = tensors["lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"]
    up = tensors["lora_unet_mid_block_attentions_0_proj_out.lora_up.weight"]
    assert list(down.shape) == [8, 768]
    assert list(up.shape) == [1280, 8, 1, 1]


def test_locon_targets_match_kohya(sd15_empty, fixtures):
    expected = json.loads((fixtures / "kohya_sd15_locon_keys.json").read_text())["keys"]
    unet, text_encoder = sd15_empty
    names = {t.kohya_name for t in unet_targets(unet, include_conv3x3=True)}
    names |= {t.kohya_name for t in text_encoder_targets(text_encoder)}
    assert names == {k.split(".")[0] for k in expected}


def test_init_is_kohya_and_scale_is_alpha_over_rank():
    bundle = build_tiny_sd1()
    network = inject_network(bundle, TrainConfig(network_dim=4, network_alpha=2.0), seed=0)
    for _, layer in network.layers():
        down, up = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
        fan_in = down[0].numel()
        assert torch.count_nonzero(up) == 0
        assert down.abs().max() <= 1 / math.sqrt(fan_in) + 1e-6  # kaiming_uniform(a=sqrt(5))
        assert down.dtype == torch.float32
        assert layer.scaling[ADAPTER] == pytest.approx(0.5)
    alphas = {k: v for k, v in network.kohya_state_dict().items() if k.endswith(".alpha")}
    assert all(v.ndim == 0 and float(v) == 2.0 for v in alphas.values())
    network.remove()


def test_same_seed_same_init_and_remove_restores_modules():
    bundle = build_tiny_sd1()
    before = dict(bundle.unet.named_modules())
    first = inject_network(bundle, TrainConfig(), seed=5).kohya_state_dict()
    LoraNetwork([], NetworkSpec(4, 1)).remove()  # removing nothing is harmless
    bundle = build_tiny_sd1()
    network = inject_network(bundle, TrainConfig(), seed=5)
    second = network.kohya_state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    network.remove()
    assert not any(isinstance(m, LoraLayer) for m in bundle.unet.modules())
    assert not any(isinstance(m, LoraLayer) for m in bundle.text_encoder.modules())
    assert [type(m) for m in bundle.unet.modules()] == [type(m) for m in before.values()]


def test_unet_only_and_text_encoder_only():
    bundle = build_tiny_sd1()
    network = inject_network(bundle, TrainConfig(network_train_unet_only=True), seed=0)
    assert network.part_names == ["unet"]
    network.remove()
    network = inject_network(bundle, TrainConfig(network_train_text_encoder_only=True), seed=0)
    assert network.part_names == ["te"]
    network.remove()


def test_load_kohya_state_dict_round_trip_and_rank_mismatch():
    bundle = build_tiny_sd1()
    network = inject_network(bundle, TrainConfig(network_alpha=3.0), seed=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in network.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    saved = {k: v.clone() for k, v in network.kohya_state_dict().items()}
    network.remove()
    network = inject_network(bundle, TrainConfig(network_alpha=1.0), seed=1)
    network.load_kohya_state_dict(saved, "saved")
    loaded = network.kohya_state_dict()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    network.remove()
    network = inject_network(bundle, TrainConfig(network_dim=8), seed=0)
    with pytest.raises(LoraFileError, match="network_dim = 4"):
        network.load_kohya_state_dict(saved, "saved")
    network.remove()
    network = inject_network(bundle, TrainConfig(network_train_unet_only=True), seed=0)
    with pytest.raises(LoraFileError, match="does not fit"):
        network.load_kohya_state_dict(saved, "saved")
    network.remove()
