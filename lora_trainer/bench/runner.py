"""One benchmark case: a short real training run, timed step by step, with one step's FLOPs counted."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..config import BUILTIN_TINY_MODEL, config_from_dict
from ..errors import UserError
from ..models.bundle import ModelBundle
from ..train.events import Event, StepEvent
from ..train.job import run_training
from .flops import flop_counter_mode
from .loading import slow_image_reads
from .memory import PeakMemory
from .peak import Peak

PRECISIONS = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
CAPTION = "a photo of sks toy, red ball on a table"


@dataclass(frozen=True)
class BenchCase:
    """What one JSON line measures."""

    arch: str
    device: str
    resolution: int
    batch: int
    rank: int
    precision: str  # fp32, bf16 or fp16 (mixed precision; the frozen weights are stored so)
    gradient_checkpointing: bool
    cache_latents: bool
    cache_text_encoder_outputs: bool
    loader_workers: int = 8  # max_data_loader_n_workers (0: load in the training thread)
    decode_delay_s: float = 0.0  # extra seconds per image read (data_loading lines)
    images: int | None = None  # dataset size; default two batches


@dataclass(frozen=True)
class BenchRun:
    """How long to run each case."""

    warmup_steps: int
    steps: int
    workdir: Path


@dataclass
class StepClock:
    """Event sink: the time of every step, and one step run under a FLOP counter."""

    count_step: int  # the step whose FLOPs are counted (after warm-up)
    started: float = field(default_factory=time.perf_counter)
    times: dict[int, float] = field(default_factory=dict)
    counter: Any = None
    flops: int | None = None

    def __call__(self, event: Event) -> None:
        if not isinstance(event, StepEvent):
            return
        self.times[event.step] = time.perf_counter()
        if event.step == self.count_step - 1:
            self.counter = flop_counter_mode()
            self.counter.__enter__()
        elif event.step == self.count_step:
            self.close()

    def close(self) -> None:
        if self.counter is not None:
            self.counter.__exit__(None, None, None)
            self.flops = self.counter.get_total_flops()
            self.counter = None


def write_images(folder: Path, count: int, size: int, seed: int = 0) -> Path:
    """`folder/img/1_sks toy/` with `count` random-block images and captions; returns `folder/img`."""
    subset = folder / "img" / "1_sks toy"
    subset.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        blocks = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(blocks).resize((size, size), Image.NEAREST)
        image.save(subset / f"{i:03d}.png")
        (subset / f"{i:03d}.txt").write_text(CAPTION, encoding="utf-8")
    return folder / "img"


def case_options(case: BenchCase, run: BenchRun, data_dir: Path, out: Path) -> dict[str, Any]:
    """The training options of a case, by kohya name."""
    options: dict[str, Any] = {
        "pretrained_model_name_or_path": BUILTIN_TINY_MODEL,  # not loaded: the bundle is given
        "train_data_dir": str(data_dir),
        "caption_extension": ".txt",
        "resolution": str(case.resolution),
        "output_dir": str(out),
        "output_name": "bench",
        "overwrite": True,
        "network_dim": case.rank,
        "train_batch_size": case.batch,
        "max_train_steps": run.warmup_steps + 1 + run.steps,
        "mixed_precision": PRECISIONS[case.precision],
        "gradient_checkpointing": case.gradient_checkpointing,
        "seed": 0,
        "device": case.device,
    }
    options["max_data_loader_n_workers"] = case.loader_workers
    if case.cache_latents:
        options["cache_latents"] = True
    if case.cache_text_encoder_outputs:
        # kohya caches text-encoder outputs only when the text encoders are not trained
        options.update(cache_text_encoder_outputs=True, network_train_unet_only=True)
    return options


def run_case(case: BenchCase, bundle: ModelBundle, run: BenchRun, peak: Peak, index: int) -> dict:
    """Train warm-up + 1 + steps steps; returns the case's JSON record."""
    record: dict[str, Any] = {"bench": "train", **asdict(case)}
    folder = run.workdir / f"case{index}"
    count = case.images or max(2, 2 * case.batch)
    data_dir = write_images(folder, count=count, size=case.resolution)
    try:
        config = config_from_dict(case_options(case, run, data_dir, folder / "out"), "bench")
    except UserError as exc:
        return {**record, "error": exc.message}
    clock = StepClock(count_step=run.warmup_steps + 1)
    memory = PeakMemory(torch.device(case.device))
    memory.reset()
    clock.started = time.perf_counter()
    try:
        with slow_image_reads(case.decode_delay_s):
            run_training(config, bundle=bundle, emit=clock)
    except UserError as exc:
        return {**record, "error": exc.message}
    finally:
        clock.close()
        _checkpointing_off(bundle)
    return {**record, **_measures(clock, case, run, peak), "peak_memory_bytes": memory.read(),
            "peak_memory_kind": memory.kind}  # fmt: skip


