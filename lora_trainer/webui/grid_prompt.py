"""`<lora:name:te:unet>` tags in a prompt: find, replace, insert, remove; activation text.

The WebUI's Lora extension reads `<lora:...>` (and its alias `<lyco:...>`) tags and removes
their text before encoding the prompt, so the text around a tag is left exactly as written.
That is why a removed tag leaves its surroundings untouched and a new tag is appended after a
single space: every cell of a grid then encodes the same words, and only the LoRA differs.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from .grid_values import Weight, format_number

# modules/extra_networks.py re_extra_net, restricted to the Lora extension's two names
_TAG = re.compile(r"<(lora|lyco):([^>]+)>")


@dataclass(frozen=True)
class LoraTag:
    """One LoRA tag as the Lora extension reads it (multipliers None when not numbers)."""

    name: str
    te: float | None
    unet: float | None
    start: int
    end: int


def find_lora_tags(prompt: str) -> list[LoraTag]:
    """Every `<lora:...>`/`<lyco:...>` tag, in order."""
    return [_read_tag(m) for m in _TAG.finditer(prompt or "")]


def format_lora_tag(name: str, weight: Weight) -> str:
    """`<lora:name:w>`, or `<lora:name:te:unet>` when the two weights differ."""
    if weight.split:
        return f"<lora:{name}:{format_number(weight.te)}:{format_number(weight.unet)}>"
    return f"<lora:{name}:{format_number(weight.unet)}>"


def put_lora(prompt: str, replace: Collection[str], name: str | None, weight: Weight) -> str:
    """Drop the tags naming any of `replace`; put `name` at `weight` where the first one was.

    Without such a tag the new one is appended; weight 0 (or no name) leaves the LoRA out.
    """
    tags = [t for t in find_lora_tags(prompt) if t.name in replace]
    new = "" if name is None or weight.off else format_lora_tag(name, weight)
    if not tags:
        return _append(prompt, new) if new else prompt
    out, last = [], 0
    for i, tag in enumerate(tags):
        out.append(prompt[last : tag.start])
        out.append(new if i == 0 else "")
        last = tag.end
    out.append(prompt[last:])
    return "".join(out)


def existing_weight(prompt: str, names: Collection[str]) -> Weight | None:
    """The weight of the first tag naming one of `names`, if it has readable numbers."""
    for tag in find_lora_tags(prompt):
        if tag.name in names and tag.te is not None and tag.unet is not None:
            return Weight(tag.te, tag.unet)
    return None


def add_activation_text(prompt: str, text: str) -> str:
    """Append a LoRA's activation text once: nothing happens when the prompt already has it."""
    text = (text or "").strip()
    if not text or text.casefold() in (prompt or "").casefold():
        return prompt
    head = (prompt or "").rstrip()
    if not head:
        return text
    return f"{head} {text}" if head.endswith(",") else f"{head}, {text}"


def _append(prompt: str, tag: str) -> str:
    if not prompt:
        return tag
    return prompt + tag if prompt[-1].isspace() else f"{prompt} {tag}"


def _read_tag(match: re.Match) -> LoraTag:
    # extensions-builtin/Lora/extra_networks_lora.py: name = first positional item;
    # te = 2nd positional or te=; unet = 3rd positional or unet=, else te
    positional, named = [], {}
    for item in match[2].split(":"):
        key, sep, value = item.partition("=")
        if sep:
            named[key] = value
        else:
            positional.append(item)
    name = positional[0] if positional else ""
    te = _number(named.get("te", positional[1] if len(positional) > 1 else "1"))
    unet_text = named.get("unet", positional[2] if len(positional) > 2 else None)
    unet = te if unet_text is None else _number(unet_text)
    return LoraTag(name=name, te=te, unet=unet, start=match.start(), end=match.end())


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
