"""The peak FLOP rate of the device a benchmark runs on: a table for GPUs, an estimate for CPUs."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Peak:
    tflops: float | None  # None: unknown (no model FLOPs utilisation is reported)
    source: str  # where the number comes from, for the reader of the JSON line


# dense (no sparsity) tensor-core TFLOPS from the vendors' data sheets: (fp32 without
# TF32, tf32, bf16/fp16 with fp32 accumulation). Most specific names first.
GPU_PEAKS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("H200", (67.0, 494.7, 989.4)),
    ("H100 PCIe", (51.2, 378.0, 756.0)),
    ("H100 NVL", (60.0, 417.5, 835.0)),
    ("H100", (67.0, 494.7, 989.4)),  # SXM ("NVIDIA H100 80GB HBM3")
    ("GH200", (67.0, 494.7, 989.4)),
    ("B200", (80.0, 1100.0, 2250.0)),
    ("A100", (19.5, 156.0, 312.0)),
    ("A800", (19.5, 156.0, 312.0)),
    ("L40S", (91.6, 183.0, 362.0)),
    ("L40", (90.5, 90.5, 181.0)),
    ("L4", (30.3, 60.0, 121.0)),
    ("A10", (31.2, 62.5, 125.0)),
    ("RTX 6000 Ada", (91.1, 182.1, 364.2)),
    ("RTX A6000", (38.7, 77.4, 154.8)),
    ("RTX 5090", (104.8, 104.8, 209.5)),
    ("RTX 4090", (82.6, 82.6, 165.2)),
    ("RTX 4080", (48.7, 48.7, 97.5)),
    ("RTX 4070 Ti", (40.1, 40.1, 80.2)),
    ("RTX 3090 Ti", (40.0, 40.0, 80.0)),
    ("RTX 3090", (35.6, 35.6, 71.0)),
    ("RTX 3080 Ti", (34.1, 34.1, 68.2)),
    ("RTX 3080", (29.8, 29.8, 59.5)),
    ("RTX 3060", (12.7, 12.7, 25.5)),
    ("V100", (15.7, 15.7, 125.0)),
    ("T4", (8.1, 8.1, 65.0)),
)


def cuda_peak(device_name: str, precision: str) -> Peak:
    """The table's entry for a CUDA device name and a training precision."""
    for key, (fp32, tf32, half) in GPU_PEAKS:
        # whole words only: "A10" is not "A10G", "L4" is not "L40"
        if re.search(rf"\b{re.escape(key)}\b", device_name, re.IGNORECASE):
            if precision in ("bf16", "fp16"):
                return Peak(half, f"table: {key} {precision} dense")
            if torch.backends.cuda.matmul.allow_tf32:
                return Peak(tf32, f"table: {key} tf32 dense")
            return Peak(fp32, f"table: {key} fp32")
    return Peak(None, f"unknown GPU {device_name!r}: pass --peak_tflops")


def cpu_peak(precision: str) -> Peak:
    """threads x clock x FLOPs per cycle of the vector units; a rough upper bound."""
    flags, vendor, mhz = _cpuinfo()
    threads = torch.get_num_threads()
    if "avx512f" in flags:
        # Intel server cores have two 512-bit FMA units; AMD Zen 4 runs AVX-512 on 256-bit units
        per_cycle = 32 if vendor == "AuthenticAMD" else 64
    elif "fma" in flags and "avx2" in flags:
        per_cycle = 32
    else:
        per_cycle = 16
    if precision == "bf16" and "amx_bf16" in flags:
        per_cycle *= 16  # AMX tiles: 1024 bf16 FLOPs per cycle against 64 fp32
    elif precision == "bf16" and "avx512_bf16" in flags:
        per_cycle *= 2
    if not mhz:
        return Peak(None, "unknown CPU clock: pass --peak_tflops")
    tflops = threads * mhz * 1e6 * per_cycle / 1e12
    source = f"cpu estimate: {threads} threads x {mhz / 1000:.2f} GHz x {per_cycle} FLOP/cycle"
    return Peak(tflops, source)


def _cpuinfo() -> tuple[set[str], str, float | None]:
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return set(), "", None
    text = path.read_text(encoding="utf-8", errors="replace")
    flags = re.search(r"^flags\s*:\s*(.*)$", text, re.MULTILINE)
    vendor = re.search(r"^vendor_id\s*:\s*(\S+)", text, re.MULTILINE)
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.MULTILINE)
    return (
        set(flags.group(1).split()) if flags else set(),
        vendor.group(1) if vendor else "",
        _max_mhz() or (float(mhz.group(1)) if mhz else None),
    )


def _max_mhz() -> float | None:
    """The highest clock the kernel reports (cpuinfo's "cpu MHz" is the current one)."""
    path = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return int(path.read_text().strip()) / 1000 if path.is_file() else None
    except (OSError, ValueError):
        return None


def device_peak(device: torch.device, precision: str, override: float | None = None) -> Peak:
    """The peak to compare against: `override` (TFLOPS) when given."""
    if override:
        return Peak(override, "given with --peak_tflops")
    if device.type == "cuda":
        return cuda_peak(torch.cuda.get_device_name(device), precision)
    return cpu_peak(precision)


def cpu_name() -> str:
    path = Path("/proc/cpuinfo")
    if path.is_file():
        match = re.search(
            r"^model name\s*:\s*(.*)$", path.read_text(errors="replace"), re.MULTILINE
        )
        if match:
            return f"{match.group(1).strip()} ({os.cpu_count()} cores)"
    return f"cpu ({os.cpu_count()} cores)"
