"""A record of the live model taken before training, checked (and put right) afterwards.

Training only reads the live tensors through the bundle's own modules, so nothing should
change. The guard makes that a guarantee the WebUI can rely on whatever happened in the
run (error, out of memory, Stop): same parameter objects, devices, dtypes and
requires_grad flags, the same module tree (no peft layer swapped in) and no new hooks.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import torch
from torch import nn

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


@dataclass(frozen=True)
class _TensorRecord:
    tensor: torch.Tensor
    device: torch.device
    dtype: torch.dtype
    requires_grad: bool


@dataclass(frozen=True)
class _ModuleRecord:
    module: nn.Module
    hooks: dict[str, tuple[int, ...]]


class LiveModelGuard:
    """Snapshot of the WebUI model's structure; `restore()` undoes any drift and reports it."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.tensors = {
            name: _TensorRecord(t, t.device, t.dtype, t.requires_grad)
            for name, t in _named_tensors(model)
        }
        self.modules = {
            name: _ModuleRecord(m, {h: tuple(getattr(m, h, {}) or {}) for h in _HOOK_DICTS})
            for name, m in model.named_modules()
        }

    def restore(self) -> list[str]:
        """Put the model back as recorded; returns what had to be fixed (empty when nothing)."""
        fixes = self._restore_modules()
        fixes += self._restore_tensors()
        return fixes

    def _restore_modules(self) -> list[str]:
        fixes = []
        for name, record in self.modules.items():
            if name and _get_submodule(self.model, name) is not record.module:
                parent_name, _, child = name.rpartition(".")
                parent = self.model.get_submodule(parent_name) if parent_name else self.model
                setattr(parent, child, record.module)
                fixes.append(f"module {name} was replaced")
            for hook_dict, ids in record.hooks.items():
                hooks = getattr(record.module, hook_dict, None)
                if not hooks:
                    continue
                for hook_id in [h for h in hooks if h not in ids]:
                    del hooks[hook_id]
                    fixes.append(f"a hook was left on {name or 'the model'}")
        return fixes

    def _restore_tensors(self) -> list[str]:
        fixes = []
        current = dict(_named_tensors(self.model))
        for name, record in self.tensors.items():
            tensor = current.get(name)
            if tensor is not record.tensor:
                fixes.append(f"{name} was replaced")
                _set_tensor(self.model, name, record.tensor)
                tensor = record.tensor
            if tensor.device != record.device or tensor.dtype != record.dtype:
                fixes.append(f"{name} moved to {tensor.device}/{tensor.dtype}")
                tensor.data = tensor.data.to(record.device, record.dtype)
            if tensor.requires_grad != record.requires_grad and tensor.is_leaf:
                tensor.requires_grad_(record.requires_grad)
                fixes.append(f"{name} requires_grad changed")
            if tensor.grad is not None:
                tensor.grad = None
        return fixes


def _named_tensors(model: nn.Module):
    yield from model.named_parameters(remove_duplicate=False)
    yield from model.named_buffers(remove_duplicate=False)


def _get_submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _set_tensor(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    owner_name, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    if isinstance(tensor, nn.Parameter):
        owner._parameters[attr] = tensor
    else:
        owner._buffers[attr] = tensor


def free_memory() -> None:
    """Drop what the run left behind and give cached GPU memory back (the WebUI's torch_gc)."""
    gc.collect()
    from modules import devices

    devices.torch_gc()
