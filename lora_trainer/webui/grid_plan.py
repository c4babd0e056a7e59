"""From a GridRequest to the exact settings of every cell, checked before any image is made.

X is always the LoRA weight; Y and Z (one grid per Z value) vary the sampler, steps, CFG,
schedule type, LoRA or epoch. What the WebUI knows (its LoRA list, samplers, schedule
types) comes through the GridCatalog protocol, so the plan is pure and tested without it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from .grid_epochs import base_name, epoch_file_stem, epochs_folder
from .grid_prompt import add_activation_text, put_lora
from .grid_request import (
    DEFAULT_AXIS_VALUES,
    IMAGE_LIMIT,
    AxisKind,
    GridRequest,
    axis_kind,
)
from .grid_values import (
    FINAL,
    GridError,
    Weight,
    format_number,
    parse_epochs,
    parse_numbers,
    parse_weights,
    split_list,
)


@dataclass(frozen=True)
class LoraEntry:
    """A LoRA file as the WebUI's Lora list knows it; `name` is what `<lora:name:w>` uses."""

    name: str
    filename: str
    alias: str = ""
    activation_text: str = ""


class GridCatalog(Protocol):
    """What the plan needs to know about the running WebUI."""

    def lora(self, name: str) -> LoraEntry | None: ...
    def lora_names(self) -> list[str]: ...
    def epochs(self, lora: LoraEntry) -> dict[int, LoraEntry]: ...
    def sampler(self, text: str) -> tuple[str, str | None] | None: ...
    def sampler_names(self) -> list[str]: ...
    def is_stochastic(self, sampler: str) -> bool: ...
    def schedule(self, text: str) -> str | None: ...
    def schedule_names(self) -> list[str]: ...


@dataclass(frozen=True)
class BaseSettings:
    """The generation settings the user set outside the script (what no axis changes)."""

    prompt: str
    sampler_name: str
    scheduler: str | None
    steps: int
    cfg_scale: float
    width: int = 512
    height: int = 512
    hr_prompt: str | None = None  # txt2img's separate hires prompt, when it has one


@dataclass(frozen=True)
class Change:
    """What one axis value changes in a cell (None: leaves it as it is)."""

    weight: Weight | None = None
    sampler: str | None = None
    scheduler: str | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    lora: LoraEntry | None = None
    epoch: int | str | None = None

    def merge(self, other: Change) -> Change:
        updates = {k: v for k, v in vars(other).items() if v is not None}
        return replace(self, **updates)


@dataclass(frozen=True)
class AxisValue:
    label: str
    change: Change


