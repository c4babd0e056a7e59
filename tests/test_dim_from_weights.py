"""dim_from_weights: the network is built from network_weights (modules, ranks, alphas)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from empty_models import empty_bundle
from train_helpers import tiny_config

from lora_trainer.config import TrainConfig, config_from_dict
from lora_trainer.demo import make_demo_dataset
from lora_trainer.errors import ConfigError, LoraFileError
from lora_trainer.lora.kohya_file import load_kohya_lora
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.train.events import MessageEvent
from lora_trainer.train.job import inject_network, run_training

# tiny UNet blocks: IN01/IN02 (attentions), IN03 (downsampler), IN04/IN05, MID, OUT00-OUT05
BLOCK_DIMS = ",".join(["0", "2", "5", "3", "1", "1"] + ["0"] * 6 + ["6"] + ["1"] * 3 + ["4"] * 9)
BLOCK_ALPHAS = ",".join(["1", "1", "2.5"] + ["1"] * 9 + ["3"] + ["0.5"] * 12)
CONV_DIMS = ",".join(["0"] * 3 + ["2"] * 10 + ["0"] * 12)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("data"), count=2)


@pytest.fixture(scope="module")
def mixed_lora(dataset, tmp_path_factory) -> Path:
    """A LoRA with ranks 1-6 per block, 3x3-conv modules and text-encoder modules."""
    out = tmp_path_factory.mktemp("first")
    args = [
        f"block_dims={BLOCK_DIMS}",
        f"block_alphas={BLOCK_ALPHAS}",
        f"conv_block_dims={CONV_DIMS}",
    ]
    return run_training(_config(dataset, out, "first", network_args=args)).output_path


def _config(dataset: Path, out: Path, name: str, **options) -> TrainConfig:
    defaults = {
        "output_name": name,
        "max_train_steps": 2,
        "learning_rate": 1e-3,
        "seed": 5,
    }
    return tiny_config(dataset, out, defaults, **options)


def _shapes(lora) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in lora.tensors.items()}


def test_continue_with_mixed_ranks_keeps_keys_shapes_and_alphas(dataset, mixed_lora, tmp_path):
    first = load_kohya_lora(mixed_lora)
    assert len(first.ranks()) >= 5 and any(
        first.kernel_size(m) == (3, 3) for m in first.module_names()
    )
    messages = []
    config = _config(
        dataset, tmp_path, "second", network_weights=str(mixed_lora), dim_from_weights=True,
        network_dim=32, network_alpha=16.0,
    )  # fmt: skip
    result = run_training(config, emit=lambda e: messages.append(e))
    second = load_kohya_lora(result.output_path)
    assert _shapes(second) == _shapes(first)
    for module in first.module_names():
        assert second.alpha(module) == first.alpha(module)
    # it continued from the file's weights: close to them (2 small steps), but trained
    changed = [k for k in first.tensors if not torch.equal(first.tensors[k], second.tensors[k])]
    assert changed
    for key in changed:
        assert (first.tensors[key] - second.tensors[key]).abs().max() < 0.05, key
    said = " ".join(e.text for e in messages if isinstance(e, MessageEvent))
    assert "not used" not in said and "left out" not in said
    assert second.metadata["ss_network_dim"] == "32"  # what kohya writes: the option as given


def test_without_dim_from_weights_the_ranks_must_match(dataset, mixed_lora, tmp_path):
    config = _config(dataset, tmp_path, "third", network_weights=str(mixed_lora))
    with pytest.raises(LoraFileError, match="dim_from_weights"):
        run_training(config)


def test_zero_lr_blocks_keep_the_files_weights(dataset, mixed_lora, tmp_path):
    # kohya's create_network_from_weights honours *_lr_weight but creates every module of
    # the file; blocks at weight 0 are left out of the optimizer, so they come back unchanged
    args = ["down_lr_weight=zeros", "conv_dim=4"]
    messages = []
    config = _config(
        dataset, tmp_path, "fourth", network_weights=str(mixed_lora), dim_from_weights=True,
        network_args=args, network_train_unet_only=True,
    )  # fmt: skip
    result = run_training(config, emit=lambda e: messages.append(e))
    first, out = load_kohya_lora(mixed_lora), load_kohya_lora(result.output_path)
    unet = [m for m in first.module_names() if m.startswith("lora_unet_")]
    assert out.module_names() == unet  # the text encoder is not trained: left out, as kohya does
    for module in unet:
        frozen = "down_blocks" in module
        same = torch.equal(first.up(module), out.up(module))
        assert same == frozen, module
    warnings = " ".join(e.text for e in messages if isinstance(e, MessageEvent))
    assert "conv_dim not used" in warnings and "lora_te" in warnings
    metadata = json.loads(out.metadata["ss_network_args"])
    assert metadata == {"down_lr_weight": "zeros", "conv_dim": "4"}  # kohya adds no dropout here


def test_dim_from_weights_needs_network_weights():
    with pytest.raises(ConfigError, match="network_weights is not"):
        config_from_dict({"dim_from_weights": True})


def test_modules_of_another_model_are_refused(fixtures):
    bundle = build_tiny_sd1()
    config = TrainConfig(
        dim_from_weights=True, network_weights=str(fixtures / "kohya_sd15_rank4.safetensors")
    )
    with pytest.raises(LoraFileError, match="do not exist in this model"):
        inject_network(bundle, config, seed=0)


def test_kohya_file_builds_its_own_network_on_sd15(fixtures):
    # the real kohya file (dim 4, alpha 2): same modules, shapes and alphas, whatever network_dim says
    path = fixtures / "kohya_sd15_rank4.safetensors"
    bundle = empty_bundle("sd1")
    config = TrainConfig(network_dim=64, dim_from_weights=True, network_weights=str(path))
    network = inject_network(bundle, config, seed=0)
    try:
        ours = network.kohya_state_dict()
    finally:
        network.remove()
    theirs = load_kohya_lora(path).tensors
    assert {k: tuple(v.shape) for k, v in ours.items()} == {
        k: tuple(v.shape) for k, v in theirs.items()
    }
    assert all(float(ours[k]) == float(theirs[k]) for k in ours if k.endswith(".alpha"))
