"""Peak memory of a benchmark run: CUDA's max allocated, or the process's peak resident set."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch


class PeakMemory:
    """Reset before a run, read after it."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "cpu_peak_rss"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        # Linux: writing 5 resets the peak resident set size (VmHWM) to the current one
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.kind = "cpu_peak_rss"
        except OSError:
            self.kind = "cpu_peak_rss_since_start"  # could not reset: the process's lifetime peak

    def read(self) -> int:
        """Bytes."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device)
        status = Path("/proc/self/status")
        if status.is_file():
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux
