"""Fake of modules/devices.py (A1111 v1.10.1): the devices and dtypes the WebUI runs with.

Real: module globals `cpu`, `device` (set at start-up from --use-cpu / --device-id),
`dtype`, `dtype_vae`, `dtype_unet`, `dtype_inference` (float16 unless --no-half /
--precision full), `fp8` (True while the UNet weights are stored as float8 by the
"FP8 weight" setting), `unet_needs_upcast`; `get_optimal_device_name()` ("cuda[:id]",
"mps", ... or "cpu"); `torch_gc()` empties the CUDA cache (and MPS/XPU/NPU caches).
The values below are those of the fixture run (--use-cpu all --no-half --precision full,
see shared/fixtures/A1111.md "devices"). `torch_gc` also counts its calls for tests.
"""

from __future__ import annotations

import torch

cpu: torch.device = torch.device("cpu")
fp8: bool = False
force_fp16: bool = False
device: torch.device = torch.device("cpu")
dtype: torch.dtype = torch.float32
dtype_vae: torch.dtype = torch.float32
dtype_unet: torch.dtype = torch.float32
dtype_inference: torch.dtype = torch.float32
unet_needs_upcast = False

torch_gc_calls = 0


def get_cuda_device_string():
    from modules import shared

    device_id = getattr(shared.cmd_opts, "device_id", None)
    return f"cuda:{device_id}" if device_id is not None else "cuda"


def get_optimal_device_name():
    if torch.cuda.is_available():
        return get_cuda_device_string()
    return "cpu"


def get_optimal_device():
    return torch.device(get_optimal_device_name())


def torch_gc():
    global torch_gc_calls
    torch_gc_calls += 1
    if torch.cuda.is_available():
        with torch.cuda.device(get_cuda_device_string()):
            torch.cuda.empty_cache()
            torch.cuda.ipc_collect()
