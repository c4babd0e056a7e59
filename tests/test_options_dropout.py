"""kohya's network_dropout, rank_dropout and module_dropout, against hand-computed outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lora_trainer.config import TrainConfig
from lora_trainer.lora.network import ADAPTER, LoraNetwork, NetworkSpec
from lora_trainer.lora.targets import LoraTarget
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.train.job import inject_network

RANK = 4


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, RANK)  # out == rank: lora_up can be the identity
        self.conv = nn.Conv2d(3, RANK, 3, padding=1)


def _network(**spec) -> tuple[Toy, LoraNetwork]:
    torch.manual_seed(0)
    toy = Toy()
    targets = [
        LoraTarget("lora_linear", "linear"),
        LoraTarget("lora_conv", "conv", is_conv3x3=True),
    ]
    network = LoraNetwork.inject(
        {"unet": (toy, targets)}, NetworkSpec(RANK, 2.0, conv_rank=RANK, conv_alpha=2.0, **spec)
    )
    with torch.no_grad():
        toy.linear.lora_B[ADAPTER].weight.copy_(torch.eye(RANK))
        toy.conv.lora_B[ADAPTER].weight.copy_(torch.eye(RANK).view(RANK, RANK, 1, 1))
    return toy, network


def _delta(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The LoRA's contribution: output minus the frozen layer's output."""
    return layer(x) - layer.base_layer(x)


def _down(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return layer.lora_A[ADAPTER](x)


def test_rank_dropout_masks_rank_channels_per_sample_and_rescales():
    toy, _ = _network(rank_dropout=0.5)
    toy.train()
    x = torch.randn(3, 7, 6)  # (batch, tokens, features) like a transformer block
    torch.manual_seed(123)
    mask = torch.rand(3, RANK) > 0.5  # kohya draws one value per (sample, rank)
    torch.manual_seed(123)
    delta = _delta(toy.linear, x)
    scale = 2.0 / RANK / (1 - 0.5)
    expected = _down(toy.linear, x) * mask.unsqueeze(1) * scale
    torch.testing.assert_close(delta, expected)
    assert 0 < mask.sum() < mask.numel()  # the seed drops some ranks and keeps others


def test_rank_dropout_on_convolutions_broadcasts_over_space():
    toy, _ = _network(rank_dropout=0.25)
    toy.train()
    x = torch.randn(2, 3, 5, 5)
    torch.manual_seed(7)
    mask = torch.rand(2, RANK) > 0.25
    torch.manual_seed(7)
    delta = _delta(toy.conv, x)
    expected = _down(toy.conv, x) * mask[:, :, None, None] * (2.0 / RANK / 0.75)
    torch.testing.assert_close(delta, expected)


def test_network_dropout_drops_the_lora_down_output_not_the_input():
    toy, _ = _network(dropout=0.5)
    toy.train()
    x = torch.randn(64, 6)
    ratio = _delta(toy.linear, x) / (_down(toy.linear, x) * 2.0 / RANK)
    # each element of down(x) is either dropped or kept and scaled by 1 / (1 - p);
    # input dropout (peft's kind) would mix features and give other ratios
    dropped = ratio.abs() < 1e-5
    kept = (ratio - 2.0).abs() < 1e-4
    assert bool((dropped | kept).all())
    assert 0.3 < dropped.float().mean() < 0.7


def test_module_dropout_skips_the_whole_lora_when_drawn():
    toy, _ = _network(module_dropout=0.5)
    toy.train()
    x = torch.randn(2, 6)
    skipped = 0
    for seed in range(20):
        torch.manual_seed(seed)
        skip = bool(torch.rand(1) < 0.5)  # kohya's draw, before anything else
        torch.manual_seed(seed)
        delta = _delta(toy.linear, x)
        if skip:
            assert torch.count_nonzero(delta) == 0
            skipped += 1
        else:
            torch.testing.assert_close(delta, _down(toy.linear, x) * 2.0 / RANK)
    assert 0 < skipped < 20


@pytest.mark.parametrize("spec", [{"dropout": 0.5}, {"rank_dropout": 0.5}, {"module_dropout": 1.0}])
def test_dropouts_change_outputs_in_train_mode_only(spec):
    toy, _ = _network(**spec)
    plain, _ = _network()
    x = torch.randn(4, 6)
    toy.eval(), plain.eval()
    torch.testing.assert_close(toy.linear(x), plain.linear(x))  # eval: exactly the LoRA
    toy.train()
    assert not torch.allclose(toy.linear(x), plain.linear(x))


def test_without_dropout_peft_forward_is_kept():
    toy, _ = _network()
    assert "forward" not in vars(toy.linear)  # no per-instance override


def test_gradients_reach_both_lora_weights_under_rank_dropout():
    toy, network = _network(rank_dropout=0.3)
    toy.train()
    (toy.conv(torch.randn(2, 3, 4, 4)).sum() + toy.linear(torch.randn(2, 6)).sum()).backward()
    assert all(p.grad is not None for p in network.parameters())


def test_options_reach_every_layer_of_the_tiny_model():
    bundle = build_tiny_sd1()
    config = TrainConfig(
        network_dropout=0.1, network_args=["rank_dropout=0.2", "module_dropout=0.3"]
    )
    network = inject_network(bundle, config, seed=0)
    try:
        options = {layer.kohya_dropout for _, layer in network.layers()}
    finally:
        network.remove()
    assert len(options) == 1
    (only,) = options
    assert (only.dropout, only.rank_dropout, only.module_dropout) == (0.1, 0.2, 0.3)
