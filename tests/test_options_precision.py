"""Mixed precision (dtypes, loss scaling, full_fp16's patch) and scale_weight_norms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lora_trainer.config import TrainConfig, config_from_dict
from lora_trainer.errors import ConfigError
from lora_trainer.lora.max_norm import apply_max_norm, weight_delta
from lora_trainer.lora.network import ADAPTER, LoraNetwork, NetworkSpec
from lora_trainer.lora.targets import LoraTarget
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.train.precision import Precision, cast_base_weights, make_grad_scaler

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, (None, torch.float32, torch.float32, torch.float32, False)),
        ({"mixed_precision": "bf16"}, (torch.bfloat16, torch.bfloat16, torch.bfloat16, torch.float32, False)),
        ({"mixed_precision": "fp16"}, (torch.float16, torch.float16, torch.float16, torch.float32, True)),
        ({"mixed_precision": "fp16", "full_fp16": True},
         (torch.float16, torch.float16, torch.float16, torch.float16, True)),
        ({"mixed_precision": "bf16", "full_bf16": True, "no_half_vae": True},
         (torch.bfloat16, torch.bfloat16, torch.float32, torch.bfloat16, False)),
    ],
)  # fmt: skip
def test_precision_of_each_setting(options, expected):
    p = Precision.from_config(config_from_dict(options))
    assert (p.autocast_dtype, p.weight_dtype, p.vae_dtype, p.lora_dtype, p.loss_scaling) == expected


def test_base_weights_take_the_weight_dtype():
    bundle = build_tiny_sd1()
    cast_base_weights(bundle, Precision.from_config(TrainConfig(mixed_precision="bf16")))
    assert {p.dtype for p in bundle.unet.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in bundle.text_encoder.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in bundle.vae.parameters()} == {torch.bfloat16}


def test_bf16_autocast_on_cpu_keeps_fp32_lora_gradients():
    bundle = build_tiny_sd1()
    precision = Precision.from_config(TrainConfig(mixed_precision="bf16"))
    cast_base_weights(bundle, precision)
    from lora_trainer.train.job import inject_network

    network = inject_network(bundle, TrainConfig(), seed=0)
    try:
        with precision.autocast(CPU):
            out = bundle.unet(torch.randn(1, 4, 8, 8), torch.tensor([5]), torch.randn(1, 77, 32))
        assert out.sample.dtype == torch.bfloat16
        out.sample.float().square().mean().backward()
        params = network.parameters("unet")
        assert {p.dtype for p in params} == {torch.float32}
        assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in params)
    finally:
        network.remove()


def _fp16_step(scaler: torch.amp.GradScaler) -> torch.Tensor:
    param = nn.Parameter(torch.ones(4, dtype=torch.float16))
    optimizer = torch.optim.SGD([param], lr=100.0)
    scaler.scale((param.float() * 1e-3).sum()).backward()  # scaled gradient 65.536 fits fp16
    scaler.unscale_(optimizer)
    scaler.step(optimizer)
    scaler.update()
    return param


def test_fp16_gets_a_loss_scaler_and_full_fp16_may_unscale_fp16_gradients():
    assert make_grad_scaler(Precision.from_config(TrainConfig()), CPU) is None
    plain = make_grad_scaler(Precision.from_config(TrainConfig(mixed_precision="fp16")), CPU)
    assert plain is not None and plain.get_scale() > 1  # the loss is scaled up
    with pytest.raises(ValueError, match="unscale FP16 gradients"):
        _fp16_step(plain)  # what torch says without kohya's patch
    full = TrainConfig(mixed_precision="fp16", full_fp16=True)
    param = _fp16_step(make_grad_scaler(Precision.from_config(full), CPU))
    # the gradient unscaled back to 1e-3: one SGD step of lr 100 takes 0.1 off
    torch.testing.assert_close(param.detach(), torch.full((4,), 0.9, dtype=torch.float16))


def test_full_precision_needs_the_matching_mixed_precision():
    with pytest.raises(ConfigError, match="full_fp16 needs mixed_precision fp16"):
        config_from_dict({"full_fp16": True, "mixed_precision": "bf16"})
    with pytest.raises(ConfigError, match="both set"):
        config_from_dict({"full_fp16": True, "full_bf16": True, "mixed_precision": "fp16"})


def test_full_bf16_keeps_lora_weights_in_bf16():
    bundle = build_tiny_sd1()
    from lora_trainer.train.job import inject_network

    network = inject_network(bundle, TrainConfig(), seed=0)
    try:
        network.set_lora_dtype(torch.bfloat16)
        assert {p.dtype for p in network.parameters()} == {torch.bfloat16}
    finally:
        network.remove()


class Convs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 6)
        self.pointwise = nn.Conv2d(8, 6, 1)
        self.conv = nn.Conv2d(8, 6, 3, padding=1)


def _max_norm_network() -> tuple[Convs, LoraNetwork]:
    torch.manual_seed(0)
    model = Convs()
    targets = [
        LoraTarget("l", "linear"), LoraTarget("p", "pointwise"),
        LoraTarget("c", "conv", is_conv3x3=True),
    ]  # fmt: skip
    network = LoraNetwork.inject(
        {"unet": (model, targets)}, NetworkSpec(4, 2.0, conv_rank=3, conv_alpha=3.0)
    )
    with torch.no_grad():
        for _, layer in network.layers():
            layer.lora_B[ADAPTER].weight.normal_()
    return model, network


def _lora_delta(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return layer(x) - layer.base_layer(x)


def test_weight_delta_is_the_merged_weight_of_each_layer_kind():
    _, network = _max_norm_network()
    x = torch.randn(2, 8, 5, 5)
    for target, layer in network.layers():
        delta = weight_delta(layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight)
        delta = delta * layer.scaling[ADAPTER]
        if target.module_path == "linear":
            v = torch.randn(3, 8)
            torch.testing.assert_close(_lora_delta(layer, v), v @ delta.T)
        else:
            padding = layer.base_layer.padding
            torch.testing.assert_close(_lora_delta(layer, x), F.conv2d(x, delta, padding=padding))


def test_scale_weight_norms_caps_each_module_like_kohya():
    _, network = _max_norm_network()

    @torch.no_grad()
    def norms() -> list[float]:
        out = []
        for _, layer in network.layers():
            down, up = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
            out.append(float((weight_delta(down, up) * layer.scaling[ADAPTER]).norm()))
        return out

    before = norms()
    low, mid, _ = sorted(before)
    cap = (low + mid) / 2  # one module below the cap, two above
    stats = apply_max_norm(network, cap)
    after = norms()
    assert stats.keys_scaled == 2
    for b, a in zip(before, after):
        assert a == pytest.approx(min(b, cap), rel=1e-5)
    assert stats.mean_norm == pytest.approx(sum(after) / 3, rel=1e-5)
    assert stats.max_norm == pytest.approx(max(after), rel=1e-5)
    # a second pass finds every module at or below the cap (up to rounding)
    apply_max_norm(network, cap)
    assert norms() == pytest.approx(after, rel=1e-5)


def test_scale_weight_norms_must_be_positive():
    with pytest.raises(ConfigError, match="scale_weight_norms"):
        config_from_dict({"scale_weight_norms": 0})
