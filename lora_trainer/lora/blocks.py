"""kohya's block-wise LoRA for the UNet (networks/lora.py at 48d368fa).

Per-block rank/alpha (block_dims, block_alphas, conv_block_dims, conv_block_alphas) and
per-block learning-rate weights (down/mid/up_lr_weight, block_lr_zero_threshold).
SD1/SD2 have 25 blocks: IN00-IN11, MID, OUT00-OUT11. SDXL has 23: BASE (time/label
embedding), IN00-IN08, MID00-MID02, OUT00-OUT08, OUT (the final layers). Some blocks never
hold a LoRA module (IN00, BASE, OUT...) but still take a value, as in kohya.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError
from .targets import LoraTarget

DIM_KEYS = ("block_dims", "block_alphas", "conv_block_dims", "conv_block_alphas")
LR_KEYS = ("down_lr_weight", "mid_lr_weight", "up_lr_weight")
THRESHOLD_KEY = "block_lr_zero_threshold"
BLOCK_KEYS = (*DIM_KEYS, *LR_KEYS, THRESHOLD_KEY)
LR_PRESETS = ("cosine", "sine", "linear", "reverse_linear", "zeros")

# kohya's RE_UPDOWN: the diffusers-layout (SD1/SD2) block of a UNet module's kohya name
_UPDOWN = re.compile(r"(up|down)_blocks_(\d+)_(resnets|upsamplers|downsamplers|attentions)_(\d+)_")


@dataclass(frozen=True)
class BlockLayout:
    """The block list of one architecture: SD1/SD2 (25 blocks) or SDXL (23 blocks)."""

    sdxl: bool

    @property
    def side(self) -> int:
        """Values in down_lr_weight / up_lr_weight."""
        return 9 if self.sdxl else 12

    @property
    def mid(self) -> int:
        """Values in mid_lr_weight."""
        return 3 if self.sdxl else 1

    @property
    def count(self) -> int:
        """Values in block_dims and the other per-block lists."""
        return 1 + 2 * self.side + self.mid + 1 if self.sdxl else 2 * self.side + self.mid

    @property
    def family(self) -> str:
        return "SDXL" if self.sdxl else "SD1/SD2"

    def labels(self) -> list[str]:
        """One name per block, in block_dims order."""
        side = [f"{i:02d}" for i in range(self.side)]
        if self.sdxl:
            mid = [f"MID{i:02d}" for i in range(self.mid)]
            return ["BASE", *(f"IN{s}" for s in side), *mid, *(f"OUT{s}" for s in side), "OUT"]
        return [*(f"IN{s}" for s in side), "MID", *(f"OUT{s}" for s in side)]

    def span(self, start: int, length: int) -> str:
        """'IN00-IN11' for `length` blocks from index `start`."""
        labels = self.labels()[start : start + length]
        return labels[0] if len(labels) == 1 else f"{labels[0]}-{labels[-1]}"

    def describe(self) -> str:
        """'25 values, one per block (IN00-IN11, MID, OUT00-OUT11)' for messages."""
        if self.sdxl:
            parts = "BASE, IN00-IN08, MID00-MID02, OUT00-OUT08, OUT"
        else:
            parts = "IN00-IN11, MID, OUT00-OUT11"
        return f"{self.count} values, one per block ({parts})"


SD_LAYOUT, SDXL_LAYOUT = BlockLayout(sdxl=False), BlockLayout(sdxl=True)


def block_index(kohya_name: str, sdxl: bool) -> int:
    """The block of a UNet LoRA module (kohya's get_block_index); -1 when it has none."""
    if sdxl:
        name = kohya_name.removeprefix("lora_unet_")
        if name.startswith(("time_embed_", "label_emb_")):
            return 0
        for prefix, first in (("input_blocks_", 1), ("middle_block_", 10), ("output_blocks_", 13)):
            if name.startswith(prefix):
                return first + int(name.split("_")[2])
        return 22 if name.startswith("out_") else -1
    match = _UPDOWN.search(kohya_name)
    if match:
        side, block, kind, layer = match.groups()
        # three layers per level: two ResNets/attentions, then the down/upsampler
        index = 3 * int(block) + (2 if kind in ("upsamplers", "downsamplers") else int(layer))
        return index + (1 if side == "down" else SD_LAYOUT.side + 1)
    return SD_LAYOUT.side if "mid_block_" in kohya_name else -1


@dataclass(frozen=True)
class BlockArgs:
    """The block-wise network_args as written (numbers checked; counts need the model)."""

    dims: tuple[int, ...] | None = None
    alphas: tuple[float, ...] | None = None
    conv_dims: tuple[int, ...] | None = None
    conv_alphas: tuple[float, ...] | None = None
    down_lr: str | None = None  # a preset ("sine+.5") or comma-separated numbers
    mid_lr: str | None = None
    up_lr: str | None = None
    zero_threshold: float = 0.0
    threshold_given: bool = False

    @property
    def block_lr(self) -> bool:
        """Any *_lr_weight given: per-block learning rates (kohya's block_lr)."""
        return any(v is not None for v in (self.down_lr, self.mid_lr, self.up_lr))

    @property
    def per_block_dims(self) -> bool:
        """kohya switches to per-block ranks when block_dims or any lr weight is given."""
        return self.dims is not None or self.block_lr

    @property
    def active(self) -> bool:
        return self.per_block_dims or self.threshold_given

    def given(self) -> list[str]:
        """The keys that were set, in kohya's order."""
        values = (self.dims, self.alphas, self.conv_dims, self.conv_alphas)
        values += (self.down_lr, self.mid_lr, self.up_lr)
        keys = [k for k, v in zip(BLOCK_KEYS, values) if v is not None]
        return keys + [THRESHOLD_KEY] * self.threshold_given


def parse_block_args(args: dict[str, str]) -> BlockArgs:
    """Read the block-wise keys of network_args; errors for bad numbers and ignored keys."""
    block = BlockArgs(
        dims=_int_list(args, "block_dims"),
        alphas=_float_list(args, "block_alphas"),
        conv_dims=_int_list(args, "conv_block_dims"),
        conv_alphas=_float_list(args, "conv_block_alphas"),
        down_lr=args.get("down_lr_weight"),
        mid_lr=args.get("mid_lr_weight"),
        up_lr=args.get("up_lr_weight"),
        zero_threshold=_number(args.get(THRESHOLD_KEY, "0"), THRESHOLD_KEY),
        threshold_given=THRESHOLD_KEY in args,
    )
    _check_mode(block)
    for key in LR_KEYS:  # syntax and presets; counts are checked against the model
        if args.get(key) is not None:
            _lr_values(key, args[key], SD_LAYOUT.side if key != "mid_lr_weight" else None)
    return block


def _check_mode(block: BlockArgs) -> None:
    # kohya reads these only in block mode and ignores them otherwise: a silent no-op here
    # would train something else than the user asked for.
    if not block.per_block_dims:
        for key in ("block_alphas", "conv_block_dims", "conv_block_alphas", THRESHOLD_KEY):
            if key in block.given():
                raise ConfigError(
                    f"network_args {key} has no effect without block_dims or an *_lr_weight",
                    fix=f"add block_dims (a rank per block), or remove {key}",
                )
    if block.conv_alphas is not None and block.conv_dims is None:
        raise ConfigError(
            "network_args conv_block_alphas has no effect without conv_block_dims",
            fix="add conv_block_dims (a conv rank per block), or use conv_alpha for all blocks",
        )


def _split(text: str) -> list[str]:
    return [part.strip() for part in str(text).split(",")]


def _int_list(args: dict[str, str], key: str) -> tuple[int, ...] | None:
    if key not in args:
        return None
    values = []
    for part in _split(args[key]):
        number = _number(part, key)
        if not number.is_integer() or number < 0:
            raise ConfigError(
                f"network_args {key} must be whole numbers of 0 or more, got {part!r}",
                fix="0 leaves a block without LoRA; 4 to 32 is a typical rank",
            )
        values.append(int(number))
    return tuple(values)


def _float_list(args: dict[str, str], key: str) -> tuple[float, ...] | None:
    if key not in args:
        return None
    values = tuple(_number(part, key) for part in _split(args[key]))
    if any(v < 0 for v in values):
        raise ConfigError(f"network_args {key} must not be negative", fix="1 is typical")
    return values


def _number(text: Any, key: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(
            f"network_args {key} has {text!r}, which is not a number",
            fix=f"write {key} as numbers separated by commas",
        ) from None
    if not math.isfinite(value):
        raise ConfigError(f"network_args {key} has {text!r}, which is not a finite number")
    return value


@dataclass(frozen=True)
class BlockPlan:
    """Per-block ranks, alphas and lr weights for one model, as kohya resolves them."""

    layout: BlockLayout
    dims: list[int] | None  # None: ranks are not per block (dim_from_weights)
    alphas: list[float] | None
    conv_dims: list[int] | None  # None: no 3x3-conv LoRA
    conv_alphas: list[float] | None
    lr_weights: list[float] | None  # None: one UNet learning rate
    warnings: tuple[str, ...] = ()

    def lr_weight(self, index: int) -> float:
        return 1.0 if self.lr_weights is None else self.lr_weights[index]


def resolve_blocks(
    block: BlockArgs,
    layout: BlockLayout,
    rank: int,
    alpha: float,
    conv_rank: int | None,
    conv_alpha: float | None,
) -> BlockPlan:
    """kohya's get_block_dims_and_alphas + get_block_lr_weight + remove_block_dims_and_alphas."""
    lr_weights, warnings = block_lr_weights(block, layout)
    dims = _exact(block.dims, "block_dims", layout) or [rank] * layout.count
    alphas = _exact(block.alphas, "block_alphas", layout) or [alpha] * layout.count
    conv_dims = _exact(block.conv_dims, "conv_block_dims", layout)
    conv_alphas = _exact(block.conv_alphas, "conv_block_alphas", layout)
    if conv_dims is not None:
        conv_alphas = conv_alphas or [conv_alpha if conv_alpha is not None else 1.0] * layout.count
    elif conv_rank is not None:
        conv_dims = [conv_rank] * layout.count
        conv_alphas = [conv_alpha if conv_alpha is not None else 1.0] * layout.count
    for i, weight in enumerate(lr_weights or []):
        if weight == 0:  # kohya creates no module where nothing would be learned
            dims[i] = 0
            if conv_dims is not None:
                conv_dims[i] = 0
    _check_alphas(layout, dims, alphas, "block_alphas")
    if conv_dims is not None and conv_alphas is not None:
        _check_alphas(layout, conv_dims, conv_alphas, "conv_block_alphas")
    return BlockPlan(layout, dims, alphas, conv_dims, conv_alphas, lr_weights, tuple(warnings))


class BlockCountError(ConfigError):
    """A per-block list with the wrong number of values for a model family."""

    def __init__(self, key: str, given: int, layout: BlockLayout) -> None:
        self.key, self.given = key, given
        super().__init__(
            f"network_args {key} has {given} values, but {layout.family} models take "
            f"{layout.describe()}",
            fix=f"give {key} exactly {layout.count} comma-separated numbers "
            "(blocks without LoRA modules still take a value)",
        )


def _exact(values: tuple | None, key: str, layout: BlockLayout) -> list | None:
    if values is None:
        return None
    if len(values) != layout.count:
        raise BlockCountError(key, len(values), layout)
    return list(values)


def _check_alphas(layout: BlockLayout, dims: list[int], alphas: list[float], key: str) -> None:
    labels = layout.labels()
    for label, dim, alpha in zip(labels, dims, alphas):
        if dim > 0 and alpha <= 0:
            raise ConfigError(
                f"network_args {key} gives block {label} alpha {alpha:g} but it has rank {dim}",
                fix="give every block with a rank a positive alpha (1, or half the rank)",
            )


def block_lr_weights(block: BlockArgs, layout: BlockLayout) -> tuple[list[float] | None, list[str]]:
    """kohya's per-block lr weights (None without *_lr_weight), with notes on filled values."""
    if not block.block_lr:
        return None, []
    warnings: list[str] = []
    parts = []
    for key, text, length, start in (
        ("down_lr_weight", block.down_lr, layout.side, 1 if layout.sdxl else 0),
        ("mid_lr_weight", block.mid_lr, layout.mid, layout.side + (1 if layout.sdxl else 0)),
        ("up_lr_weight", block.up_lr, layout.side, layout.side + layout.mid + int(layout.sdxl)),
    ):
        if text is None:
            parts.append([1.0] * length)  # kohya: a part not given learns at the full rate
            continue
        values = _lr_values(key, text, length if key != "mid_lr_weight" else None)
        values = _fit(key, values, length, layout, start, warnings)
        parts.append([w if w > block.zero_threshold else 0.0 for w in values])
    weights = [w for part in parts for w in part]
    if layout.sdxl:
        weights = [1.0, *weights, 1.0]  # BASE and OUT hold no LoRA module
    return weights, warnings


def _lr_values(key: str, text: str, preset_length: int | None) -> list[float]:
    """kohya's parsing: a comma list ('' -> 0), or for down/up a preset with '+offset'."""
    text = str(text).strip()
    if preset_length is not None and "," not in text:
        return _preset(key, text, preset_length)
    values = []
    for part in _split(text):
        values.append(_number(part, key) if part else 0.0)
    return values


def _preset(key: str, text: str, length: int) -> list[float]:
    name, plus, offset_text = text.partition("+")
    offset = _number(offset_text, key) if plus else 0.0
    positions = [i / (length - 1) for i in range(length)]
    curves = {
        "cosine": [math.sin(math.pi * p / 2) for p in reversed(positions)],
        "sine": [math.sin(math.pi * p / 2) for p in positions],
        "linear": positions,
        "reverse_linear": list(reversed(positions)),
        "zeros": [0.0] * length,
    }
    if name.strip() not in curves:
        fix = f"use one of {', '.join(LR_PRESETS)} (optionally with +offset, e.g. sine+0.5)"
        if re.fullmatch(r"[-+]?[0-9.]+", text):  # kohya reads a lone number as a preset name
            fix = f"give one number per block, e.g. {','.join([text] * length)}"
        raise ConfigError(
            f"network_args {key}={text!r} is neither a preset nor a list of numbers", fix=fix
        )
    return [value + offset for value in curves[name.strip()]]


def _fit(
    key: str, values: list[float], length: int, layout: BlockLayout, start: int, warnings: list
) -> list[float]:
    """Too many values is an error (kohya drops them); too few are filled with 1 as in kohya."""
    if len(values) > length:
        raise ConfigError(
            f"network_args {key} has {len(values)} values, but {layout.family} models have "
            f"{length} such blocks ({layout.span(start, length)})",
            fix=f"give at most {length} values",
        )
    if len(values) < length:
        missing = layout.span(start + len(values), length - len(values))
        warnings.append(f"{key} has {len(values)} of {length} values: blocks {missing} use 1.0")
        values = values + [1.0] * (length - len(values))
    return values


def check_block_counts(block: BlockArgs, layouts: list[BlockLayout]) -> None:
    """Raise unless the lists fit one of the model families the run may have."""
    errors = []
    for layout in layouts:
        try:
            resolve_blocks(block, layout, 4, 1.0, None, None)
            return
        except ConfigError as exc:
            errors.append(exc)
    first = errors[0]
    if len(errors) == 1 or not isinstance(first, BlockCountError):
        raise first
    raise ConfigError(
        f"network_args {first.key} has {first.given} values, but SD1/SD2 models take "
        f"{SD_LAYOUT.describe()} and SDXL models {SDXL_LAYOUT.describe()}",
        fix=f"give {first.key} one value per block of the model you train",
    )


def apply_block_plan(targets: list[LoraTarget], plan: BlockPlan) -> list[LoraTarget]:
    """Each UNet target with its block's rank and alpha; blocks of rank 0 get no module."""
    out = []
    for target in targets:
        index = block_index(target.kohya_name, plan.layout.sdxl)
        if not 0 <= index < plan.layout.count:
            raise ConfigError(
                f"UNet module {target.kohya_name} is in no {plan.layout.family} block",
                fix="block-wise network_args work only on standard SD1/SD2/SDXL UNets",
            )
        if target.is_conv3x3:
            if plan.conv_dims is None or plan.conv_alphas is None:
                continue
            rank, alpha = plan.conv_dims[index], plan.conv_alphas[index]
        else:
            assert plan.dims is not None and plan.alphas is not None
            rank, alpha = plan.dims[index], plan.alphas[index]
        if rank > 0:
            out.append(replace(target, rank=rank, alpha=float(alpha)))
    return out
