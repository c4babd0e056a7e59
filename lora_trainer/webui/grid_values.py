"""The grid's value lists: numbers and ranges (X/Y/Z plot syntax), LoRA weights, epochs, names.

Syntax, as in the WebUI's X/Y/Z plot: values separated by commas; `a-b` is every whole step
from a to b; `a-b [n]` is n evenly spaced values from a to b; `a-b (+s)` steps by s (the sign
is required, `(-s)` counts down). A weight may be `te:unet` for separate text-encoder and
UNet weights. Epochs are numbers, ranges, or `final` for the file saved at the end.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from io import StringIO

from ..errors import UserError

NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_RANGE = re.compile(rf"^\s*({NUMBER})\s*-\s*({NUMBER})\s*(?:\[\s*([^\]]*)\]|\(\s*([^)]*)\))?\s*$")
_SIGNED_STEP = re.compile(r"^[+-]\s*(?:\d+(?:\.\d*)?|\.\d+)$")
_NUMBER = re.compile(rf"^\s*{NUMBER}\s*$")
MAX_VALUES = 1000  # a typo like `0-1 [10000]` must not allocate a huge list
FINAL = "final"  # the epoch value naming the file saved at the end of training
_FINAL_WORDS = {"final", "last"}
RANGE_HELP = "write a range as `0-1 [5]` (5 values) or `0-1 (+0.25)` (steps of 0.25)"


class GridError(UserError):
    """A comparison-grid setting that cannot be used; reported before any image is made."""


@dataclass(frozen=True)
class Weight:
    """A LoRA strength: text-encoder and UNet multipliers (equal unless given as `te:unet`)."""

    te: float
    unet: float

    @property
    def off(self) -> bool:
        return self.te == 0 and self.unet == 0

    @property
    def split(self) -> bool:
        return self.te != self.unet

    @property
    def label(self) -> str:
        if self.off:
            return "0 (off)"
        if self.split:
            return f"{format_number(self.te)}:{format_number(self.unet)}"
        return format_number(self.unet)


def format_number(value: float) -> str:
    """Short decimal text: 1 not 1.0, 0.25, -0.5; six decimals at most."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def split_list(text: str) -> list[str]:
    """Comma-separated items, stripped, empty ones dropped; quotes allowed like the X/Y/Z plot."""
    rows = csv.reader(StringIO(text or ""), skipinitialspace=True)
    return [item.strip() for row in rows for item in row if item.strip()]


def join_list(items: list[str] | tuple[str, ...]) -> str:
    """The inverse of split_list: items joined by ", ", quoted when they hold a comma."""
    quoted = (
        '"' + item.replace('"', '""') + '"' if "," in item or '"' in item else item
        for item in items
    )
    return ", ".join(quoted)


def parse_numbers(text: str, *, integer: bool, what: str) -> list[float]:
    """Numbers and ranges from `text`; `what` names the field in error messages."""
    values: list[float] = []
    for item in split_list(text):
        values += _expand(item, integer=integer, what=what)
        if len(values) > MAX_VALUES:
            raise GridError(
                f"{what} has more than {MAX_VALUES} values", where=text, fix="shorten the list"
            )
    if not values:
        raise GridError(f"{what} is empty", fix="give at least one value, e.g. 0, 0.5, 1")
    return values


def parse_weights(text: str) -> list[Weight]:
    """LoRA weights: numbers, ranges, or `te:unet` pairs; at least one."""
    weights: list[Weight] = []
    for item in split_list(text):
        if ":" in item:
            weights.append(_pair(item))
        else:
            weights += [Weight(v, v) for v in _expand(item, integer=False, what="Weights")]
        if len(weights) > MAX_VALUES:
            raise GridError(f"Weights has more than {MAX_VALUES} values", fix="shorten the list")
    if not weights:
        raise GridError("Weights is empty", fix="give at least one weight, e.g. 0, 0.5, 1")
    return weights


def parse_epochs(text: str) -> list[int | str]:
    """Epoch numbers, ranges and `final`; an empty text gives an empty list (= all epochs)."""
    epochs: list[int | str] = []
    for item in split_list(text):
        if item.lower() in _FINAL_WORDS:
            epochs.append(FINAL)
            continue
        for value in _expand(item, integer=True, what="Epochs"):
            if value < 1:
                raise GridError(
                    f"epoch {int(value)} does not exist", where=item, fix="epochs start at 1"
                )
            epochs.append(int(value))
    return epochs


def _pair(item: str) -> Weight:
    te, _, unet = item.partition(":")
    if not (_NUMBER.match(te) and _NUMBER.match(unet)):
        raise GridError(
            f"`{item}` is not a weight pair",
            fix="write a text-encoder:UNet pair as two numbers, e.g. 1:0.5",
        )
    return Weight(_clean(float(te)), _clean(float(unet)))


def _expand(item: str, *, integer: bool, what: str) -> list[float]:
    if _NUMBER.match(item):
        return [_checked(float(item), integer=integer, item=item, what=what)]
    match = _RANGE.match(item)
    if not match:
        raise GridError(f"`{item}` is not a number or a range", where=what, fix=RANGE_HELP)
    start, end = (
        _checked(float(g), integer=integer, item=item, what=what) for g in match.group(1, 2)
    )
    count, step = match[3], match[4]
    if count is not None:
        values = _by_count(start, end, count, item)
    elif step is not None:
        values = _by_step(start, end, step, item, integer=integer)
    else:
        values = _by_step(start, end, "+1" if end >= start else "-1", item, integer=integer)
    return [_clean(round(v) if integer else v) for v in values]


def _by_count(start: float, end: float, count: str, item: str) -> list[float]:
    if not count.strip().isdigit() or int(count) < 1:
        raise GridError(
            f"`[{count}]` in `{item}` is not a count of values", fix="use a whole number, e.g. [5]"
        )
    n = int(count)
    if n > MAX_VALUES:
        raise GridError(f"`{item}` asks for {n} values", fix=f"use at most {MAX_VALUES}")
    if n == 1:
        return [start]
    return [start + (end - start) * i / (n - 1) for i in range(n)]


def _by_step(start: float, end: float, step_text: str, item: str, *, integer: bool) -> list[float]:
    if not _SIGNED_STEP.match(step_text.strip()):
        raise GridError(
            f"`({step_text})` in `{item}` is not a step",
            fix="a step needs its sign, e.g. (+0.25) or (-5); for a count of values use [5]",
        )
    step = float(step_text.replace(" ", ""))
    if step == 0 or (end - start) * step < 0:
        raise GridError(
            f"the step in `{item}` never reaches {format_number(end)}",
            fix="use (+step) when the range goes up and (-step) when it goes down",
        )
    if integer and step != int(step):
        raise GridError(f"the step in `{item}` must be a whole number", fix="e.g. (+5)")
    n = math.floor((end - start) / step + 1e-9) + 1
    if n > MAX_VALUES:
        raise GridError(f"`{item}` makes {n} values", fix=f"use at most {MAX_VALUES}")
    return [start + step * i for i in range(n)]


def _checked(value: float, *, integer: bool, item: str, what: str) -> float:
    if not math.isfinite(value):
        raise GridError(f"`{item}` is not a finite number", where=what)
    if integer and value != int(value):
        raise GridError(f"`{item}` must be a whole number", where=what)
    return value


def _clean(value: float) -> float:
    # ranges like 0-1 (+0.1) accumulate binary error: 0.30000000000000004 -> 0.3
    value = round(value, 6)
    return 0.0 if value == 0 else value
