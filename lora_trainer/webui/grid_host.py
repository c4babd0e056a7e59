"""What the grid reads from the running WebUI: its Lora list, samplers and schedule types.

The Lora list belongs to the built-in Lora extension, imported as the top-level module
`networks` (A1111 puts extensions-builtin/Lora on sys.path while loading it). A LoRA's
activation text is the "activation text" of its card file `<name>.json`, as the Lora
page writes it (modules/extra_networks.py get_user_metadata).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from modules import extra_networks, sd_samplers, sd_schedulers

from .grid_epochs import base_name, find_epoch_files
from .grid_plan import LoraEntry
from .grid_values import GridError

logger = logging.getLogger(__name__)


def lora_extension() -> ModuleType:
    """The built-in Lora extension's `networks` module, or a GridError saying it is off."""
    try:
        networks = importlib.import_module("networks")
    except ImportError:
        networks = None
    if networks is None or not hasattr(networks, "available_networks"):
        raise GridError(
            "the WebUI's built-in Lora extension is not loaded",
            fix="enable Lora in Extensions > Installed, then restart the WebUI",
        )
    return networks


class WebuiCatalog:
    """The plan's GridCatalog over the live WebUI."""

    def __init__(self, *, refresh_missing: bool = True) -> None:
        self.networks = lora_extension()
        self.refresh_missing = refresh_missing
        self._refreshed = False
        self._epochs: dict[str, dict[int, LoraEntry]] = {}

    def refresh(self) -> None:
        """Rescan the Lora folder, as the Lora page's refresh button does."""
        self.networks.list_available_networks()
        self._refreshed = True
        self._epochs.clear()

    def lora(self, name: str) -> LoraEntry | None:
        on_disk = self._lookup(name)
        if on_disk is None and self.refresh_missing and not self._refreshed:
            self.refresh()  # a file added since the WebUI started (e.g. just trained)
            on_disk = self._lookup(name)
        if on_disk is None:
            return None
        card = extra_networks.get_user_metadata(on_disk.filename)
        return LoraEntry(
            name=on_disk.name,
            filename=str(on_disk.filename),
            alias=str(getattr(on_disk, "alias", "") or ""),
            activation_text=str(card.get("activation text") or ""),
        )

    def lora_names(self) -> list[str]:
        """The LoRAs to pick from; epoch files of a listed LoRA are left out."""
        listed = self.networks.available_networks
        return [n for n in sorted(listed, key=str.casefold) if base_name(n) not in listed]

    def epochs(self, lora: LoraEntry) -> dict[int, LoraEntry]:
        if lora.name not in self._epochs:
            files = find_epoch_files(Path(lora.filename))
            self._epochs[lora.name] = {
                epoch: LoraEntry(path.stem, str(path), activation_text=lora.activation_text)
                for epoch, path in files.items()
            }
        return self._epochs[lora.name]

    def sampler(self, text: str) -> tuple[str, str | None] | None:
        wanted = text.strip().casefold()
        if wanted in sd_samplers.samplers_map:
            return sd_samplers.samplers_map[wanted], None
        for scheduler in sd_schedulers.schedulers:
            for option in (scheduler.label, scheduler.name, *(scheduler.aliases or [])):
                suffix = " " + option.casefold()
                head = wanted[: -len(suffix)].strip()
                if wanted.endswith(suffix) and head in sd_samplers.samplers_map:
                    return sd_samplers.samplers_map[head], scheduler.label
        return None

    def sampler_names(self) -> list[str]:
        return sd_samplers.visible_sampler_names()

    def is_stochastic(self, sampler: str) -> bool:
        config = sd_samplers.find_sampler_config(sampler)
        options = config.options if config else {}
        # ancestral samplers add noise per step (uses_ensd); SDE samplers draw brownian noise
        return bool(options.get("uses_ensd") or options.get("brownian_noise"))

    def schedule(self, text: str) -> str | None:
        wanted = text.strip().casefold()
        for scheduler in sd_schedulers.schedulers:
            names = (scheduler.label, scheduler.name, *(scheduler.aliases or []))
            if wanted in (n.casefold() for n in names):
                return scheduler.label
        return None

    def schedule_names(self) -> list[str]:
        return [s.label for s in sd_schedulers.schedulers]

    def make_loadable(self, entries: Iterable[LoraEntry]) -> list[str]:
        """Make every LoRA a prompt will name known to the Lora extension; return warnings.

        Epoch files in a folder the Lora list skips (a hidden one) are registered the way
        the list registers files, so `<lora:name-000002:w>` finds them.
        """
        warnings = []
        for entry in {e.name: e for e in entries}.values():
            on_disk = self._lookup(entry.name)
            if on_disk is None:
                self._register(entry)
            elif Path(on_disk.filename).resolve() != Path(entry.filename).resolve():
                warnings.append(
                    f"Two LoRA files are named {entry.name}; the WebUI uses {on_disk.filename}, "
                    f"not {entry.filename}. Rename one of them."
                )
        return warnings

    def _lookup(self, name: str):
        # extensions-builtin/Lora/networks.py load_networks: an alias shared by several
        # files (epoch files keep their LoRA's ss_output_name) only works as a file name
        n = self.networks
        if name.lower() in n.forbidden_network_aliases:
            return n.available_networks.get(name)
        return n.available_network_aliases.get(name) or n.available_networks.get(name)

    def _register(self, entry: LoraEntry) -> None:
        network = importlib.import_module("network")
        on_disk = network.NetworkOnDisk(entry.name, entry.filename)
        self.networks.available_networks[entry.name] = on_disk
        self.networks.available_network_aliases[entry.name] = on_disk
        logger.info("LoRA grid: registered %s from %s", entry.name, entry.filename)
