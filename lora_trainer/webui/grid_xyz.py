"""LoRA axes for the WebUI's built-in X/Y/Z plot: "[LoRA] name", "[LoRA] weight", "[LoRA] epoch".

The X/Y/Z plot (scripts/xyz_grid.py) is loaded as the module "xyz_grid.py", reachable only
through modules.scripts.scripts_data; its Script.ui() reads `axis_options`, so the options
are appended from an on_before_ui callback, after all scripts are loaded.

Each cell of the plot is a copy of p; every LoRA axis records its value on that copy and
rewrites the prompt from the prompt the cell started with, so the three axes combine in
any order: the name picks the LoRA (else the first `<lora:...>` tag of the prompt), the
epoch picks that LoRA's epoch file, the weight sets the strength (0 removes the tag).
Weights are text, like the grid script's: numbers, ranges, or `te:unet` pairs (`0.5:1`).
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

from .grid_epochs import base_name
from .grid_host import WebuiCatalog
from .grid_plan import LoraEntry, tag_names
from .grid_prompt import existing_weight, find_lora_tags, put_lora
from .grid_values import FINAL, GridError, Weight, format_number, parse_epochs, parse_weights

logger = logging.getLogger(__name__)

AXIS_NAME = "[LoRA] name"
AXIS_WEIGHT = "[LoRA] weight"
AXIS_EPOCH = "[LoRA] epoch"
XYZ_MODULE = "xyz_grid.py"  # modules/script_loading.py names a script module after its file
_STATE = "lora_trainer_xyz"  # attribute on each cell's copy of p


def find_xyz_module() -> ModuleType | None:
    """The loaded X/Y/Z plot script module, or None when it is not loaded."""
    from modules import scripts

    for data in scripts.scripts_data:
        if data.script_class.__module__ == XYZ_MODULE:
            return data.module
    return None


def register_xyz_axes() -> bool:
    """Add the LoRA axes to the X/Y/Z plot once; False when the plot is not loaded."""
    xyz = find_xyz_module()
    if xyz is None:
        logger.info("X/Y/Z plot not loaded: no LoRA axes added")
        return False
    present = {getattr(option, "label", None) for option in xyz.axis_options}
    for option in _options(xyz):
        if option.label not in present:
            xyz.axis_options.append(option)
    return True


def _options(xyz: ModuleType) -> list[Any]:
    from .grid_ui import lora_choices

    return [
        xyz.AxisOption(AXIS_NAME, str, apply_name, format_value=xyz.format_value, confirm=confirm_names, choices=lora_choices),
        xyz.AxisOption(AXIS_WEIGHT, str, apply_weight, prepare=prepare_weights),
        xyz.AxisOption(AXIS_EPOCH, str, apply_epoch, prepare=prepare_epochs, confirm=confirm_epochs),
    ]  # fmt: skip


def apply_name(p: Any, x: str, xs: list[str]) -> None:
    _apply(p, name=x, names=tuple(xs))


def prepare_weights(text: str) -> list[str]:
    """The weight values as text: ranges expanded, `te:unet` pairs kept (parse_weights)."""
    return [weight_text(w) for w in parse_weights(text)]


def weight_text(weight: Weight) -> str:
    """`0.5`, or `0.5:1` when the text-encoder and UNet weights differ."""
    if weight.split:
        return f"{format_number(weight.te)}:{format_number(weight.unet)}"
    return format_number(weight.unet)


def apply_weight(p: Any, x: str | float, xs: list[Any]) -> None:
    if isinstance(x, (int, float)):
        weight = Weight(float(x), float(x))
    else:
        (weight,) = parse_weights(x)  # one value: prepare_weights wrote it
    _apply(p, weight=weight)


def apply_epoch(p: Any, x: str, xs: list[str]) -> None:
    _apply(p, epoch=FINAL if x == FINAL else int(x))


def confirm_names(p: Any, xs: list[str]) -> None:
    catalog = WebuiCatalog()
    missing = [x for x in xs if catalog.lora(x) is None]
    if missing:
        raise GridError(f"LoRA not found: {', '.join(missing)}", where=AXIS_NAME)


def prepare_epochs(text: str) -> list[str]:
    epochs = parse_epochs(text)
    if not epochs:
        raise GridError(f"{AXIS_EPOCH} has no values", fix="list epochs, e.g. 2, 4, final")
    return [str(e) for e in epochs]


def confirm_epochs(p: Any, xs: list[str]) -> None:
    """With a LoRA tag in the prompt, check its epoch files now rather than mid-plot."""
    tags = find_lora_tags(p.prompt)
    if not tags:
        return
    catalog = WebuiCatalog()
    family = _family(catalog, tags[0].name)
    epochs = catalog.epochs(family)
    missing = [x for x in xs if x != FINAL and int(x) not in epochs]
    if missing:
        raise GridError(
            f"{family.name} has no file for epoch {', '.join(missing)}",
            where=AXIS_EPOCH,
            fix=f"epochs found: {', '.join(map(str, epochs)) or 'none'}",
        )


def _apply(p: Any, **values: Any) -> None:
    # a new dict each time: copies of p share attribute values
    state = dict(
        getattr(p, _STATE, None) or {"prompt": p.prompt, "hr_prompt": getattr(p, "hr_prompt", None)}
    )
    state.update(values)
    setattr(p, _STATE, state)
    # The cells' shallow copies of p share one extra_generation_params, where the Lora
    # extension leaves the last LoRA cell's "Lora hashes" (extensions-builtin/Lora/
    # extra_networks_lora.py sets it only when a LoRA loads): each cell gets its own dict
    # without it, and the extension writes it again for the LoRAs this cell loads.
    p.extra_generation_params = {
        k: v for k, v in p.extra_generation_params.items() if k != "Lora hashes"
    }
    catalog = WebuiCatalog()
    p.prompt = _render(state, state["prompt"], catalog)
    if state["hr_prompt"]:
        p.hr_prompt = _render(state, state["hr_prompt"], catalog)


def _render(state: dict, prompt: str, catalog: WebuiCatalog) -> str:
    tags = find_lora_tags(prompt)
    target = state.get("name") or (tags[0].name if tags else None)
    if target is None:
        raise GridError(
            "the prompt has no <lora:name:weight> tag for the LoRA axes to change",
            fix=f"add one to the prompt, or add a {AXIS_NAME} axis",
        )
    family = _family(catalog, target)
    others = [_family(catalog, n) for n in state.get("names", ())]
    replace = tag_names([family, *others], catalog) | {target}
    used = family
    epoch = state.get("epoch")
    if epoch not in (None, FINAL):
        used = catalog.epochs(family).get(epoch)
        if used is None:
            raise GridError(f"{family.name} has no file for epoch {epoch}", where=AXIS_EPOCH)
    catalog.make_loadable([used])
    weight = state.get("weight")
    strength = weight if weight is not None else existing_weight(prompt, replace)
    strength = strength or _default_weight()
    return put_lora(prompt, replace, used.name, strength)


def _family(catalog: WebuiCatalog, name: str) -> LoraEntry:
    """The final LoRA behind `name` (an epoch file's name leads to its LoRA)."""
    base = base_name(name)
    entry = (catalog.lora(base) if base else None) or catalog.lora(name)
    if entry is None:
        raise GridError(f"LoRA not found: {name}", fix="check the name, or refresh the Lora list")
    return entry


def _default_weight() -> Weight:
    from modules import shared

    value = float(getattr(shared.opts, "extra_networks_default_multiplier", 1.0))
    return Weight(value, value)
