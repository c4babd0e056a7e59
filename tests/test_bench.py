"""`python -m lora_trainer bench`: JSON lines, FLOP counting, peak tables, fast random weights."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel

from lora_trainer.bench.flops import flop_counter_mode
from lora_trainer.bench.peak import cpu_peak, cuda_peak, device_peak
from lora_trainer.bench.random_model import RandomPool, materialise
from lora_trainer.bench.runner import ModelFlops
from lora_trainer.cli import main
from lora_trainer.models.tiny import TINY_TEXT

TRAIN_FIELDS = {
    "arch", "device", "resolution", "batch", "rank", "precision", "gradient_checkpointing",
    "cache_latents", "cache_text_encoder_outputs", "steps_timed", "s_per_step", "steps_per_s",
    "s_per_step_min", "s_per_step_median",
    "samples_per_s", "time_to_first_step_s", "flops_per_step", "achieved_tflops", "peak_tflops",
    "peak_source", "hfu", "peak_memory_bytes", "peak_memory_kind", "model_flops_per_step", "mfu",
    "loader_workers", "decode_delay_s", "images",
}  # fmt: skip


def test_bench_command_on_the_tiny_model(tmp_path, capsys):
    args = [
        "bench", "--arch", "tiny", "--steps", "1", "--warmup", "1", "--rank", "2",
        "--gradient_checkpointing", "off", "--cache_latents", "both",
        "--cache_text_encoder_outputs", "off", "--dataset_images", "0",
        "--image_read_delay", "0", "--workdir", str(tmp_path), "--peak_tflops", "0.5",
    ]  # fmt: skip
    assert main(args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["bench"] for r in lines] == ["environment", "model", "train", "train"]
    assert lines[0]["device"] == "cpu" and lines[0]["torch"] == torch.__version__
    assert lines[1]["parameters"]["unet"] > 0 and lines[1]["build_s"] >= 0
    plain, cached = lines[2], lines[3]
    for record in (plain, cached):
        assert set(record) - {"bench"} == TRAIN_FIELDS, record.get("error")
        assert (record["arch"], record["resolution"], record["rank"]) == ("tiny", 64, 2)
        assert record["steps_per_s"] == pytest.approx(1 / record["s_per_step"], rel=1e-2)
        assert record["s_per_step_min"] <= record["s_per_step_median"] <= record["s_per_step"] * 2
        assert record["time_to_first_step_s"] > 0 and record["peak_memory_bytes"] > 10**7
        assert record["peak_tflops"] == 0.5 and record["peak_source"] == "given with --peak_tflops"
        assert 0 < record["mfu"] < 1
    assert (plain["cache_latents"], cached["cache_latents"]) == (False, True)
    # the VAE encoder runs every step without the cache: more FLOPs per step
    assert plain["flops_per_step"] > cached["flops_per_step"] > 0


def test_bench_arguments_are_checked(capsys):
    assert main(["bench", "--warmup", "0"]) == 2
    assert "--warmup must be at least 1" in capsys.readouterr().err
    assert main(["bench", "--resolution", "100"]) == 2
    assert "multiple of 8" in capsys.readouterr().err
    assert main(["bench", "--arch", "tiny", "--precision", "fp16", "--dataset_images", "0"]) == 2
    assert "fp16 needs a CUDA GPU" in capsys.readouterr().err


def test_flop_counter_counts_cpu_attention():
    q = torch.randn(1, 2, 16, 8, requires_grad=True)
    with flop_counter_mode() as counter:
        torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().backward()
    counts = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    # forward: QK^T and AV, 2 * 16 * 16 * 8 multiply-adds each per head
    assert counts["aten._scaled_dot_product_flash_attention_for_cpu"] == 2 * 2 * (2 * 16 * 16 * 8)
    assert counts["aten._scaled_dot_product_flash_attention_for_cpu_backward"] > 0


def test_model_flops_use_the_unchekpointed_twin():
    base = {"arch": "sd1", "device": "cpu", "resolution": 64, "batch": 1, "rank": 4,
            "precision": "fp32", "cache_latents": False, "cache_text_encoder_outputs": False,
            "peak_tflops": 1.0}  # fmt: skip
    flops = ModelFlops()
    plain = flops.complete({**base, "gradient_checkpointing": False, "flops_per_step": 10**12,
                            "s_per_step": 2.0})  # fmt: skip
    checkpointed = flops.complete({**base, "gradient_checkpointing": True,
                                   "flops_per_step": 13 * 10**11, "s_per_step": 4.0})  # fmt: skip
    assert plain["mfu"] == 0.5
    # recompute is not model work: MFU from the twin's count
    assert checkpointed["model_flops_per_step"] == 10**12 and checkpointed["mfu"] == 0.25


def test_peak_tables():
    assert cuda_peak("NVIDIA H100 80GB HBM3", "bf16").tflops == 989.4
    assert cuda_peak("NVIDIA H100 PCIe", "bf16").tflops == 756.0
    assert cuda_peak("NVIDIA H200", "fp16").tflops == 989.4
    assert cuda_peak("NVIDIA A100-SXM4-80GB", "bf16").tflops == 312.0
    assert cuda_peak("NVIDIA GeForce RTX 3090", "bf16").tflops == 71.0
    assert cuda_peak("NVIDIA L40S", "bf16").tflops == 362.0
    assert cuda_peak("NVIDIA L4", "bf16").tflops == 121.0
    unknown = cuda_peak("NVIDIA A10G", "bf16")  # not the A10's numbers
    assert unknown.tflops is None and "--peak_tflops" in unknown.source
    assert device_peak(torch.device("cpu"), "fp32", 2.5).tflops == 2.5
    cpu = cpu_peak("fp32")
    assert cpu.tflops is None or (cpu.tflops > 0 and cpu.source.startswith("cpu estimate"))


def test_random_weights_are_real_and_seeded():
    def build(seed: int) -> CLIPTextModel:
        with torch.device("meta"):
            model = CLIPTextModel(CLIPTextConfig(**TINY_TEXT))
        materialise(model, RandomPool(seed), torch.float32)
        return model

    a, b, c = build(0), build(0), build(1)
    embeddings = a.text_model.embeddings
    assert embeddings.position_ids.tolist() == [list(range(77))]
    layer = a.text_model.encoder.layers[0]
    assert torch.all(layer.layer_norm1.weight == 1) and torch.all(layer.self_attn.q_proj.bias == 0)
    q = layer.self_attn.q_proj.weight
    assert q.abs().max() <= 1 / 32**0.5 and q.std() > 0.05
    assert not q.requires_grad and not a.training
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(q, c.text_model.encoder.layers[0].self_attn.q_proj.weight)
    out = a(torch.tensor([[49406, 320, 49407]])).last_hidden_state
    assert torch.isfinite(out).all()
