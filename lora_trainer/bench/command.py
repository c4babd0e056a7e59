"""The `bench` sub-command: one JSON line per measured configuration on standard output."""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from ..errors import ConfigError

ARCH_CHOICES = ("sd1", "sd2", "sdxl", "tiny")
SWITCH = {"off": (False,), "on": (True,), "both": (False, True)}
DEFAULT_RESOLUTIONS = {"sd1": 512, "sd2": 768, "sdxl": 1024, "tiny": 64}


def add_bench_parser(sub: Any) -> None:
    """Register `bench` on the CLI's sub-command parser."""
    bench = sub.add_parser(
        "bench",
        help="measure training speed, memory and FLOPs utilisation (one JSON line per setup)",
        description="Train a few steps on a random-weight model of full size and report speed, "
        "memory and FLOPs utilisation. On the CPU the default is SD1.5 at 64 px.",
    )
    bench.add_argument(
        "--arch", choices=ARCH_CHOICES, default="sd1", help="model family (default sd1)"
    )
    bench.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    bench.add_argument("--resolution", type=int, help="image size (cpu: 64, cuda: the model's own)")
    bench.add_argument("--batch", type=int, default=1, help="train_batch_size (default 1)")
    bench.add_argument("--rank", type=int, default=4, help="network_dim (default 4)")
    bench.add_argument(
        "--precision", choices=("fp32", "bf16", "fp16"), help="cpu: fp32, cuda: bf16"
    )
    for name in ("gradient_checkpointing", "cache_latents", "cache_text_encoder_outputs"):
        bench.add_argument(f"--{name}", choices=tuple(SWITCH), default="both", help="default both")
    bench.add_argument("--steps", type=int, help="timed steps per setup (cpu 5, cuda 10)")
    bench.add_argument("--warmup", type=int, help="untimed steps first (cpu 1, cuda 3)")
    bench.add_argument("--peak_tflops", type=float, help="the device's peak, to override the table")
    bench.add_argument(
        "--dataset_images",
        type=int,
        default=200,
        help="images for the data-pipeline line (0: skip)",
    )
    bench.add_argument(
        "--image_read_delay",
        type=float,
        default=0.05,
        help="seconds added to each image read for the data-loading lines, which compare "
        "loading in the training thread with loading ahead (default 0.05; 0: skip)",
    )
    bench.add_argument("--workdir", help="folder for the generated images (default: a temp folder)")
    bench.set_defaults(handler=run_bench_command)


def run_bench_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    _check_args(args)
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        run_bench(args, Path(args.workdir), out)
    else:
        with tempfile.TemporaryDirectory(prefix="lora_trainer_bench_") as tmp:
            run_bench(args, Path(tmp), out)
    return 0


def _check_args(args: argparse.Namespace) -> None:
    for name in ("batch", "rank", "steps", "dataset_images"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "dataset_images" else 1):
            raise ConfigError(f"--{name} must be at least 1, got {value}")
    if args.image_read_delay < 0:
        raise ConfigError(f"--image_read_delay must be 0 or more, got {args.image_read_delay}")
    if args.warmup is not None and args.warmup < 1:
        # the step before the FLOP-counted one; it also keeps one-off start-up work out of the timing
        raise ConfigError(f"--warmup must be at least 1, got {args.warmup}")
    if args.resolution is not None and (args.resolution < 64 or args.resolution % 8):
        raise ConfigError(
            f"--resolution must be a multiple of 8, at least 64, got {args.resolution}"
        )
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        raise ConfigError(f"--device {args.device!r} is not valid", fix="use cpu or cuda")


def run_bench(args: argparse.Namespace, workdir: Path, out: TextIO) -> None:
    """Build the model once, then run every requested configuration."""
    import torch

    from ..train.job import resolve_device
    from .peak import cpu_name, device_peak
    from .runner import BenchCase, BenchRun, ModelFlops, run_case

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    precision = args.precision or ("bf16" if cuda else "fp32")
    if precision == "fp16" and not cuda:
        raise ConfigError("--precision fp16 needs a CUDA GPU", fix="use fp32 or bf16 on the CPU")
    resolution = args.resolution or (DEFAULT_RESOLUTIONS[args.arch] if cuda else 64)
    name = torch.cuda.get_device_name(device) if cuda else cpu_name()
    _print(out, {"bench": "environment", "device": str(device), "device_name": name,
                 "torch": torch.__version__, "python": platform.python_version(),
                 "threads": torch.get_num_threads()})  # fmt: skip
    bundle = _build_model(args.arch, precision, out)
    run = BenchRun(
        warmup_steps=args.warmup if args.warmup is not None else (3 if cuda else 1),
        steps=args.steps or (10 if cuda else 5),
        workdir=workdir,
    )
    peak = device_peak(device, precision, args.peak_tflops)
    model_flops = ModelFlops()
    index = -1
    switches = (SWITCH[args.gradient_checkpointing], SWITCH[args.cache_latents],
                SWITCH[args.cache_text_encoder_outputs])  # fmt: skip
    for index, (checkpointing, latents, text) in enumerate(itertools.product(*switches)):
        case = BenchCase(args.arch, str(device), resolution, args.batch, args.rank, precision,
                         checkpointing, latents, text)  # fmt: skip
        _print(out, model_flops.complete(run_case(case, bundle, run, peak, index)))
    if args.image_read_delay > 0:
        from .loading import loading_records

        case = BenchCase(args.arch, str(device), resolution, args.batch, args.rank, precision,
                         False, False, False, decode_delay_s=args.image_read_delay)  # fmt: skip
        for record in loading_records(case, run, bundle, peak, index + 1):
            _print(out, record)
    if args.dataset_images:
        _print(out, dataset_line(workdir / "dataset", args.dataset_images))


def _build_model(arch: str, precision: str, out: TextIO) -> Any:
    import torch

    from .random_model import build_random_bundle, parameter_count

    started = time.perf_counter()
    if arch == "tiny":
        from ..models.tiny import build_tiny_sd1

        bundle = build_tiny_sd1()
    else:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        # SDXL's VAE overflows in fp16 (kohya's no_half_vae); keep every VAE in fp32 when fp16
        vae_dtype = torch.float32 if precision == "fp16" else dtype
        bundle = build_random_bundle(arch, dtype, vae_dtype=vae_dtype)
    _print(out, {"bench": "model", "arch": arch, "weights": "random",
                 "parameters": parameter_count(bundle),
                 "build_s": round(time.perf_counter() - started, 3)})  # fmt: skip
    return bundle


def dataset_line(workdir: Path, images: int) -> dict[str, Any]:
    """The dataset engineer's pipeline benchmark (loading, bucketing, caching), when present."""
    try:
        from ..dataset.bench import bench_dataset_pipeline
    except ImportError:
        return {"bench": "dataset", "skipped": "lora_trainer.dataset.bench is not available"}
    return {"bench": "dataset", **bench_dataset_pipeline(workdir, images=images)}


def _print(out: TextIO, record: dict[str, Any]) -> None:
    out.write(json.dumps(record, default=str) + "\n")
    out.flush()
