"""Counting the FLOPs of a training step with torch's FlopCounterMode, CPU attention included."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils import flop_counter

aten = torch.ops.aten


def _cpu_sdpa(
    query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any
) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward(
    grad_out: Any,
    query: Any,
    key: Any,
    value: Any,
    *args: Any,
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


def _cpu_attention_formulas() -> dict[Any, Any]:
    # torch counts the CUDA attention kernels but not the CPU flash kernel SDPA uses here
    formulas = {}
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if forward is not None:
        formulas[forward] = _cpu_sdpa
    if backward is not None:
        formulas[backward] = _cpu_sdpa_backward
    return formulas


def flop_counter_mode() -> flop_counter.FlopCounterMode:
    """A FlopCounterMode that also knows the CPU attention kernels."""
    return flop_counter.FlopCounterMode(display=False, custom_mapping=_cpu_attention_formulas())