@dataclass(frozen=True)
class Axis:
    """One axis: its kind, its title on the grid, and its values."""

    kind: str
    title: str
    values: tuple[AxisValue, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(v.label for v in self.values)

    @property
    def used(self) -> bool:
        return self.kind != AxisKind.NOTHING.value


@dataclass(frozen=True)
class CellSettings:
    """Everything that differs between cells; equal settings give equal images."""

    prompt: str
    hr_prompt: str | None
    sampler_name: str
    scheduler: str | None
    steps: int
    cfg_scale: float
    lora: str | None  # the network name in the prompt's tag; None when the weight is 0
    weight: Weight


@dataclass(frozen=True)
class Cell:
    ix: int
    iy: int
    iz: int
    settings: CellSettings


@dataclass(frozen=True)
class GridPlan:
    """Every cell of every grid, in order: grid by grid, row by row."""

    x: Axis
    y: Axis
    z: Axis
    cells: tuple[Cell, ...]
    loras: tuple[LoraEntry, ...]
    files: tuple[LoraEntry, ...] = ()  # every LoRA file a cell's prompt names
    notes: tuple[str, ...] = field(default=())

    @property
    def count(self) -> int:
        return len(self.cells)

    @property
    def renders(self) -> int:
        """Images to generate: cells with equal settings share one image."""
        return len({c.settings for c in self.cells})

    def grid_cells(self, iz: int) -> list[Cell]:
        return [c for c in self.cells if c.iz == iz]

    def summary(self) -> str:
        parts = [f"{len(self.x.values)} weights"]
        parts += [f"{len(a.values)} {_PLURALS[a.kind]}" for a in (self.y, self.z) if a.used]
        text = " x ".join(parts) + f" = {self.count} images"
        if self.renders < self.count:
            text += f" ({self.renders} to generate: cells without the LoRA are shared)"
        return text


_PLURALS = {
    AxisKind.SAMPLER.value: "samplers",
    AxisKind.STEPS.value: "step counts",
    AxisKind.CFG.value: "CFG scales",
    AxisKind.SCHEDULE.value: "schedule types",
    AxisKind.LORA.value: "LoRAs",
    AxisKind.EPOCH.value: "epochs",
}
NO_AXIS = Axis(AxisKind.NOTHING.value, "", (AxisValue("", Change()),))


def build_plan(
    request: GridRequest,
    base: BaseSettings,
    catalog: GridCatalog,
    *,
    max_megapixels: float | None = None,
) -> GridPlan:
    """Resolve and check every setting; raise GridError naming the first problem found."""
    y_kind, z_kind = axis_kind(request.y_type), axis_kind(request.z_type)
    if y_kind == z_kind and y_kind != AxisKind.NOTHING:
        raise GridError(
            f"the second and third axes are both {y_kind.value}",
            fix="pick a different third axis, or Nothing",
        )
    picked = _loras(request.loras, catalog, where="LoRAs")
    x = _weight_axis(request.weights)
    y = _axis(y_kind, request.y_values, picked, catalog)
    z = _axis(z_kind, request.z_values, picked, catalog)
    compared = _compared_loras(picked, y, z)
    # epochs come last: blank Epoch values mean the epochs every compared LoRA has
    y = _epoch_axis(request.y_values, compared, catalog) if y_kind == AxisKind.EPOCH else y
    z = _epoch_axis(request.z_values, compared, catalog) if z_kind == AxisKind.EPOCH else z
    names = tag_names(compared, catalog)
    cells, files = [], {}
    for iz, zv in enumerate(z.values):
        for iy, yv in enumerate(y.values):
            for ix, xv in enumerate(x.values):
                settings, used = _settings(
                    base, _merged(xv, yv, zv), compared[0], names, request, catalog
                )
                cells.append(Cell(ix, iy, iz, settings))
                if settings.lora:
                    files[used.name] = used
    plan = GridPlan(
        x, y, z, tuple(cells), tuple(compared), tuple(files.values()), _notes(cells, catalog)
    )
    _check_size(plan, request, base, max_megapixels)
    return plan


def _merged(*values: AxisValue) -> Change:
    change = Change()
    for value in values:
        change = change.merge(value.change)
    return change


def _weight_axis(text: str) -> Axis:
    weights = parse_weights(text)
    title = "LoRA weight (TE:UNet)" if any(w.split for w in weights) else "LoRA weight"
    return Axis("Weight", title, tuple(AxisValue(w.label, Change(weight=w)) for w in weights))


def _axis(kind: AxisKind, text: str, picked: list[LoraEntry], catalog: GridCatalog) -> Axis:
    text = text.strip() or DEFAULT_AXIS_VALUES[kind]
    if kind in (AxisKind.NOTHING, AxisKind.EPOCH):  # Epoch: see _epoch_axis
        return NO_AXIS
    if kind == AxisKind.SAMPLER:
        values = [_sampler_value(t, catalog) for t in _items(text, kind)]
    elif kind == AxisKind.STEPS:
        values = [_steps_value(v) for v in parse_numbers(text, integer=True, what="Steps")]
    elif kind == AxisKind.CFG:
        values = [_cfg_value(v) for v in parse_numbers(text, integer=False, what="CFG scale")]
    elif kind == AxisKind.SCHEDULE:
        values = [_schedule_value(t, catalog) for t in _items(text, kind)]
    elif kind == AxisKind.LORA:
        loras = _loras(split_list(text), catalog, where="LoRA axis") if text else picked
        if not loras:
            raise GridError("the LoRA axis has no LoRAs", fix="pick LoRAs in the LoRA list")
        values = [AxisValue(lora.name, Change(lora=lora)) for lora in loras]
    return Axis(kind.value, kind.value, tuple(values))


def _epoch_axis(text: str, loras: list[LoraEntry], catalog: GridCatalog) -> Axis:
    epochs = parse_epochs(text) or all_epochs(loras, catalog)
    if epochs == [FINAL] and not text.strip():
        without = [e for e in loras if not catalog.epochs(e)]
        if not without:
            raise GridError(
                f"{', '.join(e.name for e in loras)} have no saved epoch in common",
                fix="list the epochs to compare, e.g. 2, 4, final",
            )
        lora = without[0]
        raise GridError(
            f"no epoch files found for {lora.name}",
            where=(
                f"its card {Path(lora.filename).with_suffix('.json').name}, "
                f"{epochs_folder(Path(lora.filename))} and {Path(lora.filename).parent}"
            ),
            fix=_epoch_fix(lora),
        )
    values = [AxisValue(_epoch_label(e), Change(epoch=e)) for e in epochs]
    return Axis(AxisKind.EPOCH.value, AxisKind.EPOCH.value, tuple(values))


def _epoch_fix(lora: LoraEntry) -> str:
    base = base_name(lora.name)
    if base:
        return f"{lora.name} is itself an epoch file: pick {base} to compare its epochs"
    return (
        f"they are named {epoch_file_stem(lora.name, 2)}.safetensors; train with "
        "save_every_n_epochs to get them"
    )


def _items(text: str, kind: AxisKind) -> list[str]:
    items = split_list(text)
    if not items:
        raise GridError(f"the {kind.value} axis has no values", where=text)
    return items


def _sampler_value(text: str, catalog: GridCatalog) -> AxisValue:
    found = catalog.sampler(text)
    if found is None:
        raise GridError(
            f"unknown sampler `{text}`",
            fix=_suggest(text, catalog.sampler_names(), "samplers"),
        )
    sampler, scheduler = found
    label = sampler if scheduler is None else f"{sampler} {scheduler}"
    return AxisValue(label, Change(sampler=sampler, scheduler=scheduler))


def _schedule_value(text: str, catalog: GridCatalog) -> AxisValue:
    label = catalog.schedule(text)
    if label is None:
        raise GridError(
            f"unknown schedule type `{text}`",
            fix=_suggest(text, catalog.schedule_names(), "schedule types"),
        )
    return AxisValue(label, Change(scheduler=label))


def _steps_value(value: float) -> AxisValue:
    if value < 1:
        raise GridError(f"{format_number(value)} steps is too few", fix="use 1 or more steps")
    return AxisValue(f"{int(value)} steps", Change(steps=int(value)))


def _cfg_value(value: float) -> AxisValue:
    if value < 0:
        raise GridError(f"CFG scale {format_number(value)} is negative", fix="use 0 or more")
    return AxisValue(f"CFG {format_number(value)}", Change(cfg_scale=value))


def _epoch_label(epoch: int | str) -> str:
    return FINAL if epoch == FINAL else f"epoch {epoch}"


def _loras(names: Sequence[str], catalog: GridCatalog, *, where: str) -> list[LoraEntry]:
    found, missing = [], []
    for name in names:
        entry = catalog.lora(name)
        (found if entry else missing).append(entry or name)
    if missing:
        known = catalog.lora_names()
        raise GridError(
            f"LoRA not found: {', '.join(missing)}",
            where=where,
            fix=_suggest(missing[0], known, "LoRAs")
            + "; press the refresh button after adding files",
        )
    return found


def _compared_loras(picked: list[LoraEntry], y: Axis, z: Axis) -> list[LoraEntry]:
    lora_axis = next((a for a in (y, z) if a.kind == AxisKind.LORA.value), None)
    if lora_axis:
        return [v.change.lora for v in lora_axis.values if v.change.lora]
    if not picked:
        raise GridError("no LoRA picked", fix="pick the LoRA to compare in the LoRA list")
    if len(picked) > 1:
        raise GridError(
            f"{len(picked)} LoRAs are picked but no axis compares them",
            fix="set the second or third axis to LoRA, or pick one LoRA",
        )
    return picked


def tag_names(loras: list[LoraEntry], catalog: GridCatalog) -> frozenset[str]:
    """Names that mean one of the compared LoRAs in a prompt: its name, alias, epoch files."""
    names: set[str] = set()
    for lora in loras:
        names |= {lora.name, lora.alias} - {""}
        names |= {e.name for e in catalog.epochs(lora).values()}
    return frozenset(names)


def _settings(
    base: BaseSettings,
    change: Change,
    default_lora: LoraEntry,
    tag_names: frozenset[str],
    request: GridRequest,
    catalog: GridCatalog,
) -> tuple[CellSettings, LoraEntry]:
    lora = change.lora or default_lora
    used = _epoch_file(lora, change.epoch, catalog)
    weight = change.weight or Weight(1.0, 1.0)

    def edit(prompt: str) -> str:
        if request.activation_text:
            prompt = add_activation_text(prompt, lora.activation_text)
        return put_lora(prompt, tag_names, None if weight.off else used.name, weight)

    settings = CellSettings(
        prompt=edit(base.prompt),
        hr_prompt=edit(base.hr_prompt) if base.hr_prompt else base.hr_prompt,
        sampler_name=change.sampler or base.sampler_name,
        scheduler=change.scheduler or base.scheduler,
        steps=change.steps or base.steps,
        cfg_scale=base.cfg_scale if change.cfg_scale is None else change.cfg_scale,
        lora=None if weight.off else used.name,
        weight=Weight(0.0, 0.0) if weight.off else weight,
    )
    return settings, used


def _epoch_file(lora: LoraEntry, epoch: int | str | None, catalog: GridCatalog) -> LoraEntry:
    if epoch is None or epoch == FINAL:
        return lora
    epochs = catalog.epochs(lora)
    if epoch not in epochs:
        found = ", ".join(str(e) for e in epochs) or "none"
        raise GridError(
            f"{lora.name} has no file for epoch {epoch} (epochs found: {found})",
            where=str(lora.filename),
            fix="list only epochs that were saved, or leave the Epoch values blank for all",
        )
    return epochs[epoch]


def all_epochs(loras: Iterable[LoraEntry], catalog: GridCatalog) -> list[int | str]:
    """The epochs every LoRA in `loras` has a file for, then `final`."""
    sets = [set(catalog.epochs(lora)) for lora in loras]
    common = sorted(set.intersection(*sets)) if sets else []
    return [*common, FINAL]


def _notes(cells: Sequence[Cell], catalog: GridCatalog) -> tuple[str, ...]:
    used = dict.fromkeys(c.settings.sampler_name for c in cells)
    stochastic = [s for s in used if catalog.is_stochastic(s)]
    if not stochastic:
        return ()
    verb = "adds" if len(stochastic) == 1 else "add"
    return (
        f"{', '.join(stochastic)} {verb} fresh noise at every step, so cells differ more than "
        "the LoRA alone explains; Euler or DPM++ 2M give the cleanest comparison.",
    )


def _check_size(
    plan: GridPlan, request: GridRequest, base: BaseSettings, max_mp: float | None
) -> None:
    # the limit is on what is generated: cells without the LoRA share one image
    if plan.renders > IMAGE_LIMIT and not request.allow_many:
        cells = f" (for {plan.count} cells)" if plan.count > plan.renders else ""
        raise GridError(
            f"this grid makes {plan.renders} images{cells}, more than {IMAGE_LIMIT}",
            fix=f'tick "Allow more than {IMAGE_LIMIT} images" to go on, or shorten the lists',
        )
    per_grid = len(plan.x.values) * len(plan.y.values)
    megapixels = per_grid * base.width * base.height / 1_000_000
    if max_mp is not None and megapixels >= max_mp:
        raise GridError(
            f"one grid would be {megapixels:.0f} megapixels, the WebUI's limit is {max_mp:g}",
            fix="use fewer values, smaller images, or raise Settings > Saving images > Maximum image size",
        )


def _suggest(text: str, known: Sequence[str], what: str) -> str:
    close = difflib.get_close_matches(text, list(known), n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(f"`{c}`" for c in close)
    shown = ", ".join(list(known)[:12]) + (", ..." if len(known) > 12 else "")
    return f"known {what}: {shown or 'none'}"
