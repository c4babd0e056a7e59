"""The caption a sample trains with: kohya's BaseDataset.process_caption, step by step, in its order."""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, replace

from .spec import CaptionOptions

_WILDCARD = re.compile(r"\{([^}]+)\}")


@dataclass(frozen=True)
class TrainingClock:
    """Where training is: kohya's current_epoch (1-based), current_step (optimizer steps done), max_train_steps."""

    epoch: int = 1
    step: int = 0
    max_train_steps: int = 0


def process_caption(
    options: CaptionOptions, caption: str, rng: random.Random, clock: TrainingClock
) -> str:
    """Prefix/suffix, whole-caption dropout, wildcards or first line, tag handling, secondary separator."""
    caption = decorate(options, caption)
    if is_dropped(options, rng, clock):
        return ""
    if options.enable_wildcard:
        caption = expand_wildcards(caption, rng)
    else:
        caption = caption.split("\n")[0]
    if (
        options.shuffle_caption
        or options.token_warmup_step > 0
        or options.caption_tag_dropout_rate > 0
    ):
        caption = _process_tags(options, caption, rng, clock)
    if options.secondary_separator:
        caption = caption.replace(options.secondary_separator, options.caption_separator)
    return caption


def fixed_caption(options: CaptionOptions, caption: str) -> str:
    """The caption as trained when options.is_fixed and it is not dropped (no randomness involved)."""
    if not options.is_fixed:
        raise ValueError("the caption options are random; there is no single fixed caption")
    never_dropped = replace(options, caption_dropout_rate=0.0, caption_dropout_every_n_epochs=0)
    return process_caption(never_dropped, caption, random.Random(0), TrainingClock())


def decorate(options: CaptionOptions, caption: str) -> str:
    """kohya joins caption_prefix and caption_suffix with one space."""
    if options.caption_prefix:
        caption = options.caption_prefix + " " + caption
    if options.caption_suffix:
        caption = caption + " " + options.caption_suffix
    return caption


def is_dropped(options: CaptionOptions, rng: random.Random, clock: TrainingClock) -> bool:
    """caption_dropout_rate draws one number (only when the rate is set); every_n_epochs drops whole epochs."""
    dropped = options.caption_dropout_rate > 0 and rng.random() < options.caption_dropout_rate
    every = options.caption_dropout_every_n_epochs
    return dropped or (every > 0 and clock.epoch % every == 0)


def expand_wildcards(caption: str, rng: random.Random) -> str:
    """One random line of a multi-line caption, then each `{a|b|c}` replaced by one choice; `{{`/`}}` are literal."""
    if "\n" in caption:
        caption = rng.choice(caption.split("\n"))
    open_mark, close_mark = "⦅", "⦆"
    while open_mark in caption or close_mark in caption:
        open_mark += "⦅"
        close_mark += "⦆"
    caption = caption.replace("{{", open_mark).replace("}}", close_mark)
    caption = _WILDCARD.sub(lambda m: rng.choice(m.group(1).split("|")), caption)
    return caption.replace(open_mark, "{").replace(close_mark, "}")


def split_tags(options: CaptionOptions, caption: str) -> tuple[list[str], list[str], list[str]]:
    """(kept at the start, movable, kept at the end), by keep_tokens_separator or keep_tokens."""
    sep = options.caption_separator
    keep_sep = options.keep_tokens_separator
    if keep_sep and keep_sep in caption:
        fixed_part, flex_part = caption.split(keep_sep, 1)
        suffix: list[str] = []
        if keep_sep in flex_part:
            flex_part, suffix_part = flex_part.split(keep_sep, 1)
            suffix = [t.strip() for t in suffix_part.split(sep) if t.strip()]
        fixed = [t.strip() for t in fixed_part.split(sep) if t.strip()]
        flex = [t.strip() for t in flex_part.split(sep) if t.strip()]
        return fixed, flex, suffix
    # kohya keeps empty tags here ("a, b," has three), unlike the separator form above
    tokens = [t.strip() for t in caption.strip().split(sep)]
    if options.keep_tokens > 0:
        return tokens[: options.keep_tokens], tokens[options.keep_tokens :], []
    return [], tokens, []


def warmup_length(options: CaptionOptions, num_flex: int, clock: TrainingClock) -> int | None:
    """How many movable tags token warmup allows at this step; None when warmup is over or off."""
    warmup = options.token_warmup_step
    if warmup < 1:  # a fraction of max_train_steps
        warmup = math.floor(warmup * clock.max_train_steps)
    if not warmup or clock.step >= warmup:
        return None
    minimum = options.token_warmup_min
    return math.floor(clock.step * ((num_flex - minimum) / warmup)) + minimum


def _process_tags(
    options: CaptionOptions, caption: str, rng: random.Random, clock: TrainingClock
) -> str:
    fixed, flex, suffix = split_tags(options, caption)
    length = warmup_length(options, len(flex), clock)
    if length is not None:
        flex = flex[:length]
    if options.shuffle_caption:
        rng.shuffle(flex)
    rate = options.caption_tag_dropout_rate
    if rate > 0:
        flex = [t for t in flex if rng.random() >= rate]
    # kohya always joins with ", " whatever caption_separator is
    return ", ".join(fixed + flex + suffix)
