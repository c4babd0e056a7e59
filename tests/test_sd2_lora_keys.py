"""SD2 LoRA files: kohya's keys and shapes (proj_in/proj_out as [r, C, 1, 1]); both forms read back."""

from __future__ import annotations

import json

import pytest
import torch
from empty_models import empty_bundle

from lora_trainer.config import TrainConfig
from lora_trainer.errors import LoraFileError
from lora_trainer.lora.kohya_file import load_kohya_lora, save_kohya_lora
from lora_trainer.lora.network import ADAPTER
from lora_trainer.models.bundle import ModelBundle
from lora_trainer.models.tiny_sd2 import build_tiny_sd2
from lora_trainer.train.job import inject_network

PROJ = "lora_unet_down_blocks_0_attentions_0_proj_in"


@pytest.fixture(scope="module")
def sd2_empty() -> ModelBundle:
    return empty_bundle("sd2")


def test_sd2_keys_and_shapes_equal_kohya(sd2_empty, fixtures):
    expected = json.loads((fixtures / "kohya_sd2_lora_keys.json").read_text())["keys"]
    network = inject_network(sd2_empty, TrainConfig(network_dim=4, network_alpha=1.0), seed=0)
    try:
        tensors = network.kohya_state_dict()
    finally:
        network.remove()
    assert set(tensors) == set(expected)
    for key, info in expected.items():
        assert list(tensors[key].shape) == info["shape"], key
    assert list(tensors["lora_unet_mid_block_attentions_0_proj_out.lora_up.weight"].shape) == [
        1280,
        4,
        1,
        1,
    ]


def _trained_sd2_network(seed: int = 1):
    bundle = build_tiny_sd2()
    network = inject_network(bundle, TrainConfig(network_dim=4, network_alpha=2.0), seed=0)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return bundle, network


def _as_2d(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.flatten(1) if v.ndim == 4 else v for k, v in tensors.items()}


@pytest.mark.parametrize("form", ["4-D (kohya)", "2-D"])
def test_our_reader_accepts_either_projection_form(tmp_path, form):
    bundle, network = _trained_sd2_network()
    saved = {k: v.clone() for k, v in network.kohya_state_dict().items()}
    network.remove()
    assert saved[f"{PROJ}.lora_down.weight"].shape == (4, 32, 1, 1)
    tensors = saved if form.startswith("4") else _as_2d(saved)
    path = tmp_path / "sd2.safetensors"
    save_kohya_lora(path, tensors, {"ss_network_module": "networks.lora"})
    lora = load_kohya_lora(path)  # the file reader's checks accept both shapes
    network = inject_network(bundle, TrainConfig(network_dim=4, network_alpha=1.0), seed=3)
    network.load_kohya_state_dict(lora.tensors, str(path))
    loaded = network.kohya_state_dict()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)  # written back in kohya's form
    layer = dict((t.kohya_name, layer) for t, layer in network.layers())[PROJ]
    assert layer.lora_A[ADAPTER].weight.shape == (4, 32)  # the model's layer stays Linear
    network.remove()


def test_a_shape_that_only_has_the_same_count_is_refused():
    bundle, network = _trained_sd2_network()
    tensors = {k: v.clone() for k, v in network.kohya_state_dict().items()}
    network.remove()
    key = "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight"  # [64, 4]
    tensors[key] = tensors[key].reshape(4, 64)
    network = inject_network(bundle, TrainConfig(network_dim=4), seed=0)
    with pytest.raises(LoraFileError, match="shapes"):
        network.load_kohya_state_dict(tensors, "edited")
    network.remove()
