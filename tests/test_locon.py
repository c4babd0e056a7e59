"""LoCon (conv_dim / conv_alpha) and network_args: kohya's key set, shapes, ranks and rules."""

from __future__ import annotations

import json

import pytest
import torch
from empty_models import empty_bundle

from lora_trainer.config import TrainConfig, config_from_dict
from lora_trainer.errors import ConfigError, LoraFileError
from lora_trainer.lora.network import ADAPTER, LoraNetwork
from lora_trainer.lora.network_args import (
    effective_network_args,
    locon_targets,
    network_options,
)
from lora_trainer.lora.targets import text_encoder_targets
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.train.job import inject_network


@pytest.fixture(scope="module")
def sd15_empty():
    bundle = empty_bundle("sd1")
    return bundle.unet, bundle.text_encoders[0]


def _inject(models, config: TrainConfig) -> LoraNetwork:
    options = network_options(config)
    unet, text_encoder = models
    return LoraNetwork.inject(
        {
            "unet": (unet, locon_targets(unet, options.conv_rank)),
            "te": (text_encoder, text_encoder_targets(text_encoder)),
        },
        options.spec,
    )


def test_locon_keys_and_shapes_equal_kohya(sd15_empty, fixtures):
    expected = json.loads((fixtures / "kohya_sd15_locon_keys.json").read_text())["keys"]
    config = TrainConfig(
        network_dim=4, network_alpha=1.0, network_args=["conv_dim=4", "conv_alpha=1"]
    )
    network = _inject(sd15_empty, config)
    try:
        tensors = network.kohya_state_dict()
    finally:
        network.remove()
    assert set(tensors) == set(expected)
    assert {k: list(v.shape) for k, v in tensors.items()} == {
        k: v["shape"] for k, v in expected.items()
    }


def test_conv_rank_and_alpha_differ_from_linear_ones(sd15_empty, fixtures):
    expected = json.loads((fixtures / "kohya_sd15_locon_keys.json").read_text())["keys"]
    config = TrainConfig(network_dim=8, network_alpha=4.0, conv_dim=2, conv_alpha=0.5)
    network = _inject(sd15_empty, config)
    try:
        tensors = network.kohya_state_dict()
        scalings = {t.kohya_name: layer.scaling[ADAPTER] for t, layer in network.layers()}
    finally:
        network.remove()
    conv3 = "lora_unet_down_blocks_0_resnets_0_conv1"
    linear_in_resnet = "lora_unet_down_blocks_0_resnets_0_time_emb_proj"
    shortcut = "lora_unet_down_blocks_1_resnets_0_conv_shortcut"
    assert list(tensors[f"{conv3}.lora_down.weight"].shape) == [2, 320, 3, 3]
    assert list(tensors[f"{conv3}.lora_up.weight"].shape) == [320, 2, 1, 1]
    assert float(tensors[f"{conv3}.alpha"]) == 0.5 and scalings[conv3] == 0.25
    # Linear and 1x1 layers of the conv blocks take network_dim/network_alpha (kohya)
    assert list(tensors[f"{linear_in_resnet}.lora_down.weight"].shape) == [8, 1280]
    assert list(tensors[f"{shortcut}.lora_down.weight"].shape) == [8, 320, 1, 1]
    assert scalings[linear_in_resnet] == scalings[shortcut] == 0.5
    conv_keys = [k for k in expected if expected[k]["shape"][-2:] == [3, 3]]
    assert conv_keys and all(tensors[k].shape[0] == 2 for k in conv_keys)


def test_conv_dim_zero_keeps_conv_blocks_without_3x3(sd15_empty, fixtures):
    # kohya: any conv_dim adds ResNet/down/upsample blocks; rank 0 only skips the 3x3 convs
    locon = json.loads((fixtures / "kohya_sd15_locon_keys.json").read_text())["keys"]
    network = _inject(sd15_empty, TrainConfig(network_args=["conv_dim=0"]))
    try:
        names = {t.kohya_name for t, _ in network.layers()}
    finally:
        network.remove()
    modules = {k.split(".")[0] for k in locon}
    conv3x3 = {k.split(".")[0] for k in locon if locon[k]["shape"][-2:] == [3, 3]}
    assert names == modules - conv3x3
    assert "lora_unet_down_blocks_0_resnets_0_time_emb_proj" in names


def test_tiny_model_trains_conv_layers_forward_and_backward():
    bundle = build_tiny_sd1()
    network = inject_network(bundle, TrainConfig(conv_dim=4, conv_alpha=2.0), seed=0)
    try:
        convs = [layer for t, layer in network.layers() if t.is_conv3x3]
        assert convs
        with torch.no_grad():
            for layer in convs:
                layer.lora_B[ADAPTER].weight.normal_()
        unet = bundle.unet
        x = torch.randn(1, 4, 8, 8)
        context = torch.randn(1, 77, 32)
        out = unet(x, torch.tensor([10]), context).sample
        out.square().mean().backward()
        assert all(layer.lora_A[ADAPTER].weight.grad is not None for layer in convs)
    finally:
        network.remove()
    # without the LoRA the same input gives a different output: the conv LoRAs were used
    assert not torch.allclose(bundle.unet(x, torch.tensor([10]), context).sample, out)


def test_network_args_forms_and_metadata_list():
    config = config_from_dict({"network_args": "conv_dim=8 conv_alpha=4 rank_dropout=0.1"})
    assert config.network_args == ["conv_dim=8", "conv_alpha=4", "rank_dropout=0.1"]
    options = network_options(config)
    assert (options.conv_rank, options.conv_alpha, options.rank_dropout) == (8, 4.0, 0.1)
    # the GUI's top-level conv_dim is recorded inside network_args, as kohya_ss passes it
    gui = TrainConfig(conv_dim=8, conv_alpha=1.0)
    assert effective_network_args(gui) == ["conv_dim=8", "conv_alpha=1"]
    assert network_options(TrainConfig(conv_dim=8)).conv_alpha == 1.0  # kohya's default


@pytest.mark.parametrize(
    "values, message",
    [
        ({"network_args": ["conv_dims=8"]}, "did you mean 'conv_dim'"),
        ({"network_args": ["block_dims=2,2,2"]}, "block_dims has 3 values"),
        ({"network_args": ["conv_dim"]}, "not key=value"),
        ({"network_args": ["conv_dim=eight"]}, "whole number"),
        ({"conv_alpha": 2.0}, "conv_dim is not"),
        ({"conv_dim": 4, "network_args": ["conv_dim=8"]}, "set twice"),
        ({"network_args": ["rank_dropout=1"]}, "below 1"),
        ({"network_dropout": -0.1}, "network_dropout"),
        ({"network_args": ["module_dropout=1.5"]}, "between 0 and 1"),
    ],
)
def test_network_args_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(values)


def test_network_weights_continue_a_locon_lora():
    bundle = build_tiny_sd1()
    config = TrainConfig(conv_dim=2, conv_alpha=1.0)
    network = inject_network(bundle, config, seed=0)
    with torch.no_grad():
        for p in network.parameters():
            p.normal_()
    saved = {k: v.clone() for k, v in network.kohya_state_dict().items()}
    network.remove()
    network = inject_network(bundle, config, seed=1)
    try:
        network.load_kohya_state_dict(saved, "saved")
        loaded = network.kohya_state_dict()
    finally:
        network.remove()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    plain = inject_network(bundle, TrainConfig(), seed=0)
    try:
        with pytest.raises(LoraFileError, match="does not fit"):
            plain.load_kohya_state_dict(saved, "saved")  # a LoCon file needs conv_dim set
    finally:
        plain.remove()