def _measures(clock: StepClock, case: BenchCase, run: BenchRun, peak: Peak) -> dict[str, Any]:
    first, timed_from = clock.times[1], clock.count_step
    last = timed_from + run.steps
    seconds = (clock.times[last] - clock.times[timed_from]) / run.steps
    each = [clock.times[s + 1] - clock.times[s] for s in range(timed_from, last)]
    achieved = clock.flops / seconds / 1e12 if clock.flops else None
    return {
        "steps_timed": run.steps,
        "s_per_step": round(seconds, 4),
        # on a shared machine the fastest step shows what the code can do
        "s_per_step_min": round(min(each), 4),
        "s_per_step_median": round(statistics.median(each), 4),
        "steps_per_s": round(1 / seconds, 4),
        "samples_per_s": round(case.batch / seconds, 4),
        "time_to_first_step_s": round(first - clock.started, 3),
        "flops_per_step": clock.flops,
        "achieved_tflops": _round(achieved),
        "peak_tflops": _round(peak.tflops),
        "peak_source": peak.source,
        # FLOPs actually executed: with gradient checkpointing this includes the recompute
        "hfu": _round(achieved / peak.tflops) if achieved and peak.tflops else None,
    }


def _round(value: float | None, digits: int = 4) -> float | None:
    """`digits` significant digits: MFU on a small CPU run is a tiny number, but not zero."""
    return None if value is None else float(f"{value:.{digits}g}")


def _checkpointing_off(bundle: ModelBundle) -> None:
    """The job turns gradient checkpointing on in place; the next case starts without it."""
    if getattr(bundle.unet, "is_gradient_checkpointing", False):
        bundle.unet.disable_gradient_checkpointing()
    for te in bundle.text_encoders:
        if getattr(te, "is_gradient_checkpointing", False):
            te.gradient_checkpointing_disable()


class ModelFlops:
    """MFU counts the model's FLOPs once: a checkpointed case takes its twin's count (no recompute).

    Cases run without checkpointing first, so a checkpointed case finds its twin here.
    """

    def __init__(self) -> None:
        self.plain: dict[tuple, int] = {}

    def complete(self, record: dict) -> dict:
        """Add `mfu` (and the FLOPs it is based on) to a finished record."""
        if "error" in record:
            return record
        key = _twin_key(record)
        if not record["gradient_checkpointing"] and record.get("flops_per_step"):
            self.plain[key] = record["flops_per_step"]
        model_flops = (
            self.plain.get(key) if record["gradient_checkpointing"] else record["flops_per_step"]
        )
        record["model_flops_per_step"] = model_flops
        peak = record.get("peak_tflops")
        mfu = model_flops / record["s_per_step"] / 1e12 / peak if model_flops and peak else None
        record["mfu"] = _round(mfu)
        return record


def _twin_key(record: dict) -> tuple:
    keys = ("arch", "device", "resolution", "batch", "rank", "precision", "cache_latents",
            "cache_text_encoder_outputs")  # fmt: skip
    return tuple(record.get(k) for k in keys)
