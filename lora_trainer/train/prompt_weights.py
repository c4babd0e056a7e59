"""Prompt weighting in sample prompts, with the rules of kohya's long-prompt-weighting pipelines.

kohya (library/lpw_stable_diffusion.py and strategy_base.py at 48d368fa) reads:
- `(text)` multiplies the weight of text by 1.1, `[text]` divides it by 1.1, nesting multiplies;
- `(text:1.5)` multiplies by the number (signed decimals; a bad number is an error here, a
  crash in kohya);
- `\\(`, `\\)`, `\\[`, `\\]`, `\\\\` are the literal characters; a lone backslash is dropped;
- a bracket left open weights everything after it; a closing bracket with no opener, or a
  `:1.5)` outside round brackets, is plain text;
- `BREAK` is not special (kohya's samples keep it as the word "break").
Each piece is tokenized alone, and its tokens get the piece's weight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

ROUND = 1.1  # `(text)`
SQUARE = 1 / 1.1  # `[text]`

# one alternative per syntax element, tried in this order (the order decides ties)
_ELEMENT = re.compile(
    r"""
    \\[()\[\]\\]        # escaped bracket or backslash
    | \\                # a lone backslash
    | \( | \[
    | :([+-]?[.\d]+)\)  # the explicit weight that closes a round bracket
    | \) | \]
    | [^\\()\[\]:]+     # plain text
    | :
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class WeightedTokens:
    """A prompt's token ids (no BOS, EOS or padding) and the weight of each."""

    ids: list[int]
    weights: list[float]
    truncated: bool  # the prompt had more tokens than fit; the rest was cut


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split a prompt into (text, weight) pieces; neighbours of equal weight are joined."""
    pieces: list[list[Any]] = []  # [text, weight], weights updated in place as brackets close
    round_open: list[int] = []
    square_open: list[int] = []

    def scale_from(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _ELEMENT.finditer(text):
        element, number = match.group(0), match.group(1)
        if element.startswith("\\"):
            pieces.append([element[1:], 1.0])
        elif element == "(":
            round_open.append(len(pieces))
        elif element == "[":
            square_open.append(len(pieces))
        elif number is not None and round_open:
            scale_from(round_open.pop(), _weight(number, text))
        elif element == ")" and round_open:
            scale_from(round_open.pop(), ROUND)
        elif element == "]" and square_open:
            scale_from(square_open.pop(), SQUARE)
        else:
            pieces.append([element, 1.0])
    # brackets never closed still apply, round ones first (kohya's order)
    for start in round_open:
        scale_from(start, ROUND)
    for start in square_open:
        scale_from(start, SQUARE)
    return _join_equal_neighbours(pieces)


def _weight(number: str, text: str) -> float:
    try:
        return float(number)
    except ValueError:
        raise ConfigError(
            f"the prompt weight {number!r} is not a number, in {text!r}",
            fix="write a weight like (word:1.2); escape a literal bracket as \\( or \\)",
        ) from None


def _join_equal_neighbours(pieces: list[list[Any]]) -> list[tuple[str, float]]:
    if not pieces:
        return [("", 1.0)]
    joined = [pieces[0]]
    for piece in pieces[1:]:
        if piece[1] == joined[-1][1]:
            joined[-1] = [joined[-1][0] + piece[0], joined[-1][1]]
        else:
            joined.append(piece)
    return [(str(t), float(w)) for t, w in joined]


def check_prompt_weights(text: str, where: str) -> None:
    """Raise a ConfigError naming `where` if the prompt's weights cannot be read."""
    try:
        parse_prompt_attention(text)
    except ConfigError as exc:
        raise ConfigError(exc.what, where=where, fix=exc.fix) from None


def tokenize_weighted(tokenizer: Any, text: str, max_tokens: int) -> WeightedTokens:
    """Token ids and weights of a prompt, at most `max_tokens` of them (kohya's rule)."""
    ids: list[int] = []
    weights: list[float] = []
    for piece, weight in parse_prompt_attention(text):
        piece_ids = tokenizer(piece).input_ids[1:-1]  # without the piece's own BOS and EOS
        ids += piece_ids
        weights += [weight] * len(piece_ids)
        if len(ids) > max_tokens:
            break
    truncated = len(ids) > max_tokens
    return WeightedTokens(ids[:max_tokens], weights[:max_tokens], truncated)
