"""The WebUI's built-in Lora extension: undo its in-place merges, refresh its list of LoRAs.

The extension (extensions-builtin/Lora, imported by A1111 as the top-level module
`networks`) merges the LoRAs of the last prompt into the live weights the next time a
layer runs, and keeps the original weights in `network_weights_backup` /
`network_bias_backup` on each layer. Training must start from the checkpoint's own
weights, so the merges are undone first; the next generation merges again as needed.
"""

from __future__ import annotations

import sys
from types import ModuleType

import torch
from torch import nn

from ..errors import ModelError

MODULE_NAME = "networks"
_REQUIRED = ("loaded_networks", "network_restore_weights_from_backup", "list_available_networks")


def networks_module() -> ModuleType | None:
    """The Lora extension's `networks` module when it is loaded (and really is that module)."""
    module = sys.modules.get(MODULE_NAME)
    if module is None or not all(hasattr(module, name) for name in _REQUIRED):
        return None
    return module


def restore_merged_weights(sd_model: nn.Module) -> int:
    """Put back the weights the Lora extension merged; returns how many layers were restored."""
    networks = networks_module()
    merged = [m for m in sd_model.modules() if getattr(m, "network_current_names", ())]
    if networks is None:
        if merged:
            raise ModelError(
                "the loaded model has LoRA weights merged into it, and the Lora extension "
                "that could undo this is not loaded",
                fix="reload the checkpoint (Settings > Actions > Reload checkpoint), then train",
            )
        return 0
    # with no network loaded, neither the lazy merge nor the functional mode adds anything
    networks.loaded_networks.clear()
    with torch.no_grad():  # the extension copies in place; live parameters may require grad
        for module in merged:
            networks.network_restore_weights_from_backup(module)
            module.network_current_names = ()
    return len(merged)


def refresh_lora_list() -> bool:
    """Rescan the Lora folder so a new file is known to <lora:name:w> at once."""
    networks = networks_module()
    if networks is None:
        return False
    networks.list_available_networks()
    return True
