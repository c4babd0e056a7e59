"""The VRAM/time estimate shown before training, and the advice when a run will not fit."""

from __future__ import annotations

from dataclasses import replace

from lora_trainer.webui.estimate import (
    CPU_FLOOR_S,
    FP32_FACTOR,
    RunShape,
    estimate,
    format_duration,
)

SDXL = RunShape(
    arch="sdxl", width=1024, height=1024, batch_size=1, rank=32, total_steps=1000,
    mixed_precision="bf16", gradient_checkpointing=False, cache_latents=False,
    train_text_encoder=True, on_gpu=True,
)  # fmt: skip


def test_a_run_too_big_for_the_gpu_gets_a_warning_and_what_to_change():
    result = estimate(SDXL, free_gib=8.0)
    assert not result.fits and result.need_gib > 8
    assert any("not fit" in w for w in result.warnings)
    assert result.advice[0].startswith("Turn on gradient checkpointing")
    assert any("cache latents" in a for a in result.advice)
    assert any("UNet only" in a for a in result.advice)
    lines = result.lines()
    assert lines[0].startswith("Needs about") and "8.0 GB free" in lines[0]


def test_memory_savers_shrink_the_estimate_and_silence_the_warning():
    lean = replace(SDXL, gradient_checkpointing=True, cache_latents=True, train_text_encoder=False)
    assert estimate(lean, 8.0).need_gib < estimate(SDXL, 8.0).need_gib / 2
    assert estimate(lean, 8.0).fits and estimate(lean, 8.0).advice == []
    doubled = replace(lean, batch_size=2)
    assert estimate(doubled, None).need_gib > estimate(lean, None).need_gib
    assert (
        estimate(replace(lean, mixed_precision="no"), None).need_gib > estimate(lean, None).need_gib
    )
    assert estimate(lean, None).seconds > estimate(replace(lean, total_steps=10), None).seconds


def test_cpu_runs_say_so_and_show_no_gpu_memory():
    result = estimate(replace(SDXL, on_gpu=False, arch="sd1", width=512, height=512), free_gib=None)
    assert result.fits and result.free_gib is None
    assert not any("GPU memory" in line for line in result.lines())
    assert any("CPU" in line for line in result.lines())


def test_small_cpu_runs_cost_at_least_the_measured_floor_per_step():
    tiny = replace(SDXL, on_gpu=False, arch="sd1", width=64, height=64, total_steps=3,
                   mixed_precision="no")  # fmt: skip
    assert estimate(tiny, None).seconds == 3 * CPU_FLOOR_S["sd1"]  # fp32: the measured 2 s
    bf16 = estimate(replace(tiny, mixed_precision="bf16"), None).seconds
    assert bf16 == 3 * CPU_FLOOR_S["sd1"] / FP32_FACTOR  # bf16 measured about twice as fast
    big = replace(tiny, width=512, height=512)
    assert estimate(big, None).seconds > estimate(tiny, None).seconds  # pixels dominate there


def test_durations_read_naturally():
    assert [format_duration(s) for s in (5, 120, 3600, 7500)] == [
        "5 s",
        "2 min",
        "60 min",
        "2 h 05 min",
    ]
