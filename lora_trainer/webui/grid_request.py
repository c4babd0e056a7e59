"""The comparison grid's settings: the script's arguments in order, checked; their infotext.

The order of ARGS is the order of the Script's `ui()` components, so it is also the order of
`script_args` in `/sdapi/v1/txt2img` and `/sdapi/v1/img2img` (documented in README.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any

from .grid_values import GridError, join_list, split_list

TITLE = "LoRA comparison grid"
DEFAULT_WEIGHTS = "0, 0.25, 0.5, 0.75, 1"
IMAGE_LIMIT = 100  # above this many images the user must tick "allow_many"
MAX_MARGIN = 500  # px, like the X/Y/Z plot's grid margins slider


class AxisKind(str, Enum):
    """What the second or third axis varies."""

    NOTHING = "Nothing"
    SAMPLER = "Sampler"
    STEPS = "Steps"
    CFG = "CFG scale"
    SCHEDULE = "Schedule type"
    LORA = "LoRA"
    EPOCH = "Epoch"


AXIS_CHOICES = [kind.value for kind in AxisKind]
DEFAULT_AXIS_VALUES = {
    AxisKind.NOTHING: "",
    AxisKind.SAMPLER: "Euler, Euler a, DPM++ 2M Karras, DPM++ SDE Karras",
    AxisKind.STEPS: "15, 25, 35",
    AxisKind.CFG: "4, 7, 10",
    AxisKind.SCHEDULE: "Automatic, Karras, Exponential",
    AxisKind.LORA: "",  # blank: the LoRAs picked in the LoRA list
    AxisKind.EPOCH: "",  # blank: every epoch file found, then the final file
}

# infotext keys (modules/infotext_utils.py reads `Key: value` pairs back on paste)
INFOTEXT_KEYS = {
    "loras": "LoRA grid LoRAs",
    "weights": "LoRA grid weights",
    "y_type": "LoRA grid Y type",
    "y_values": "LoRA grid Y values",
    "z_type": "LoRA grid Z type",
    "z_values": "LoRA grid Z values",
    "activation_text": "LoRA grid activation text",
    "margin": "LoRA grid margin",
}


@dataclass(frozen=True)
class GridRequest:
    """What the user asked for; field order = argument order."""

    loras: tuple[str, ...] = ()
    weights: str = DEFAULT_WEIGHTS
    y_type: str = AxisKind.SAMPLER.value
    y_values: str = ""  # blank: the default values of the axis (DEFAULT_AXIS_VALUES)
    z_type: str = AxisKind.NOTHING.value
    z_values: str = ""
    activation_text: bool = False
    allow_many: bool = False
    margin: int = 0

    @classmethod
    def from_args(cls, args: Sequence[Any]) -> GridRequest:
        """Check and convert the values the WebUI (or an API client) passed to `run()`."""
        names = [f.name for f in fields(cls)]
        if len(args) != len(names):
            raise GridError(
                f"the script got {len(args)} arguments instead of {len(names)}",
                fix=f"pass script_args in this order: {', '.join(names)}",
            )
        values = dict(zip(names, args))
        defaults = cls()
        return cls(
            loras=_names(values["loras"], 0),
            weights=_text(values["weights"], 1, defaults.weights),
            y_type=_axis(values["y_type"], 2),
            y_values=_text(values["y_values"], 3, ""),
            z_type=_axis(values["z_type"], 4),
            z_values=_text(values["z_values"], 5, ""),
            activation_text=_flag(values["activation_text"], 6),
            allow_many=_flag(values["allow_many"], 7),
            margin=_margin(values["margin"], 8),
        )

    def to_args(self) -> list[Any]:
        """The values in argument order, as `script_args` wants them."""
        values = asdict(self)
        values["loras"] = list(self.loras)
        return [values[f.name] for f in fields(self)]

    def infotext(self) -> dict[str, str]:
        """The `Key: value` pairs that record this grid in the grid image's infotext."""
        params = {
            INFOTEXT_KEYS["loras"]: join_list(self.loras),
            INFOTEXT_KEYS["weights"]: self.weights,
        }
        for axis in ("y", "z"):
            kind = getattr(self, f"{axis}_type")
            if kind != AxisKind.NOTHING.value:
                params[INFOTEXT_KEYS[f"{axis}_type"]] = kind
            values = getattr(self, f"{axis}_values").strip()
            if kind != AxisKind.NOTHING.value and values:  # the WebUI cannot read back "Key: "
                params[INFOTEXT_KEYS[f"{axis}_values"]] = values
        if self.activation_text:
            params[INFOTEXT_KEYS["activation_text"]] = "True"
        if self.margin:
            params[INFOTEXT_KEYS["margin"]] = str(self.margin)
        return params

    @classmethod
    def from_infotext(cls, params: Mapping[str, Any]) -> GridRequest | None:
        """The grid recorded in parsed infotext `params`, or None when it records no grid."""
        if params.get("Script") != TITLE or INFOTEXT_KEYS["weights"] not in params:
            return None
        get = {field: params.get(key) for field, key in INFOTEXT_KEYS.items()}
        return cls(
            loras=tuple(split_list(str(get["loras"] or ""))),
            weights=str(get["weights"]),
            y_type=str(get["y_type"] or AxisKind.NOTHING.value),
            y_values=str(get["y_values"] or ""),
            z_type=str(get["z_type"] or AxisKind.NOTHING.value),
            z_values=str(get["z_values"] or ""),
            activation_text=str(get["activation_text"]) == "True",
            margin=int(float(get["margin"] or 0)),
        )


def axis_kind(text: str) -> AxisKind:
    """The axis kind named by `text` (any case)."""
    for kind in AxisKind:
        if kind.value.casefold() == (text or "").strip().casefold():
            return kind
    raise GridError(f"unknown axis type `{text}`", fix=f"use one of: {', '.join(AXIS_CHOICES)}")


def _where(position: int) -> str:
    return f"script_args[{position}] ({fields(GridRequest)[position].name})"


def _names(value: Any, position: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(split_list(value))
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value if v.strip())
    raise GridError(
        "the LoRA list must be a list of LoRA names", where=_where(position), fix='e.g. ["my_lora"]'
    )


def _text(value: Any, position: int, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, bool):
        raise GridError("expected text, got true/false", where=_where(position))
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, str):
        return value
    raise GridError(f"expected text, got {type(value).__name__}", where=_where(position))


def _axis(value: Any, position: int) -> str:
    if value is None or value == "":
        return AxisKind.NOTHING.value
    if not isinstance(value, str):
        raise GridError("the axis type must be text", where=_where(position))
    try:
        return axis_kind(value).value
    except GridError as exc:
        raise GridError(exc.what, where=_where(position), fix=exc.fix) from None


def _flag(value: Any, position: int) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise GridError(
        f"expected true or false, got {value!r}",
        where=_where(position),
        fix=f"pass all {len(fields(GridRequest))} script_args in order",
    )


def _margin(value: Any, position: int) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GridError(f"expected a number of pixels, got {value!r}", where=_where(position))
    if not 0 <= value <= MAX_MARGIN:
        raise GridError(
            f"the grid margin {value} px is out of range",
            where=_where(position),
            fix=f"use 0 to {MAX_MARGIN}",
        )
    return int(value)
