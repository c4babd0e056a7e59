"""kohya's sample-prompt files: `.txt` lines with `--n --w --h --d --l --s --ss`, `.toml`, `.json`."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .prompt_weights import check_prompt_weights

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: install.py adds tomli there
    import tomli as tomllib

logger = logging.getLogger(__name__)

PROMPT_FILE_SUFFIXES = (".txt", ".toml", ".json")

# kohya's defaults for what a prompt line leaves out (train_util.sample_image_inference)
DEFAULT_STEPS = 30
DEFAULT_SIZE = 512
DEFAULT_SCALE = 7.5

# (pattern after " --", key, converter), tried in kohya's order; the first match wins
_OPTIONS: tuple[tuple[str, str, Callable[[str], Any]], ...] = (
    (r"w (\d+)", "width", int),
    (r"h (\d+)", "height", int),
    (r"d (\d+)", "seed", int),
    (r"s (\d+)", "sample_steps", lambda v: max(1, min(1000, int(v)))),
    (r"l ([\d\.]+)", "scale", float),
    (r"g ([\d\.]+)", "guidance_scale", float),
    (r"n (.+)", "negative_prompt", str),
    (r"ss (.+)", "sample_sampler", str),
    (r"cn (.+)", "controlnet_image", str),
    (r"ctr (.+)", "cfg_trunc_ratio", float),
    (r"rcfg (.+)", "renorm_cfg", float),
    (r"fs (.+)", "flow_shift", str),
)

# keys other model families use; an SD sample ignores them (as kohya's SD pipeline does)
UNUSED_KEYS = ("guidance_scale", "controlnet_image", "cfg_trunc_ratio", "renorm_cfg", "flow_shift")


def line_to_prompt_dict(line: str) -> dict[str, Any]:
    """kohya's parse of one prompt line: the text before the first ` --`, then the options."""
    parts = line.split(" --")
    result: dict[str, Any] = {"prompt": parts[0]}
    for part in parts:
        for pattern, key, convert in _OPTIONS:
            match = re.match(pattern, part, re.IGNORECASE)
            if match:
                # like kohya: a value that does not convert ("7.5.1") drops only that option
                try:
                    result[key] = convert(match.group(1))
                except ValueError:
                    logger.warning("sample prompt option ignored, bad value: --%s", part)
                break
    return result


def load_prompt_dicts(path: str | Path) -> list[dict[str, Any]]:
    """kohya's load_prompts: every prompt as a dict with its position in `enum`."""
    path = Path(path)
    if path.suffix.lower() not in PROMPT_FILE_SUFFIXES:
        raise ConfigError(
            "sample_prompts must be a .txt, .toml or .json file",
            where=str(path),
            fix="write one prompt per line in a .txt file",
        )
    if not path.is_file():
        raise ConfigError(
            "the sample_prompts file does not exist",
            where=str(path),
            fix="check the path, or remove sample_prompts",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the sample_prompts file: {exc}", where=str(path)) from None
    entries = _parse_file(text, path)
    prompts = []
    for i, entry in enumerate(entries):
        prompt = line_to_prompt_dict(entry) if isinstance(entry, str) else dict(entry)
        prompt["enum"] = i
        prompt.pop("subset", None)
        prompts.append(prompt)
    return prompts


def _parse_file(text: str, path: Path) -> list[str | dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        # kohya: blank lines and lines whose first character is '#' are skipped, the rest stripped
        lines = text.split("\n")  # the text was read with universal newlines, like readlines()
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    try:
        data = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot parse the sample_prompts file: {exc}", where=str(path)) from None
    entries = _toml_prompts(data, path) if suffix == ".toml" else data
    if not isinstance(entries, list) or not all(isinstance(e, (str, dict)) for e in entries):
        raise ConfigError(
            "the sample_prompts file must hold a list of prompts (strings or tables)",
            where=str(path),
        )
    return entries


def _toml_prompts(data: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """kohya's TOML form: shared keys in [prompt], one [[prompt.subset]] table per image."""
    shared = data.get("prompt")
    subsets = shared.get("subset") if isinstance(shared, dict) else None
    if not isinstance(subsets, list) or not all(isinstance(s, dict) for s in subsets):
        raise ConfigError(
            "a TOML sample_prompts file needs a [prompt] table with [[prompt.subset]] entries",
            where=str(path),
        )
    # kohya fails when a subset repeats a shared key; here the subset's value wins
    return [{**shared, **subset} for subset in subsets]


@dataclass(frozen=True)
class SamplePrompt:
    """One sample image to make, with kohya's defaults filled in; prompts may carry `(word:1.2)` weights."""

    index: int  # kohya's `enum`: the prompt's position, used in the file name
    prompt: str
    negative_prompt: str | None
    width: int  # rounded down to a multiple of 8, at least 64, as kohya does
    height: int
    seed: int | None  # None: a new random seed each time
    scale: float  # classifier-free guidance; 1 or less turns it off
    steps: int
    sampler: str


def sample_prompt_from_dict(
    values: dict[str, Any], default_sampler: str, where: str
) -> SamplePrompt:
    """Fill kohya's defaults and check the types of one prompt dict and its `(word:1.2)` weights."""
    width = _number(values, "width", int, DEFAULT_SIZE, where)
    height = _number(values, "height", int, DEFAULT_SIZE, where)
    text = str(values.get("prompt", ""))
    negative = values.get("negative_prompt")
    negative = None if negative is None else str(negative)
    check_prompt_weights(text, where)
    check_prompt_weights(negative or "", f"{where}, negative prompt")
    seed = values.get("seed")
    return SamplePrompt(
        index=int(values.get("enum", 0)),
        prompt=text,
        negative_prompt=negative,
        width=max(64, width - width % 8),
        height=max(64, height - height % 8),
        seed=None if seed is None else _number(values, "seed", int, 0, where),
        scale=_number(values, "scale", float, DEFAULT_SCALE, where),
        steps=_number(values, "sample_steps", int, DEFAULT_STEPS, where),
        sampler=str(values.get("sample_sampler") or default_sampler),
    )


def _number(values: dict[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    value = values.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and kind is int and isinstance(value, float) and not value.is_integer():
        ok = False
    if not ok:
        raise ConfigError(f"sample prompt {key} must be a number, got {value!r}", where=where)
    return kind(value)


def load_sample_prompts(path: str | Path, default_sampler: str) -> list[SamplePrompt]:
    """All prompts of a kohya prompt file, checked; errors name the prompt."""
    prompts = []
    for values in load_prompt_dicts(path):
        where = f"{path}, prompt {values['enum'] + 1}"
        prompts.append(sample_prompt_from_dict(values, default_sampler, where))
    return prompts


def unused_options(path: str | Path) -> list[str]:
    """Options in the file that Stable Diffusion samples do not use (kohya ignores them too)."""
    found = {key for values in load_prompt_dicts(path) for key in UNUSED_KEYS if key in values}
    return sorted(found)
