"""SDXL LoRA files: lora_te1_/lora_te2_ and SGM block names, keys and shapes exactly kohya's."""

from __future__ import annotations

import json

import pytest
from empty_models import empty_bundle

from lora_trainer.config import TrainConfig
from lora_trainer.lora.sdxl_names import sgm_module_path
from lora_trainer.lora.targets import unet_targets
from lora_trainer.models.bundle import ModelBundle
from lora_trainer.models.tiny_sdxl import build_tiny_sdxl
from lora_trainer.train.job import inject_network


@pytest.fixture(scope="module")
def sdxl_empty() -> ModelBundle:
    """Full-size SDXL base modules with no weights allocated."""
    return empty_bundle("sdxl")


def test_sdxl_keys_and_shapes_equal_kohya(sdxl_empty, fixtures):
    expected = json.loads((fixtures / "kohya_sdxl_lora_keys.json").read_text())["keys"]
    network = inject_network(sdxl_empty, TrainConfig(network_dim=4, network_alpha=1.0), seed=0)
    try:
        tensors = network.kohya_state_dict()
    finally:
        network.remove()
    assert set(tensors) == set(expected)
    for key, info in expected.items():
        assert list(tensors[key].shape) == info["shape"], key
    prefixes = {k.split("_")[1] for k in tensors}
    assert prefixes == {"unet", "te1", "te2"}


def test_every_unet_weight_maps_to_its_sgm_checkpoint_name(fixtures, sdxl_empty):
    # the SGM names kohya's modules carry are the checkpoint's: the whole UNet, ResNets
    # (LoCon targets) and up/downsamplers included, must map onto real SDXL keys
    real = set(json.loads((fixtures / "a1111_sdxl_state_dict.json").read_text())["checkpoint_keys"])
    config = sdxl_empty.unet.config
    for name, _ in sdxl_empty.unet.named_parameters():
        module, _, leaf = name.rpartition(".")
        sgm = sgm_module_path(module, config.layers_per_block, config.up_block_types)
        assert f"model.diffusion_model.{sgm}.{leaf}" in real, name


def test_locon_on_sdxl_uses_sgm_resnet_names():
    bundle = build_tiny_sdxl()
    names = {t.kohya_name for t in unet_targets(bundle.unet, include_conv3x3=True)}
    for expected in (
        "lora_unet_input_blocks_1_0_in_layers_2",  # ResNet conv1
        "lora_unet_input_blocks_1_0_out_layers_3",  # ResNet conv2
        "lora_unet_input_blocks_1_0_emb_layers_1",  # time_emb_proj
        "lora_unet_input_blocks_4_0_skip_connection",  # 1x1 shortcut, 32 -> 64 channels
        "lora_unet_input_blocks_3_0_op",  # downsampler
        "lora_unet_middle_block_2_in_layers_2",
        "lora_unet_output_blocks_2_2_conv",  # upsampler after a transformer
        "lora_unet_output_blocks_5_2_conv",
        "lora_unet_input_blocks_7_1_transformer_blocks_1_attn2_to_k",  # depth 2
    ):
        assert expected in names
    assert not any("down_blocks" in n or "up_blocks" in n or "mid_block" in n for n in names)


def test_sgm_paths_of_the_block_kinds():
    up = ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]
    cases = {
        "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q": "input_blocks.4.1.transformer_blocks.0.attn1.to_q",
        "down_blocks.2.attentions.1.proj_out": "input_blocks.8.1.proj_out",
        "down_blocks.0.downsamplers.0.conv": "input_blocks.3.0.op",
        "mid_block.attentions.0.proj_in": "middle_block.1.proj_in",
        "mid_block.resnets.1.conv2": "middle_block.2.out_layers.3",
        "up_blocks.0.attentions.2.ff.net.2": "output_blocks.2.1.ff.net.2",
        "up_blocks.1.upsamplers.0.conv": "output_blocks.5.2.conv",
        "up_blocks.2.resnets.2.conv_shortcut": "output_blocks.8.0.skip_connection",
        "time_embedding.linear_1": "time_embed.0",
        "add_embedding.linear_2": "label_emb.0.2",
    }
    for path, expected in cases.items():
        assert sgm_module_path(path, 2, up) == expected
    with pytest.raises(ValueError):
        sgm_module_path("not_a_block.0", 2, up)
