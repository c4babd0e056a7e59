"""Conditioning for sample prompts with `(word:1.2)` weights, as kohya's sample pipelines make it.

kohya (48d368fa) encodes sample prompts in two different ways, both kept here:
- SD1/SD2 (library/lpw_stable_diffusion.py): up to 225 tokens whatever max_token_length
  is, as many 75-token windows as the longest of the prompt and the negative prompt
  needs (1 to 3); ids padded with EOS (also for SD2); each window's 77 states kept whole
  (a context of 77, 154 or 231 states); clip_skip as in training. The states are
  multiplied by their token's weight, then rescaled so that each prompt's mean over all
  states is what it was before the weighting.
- SDXL (library/strategy_sdxl.py): the training tokenization (max_token_length windows,
  padding as in training); each encoder's states multiplied by the weights, no mean
  restored; the pooled output comes from the unweighted states, so weights never change it.
Training captions are never weighted (kohya's default), so training uses conditioning.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..models.bundle import ModelBundle
from .conditioning import Conditioning, PromptOptions, encode_sdxl_windows, last_states
from .prompt_weights import WeightedTokens, tokenize_weighted
from .token_chunks import window_ids as training_window

LPW_MAX_WINDOWS = 3  # kohya's pipelines: max_embeddings_multiples


@dataclass
class WeightedConditioning:
    """The conditioning of a batch of prompts, and which prompts were cut to fit."""

    conditioning: Conditioning
    truncated: tuple[bool, ...]


def encode_weighted_prompts(
    bundle: ModelBundle,
    prompts: list[str],
    device: torch.device,
    options: PromptOptions | None = None,
) -> WeightedConditioning:
    """The text conditioning of weighted prompts (SDXL: without time_ids), one row per prompt."""
    options = options or PromptOptions()
    if bundle.is_sdxl:
        return _encode_sdxl(bundle, prompts, device, options.max_token_length)
    return _encode_sd(bundle, prompts, device, options.clip_skip)


def apply_weights(hidden: torch.Tensor, weights: torch.Tensor, restore_mean: bool) -> torch.Tensor:
    """States [batch, tokens, C] times weights [batch, tokens]; optionally each row's mean kept."""
    # the product is taken in the weights' dtype, as kohya does (SDXL: float32), then cast back
    weighted = (hidden * weights.to(hidden.device).unsqueeze(-1)).to(hidden.dtype)
    if not restore_mean:
        return weighted
    before = hidden.float().mean(dim=(-2, -1)).to(hidden.dtype)
    after = weighted.float().mean(dim=(-2, -1)).to(hidden.dtype)
    # a mean of exactly 0 (an untrained final layer norm) would give kohya 0/0 = NaN: keep it
    ratio = torch.where(after == 0, torch.ones_like(after), before / after)
    return weighted * ratio[:, None, None]


# ---- SD1 / SD2: kohya's lpw_stable_diffusion ----


def _encode_sd(
    bundle: ModelBundle, prompts: list[str], device: torch.device, clip_skip: int | None
) -> WeightedConditioning:
    tokenizer = bundle.tokenizer
    inner = tokenizer.model_max_length - 2
    tokens = [tokenize_weighted(tokenizer, p, inner * LPW_MAX_WINDOWS) for p in prompts]
    longest = max(len(t.ids) for t in tokens)
    windows = min(LPW_MAX_WINDOWS, max(1, (longest - 1) // inner + 1))
    ids = _lpw_ids(tokenizer, tokens, windows)
    hidden = last_states(bundle.text_encoder, ids.reshape(-1, ids.shape[-1]).to(device), clip_skip)
    hidden = hidden.reshape(len(prompts), -1, hidden.shape[-1])  # the windows side by side
    # kohya makes the weights in the states' dtype (fp16 rounds 1.1)
    weights = torch.stack([_lpw_weights(t, windows, inner) for t in tokens]).to(hidden.dtype)
    context = apply_weights(hidden, weights, restore_mean=True)
    return WeightedConditioning(Conditioning(context), tuple(t.truncated for t in tokens))


def _lpw_ids(tokenizer: Any, tokens: list[WeightedTokens], windows: int) -> torch.Tensor:
    """[batch, windows, 77]: BOS + ids + EOS padding, cut into windows with kohya's repairs."""
    inner = tokenizer.model_max_length - 2
    length = inner * windows + 2
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    rows = [[bos, *t.ids] + [eos] * (length - 1 - len(t.ids)) for t in tokens]
    ids = torch.tensor(rows, dtype=torch.long)
    if windows == 1:
        return ids[:, None, :]  # one window is encoded as it is, without repairs
    return torch.stack([_lpw_window(tokenizer, ids, i * inner) for i in range(windows)], dim=1)


def _lpw_window(tokenizer: Any, ids: torch.Tensor, start: int) -> torch.Tensor:
    """ids[start : start + 77] with BOS first; the end repaired as kohya's pipeline does."""
    chunk = ids[:, start : start + tokenizer.model_max_length].clone()
    chunk[:, 0] = tokenizer.bos_token_id
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if pad == eos:  # SD1: every window ends with EOS
        chunk[:, -1] = eos
        return chunk
    # SD2: a window that ends inside the prompt gets an EOS at its end (unlike the training
    # windows, kohya looks at the last id itself here), and one that starts with PAD an EOS
    cut = (chunk[:, -1] != eos) & (chunk[:, -1] != pad)
    chunk[:, -1] = torch.where(cut, torch.full_like(chunk[:, -1], eos), chunk[:, -1])
    empty = chunk[:, 1] == pad
    chunk[:, 1] = torch.where(empty, torch.full_like(chunk[:, 1], eos), chunk[:, 1])
    return chunk


def _lpw_weights(tokens: WeightedTokens, windows: int, inner: int) -> torch.Tensor:
    """[windows * 77]: 1 at each window's BOS and EOS and on padding, the token weights inside."""
    weights = torch.ones(windows, inner + 2, dtype=torch.float64)
    given = torch.tensor(tokens.weights, dtype=torch.float64)
    for i in range(windows):
        part = given[i * inner : (i + 1) * inner]
        weights[i, 1 : 1 + len(part)] = part
    return weights.reshape(-1)


# ---- SDXL: kohya's strategy_sdxl ----


def _encode_sdxl(
    bundle: ModelBundle, prompts: list[str], device: torch.device, max_token_length: int | None
) -> WeightedConditioning:
    tok1, tok2 = bundle.tokenizers
    length = max_token_length + 2 if max_token_length else tok1.model_max_length
    first = [tokenize_weighted(tok1, p, length - 2) for p in prompts]
    second = [tokenize_weighted(tok2, p, length - 2) for p in prompts]
    ids1, weights1 = _sdxl_windows(tok1, first, length)
    ids2, weights2 = _sdxl_windows(tok2, second, length)
    cond = encode_sdxl_windows(bundle, ids1, ids2, device)
    width1 = bundle.text_encoders[0].config.hidden_size
    context = torch.cat(
        [
            apply_weights(cond.context[..., :width1], weights1, restore_mean=False),
            apply_weights(cond.context[..., width1:], weights2, restore_mean=False),
        ],
        dim=-1,
    )
    truncated = tuple(a.truncated or b.truncated for a, b in zip(first, second))
    return WeightedConditioning(Conditioning(context, cond.added_cond_kwargs), truncated)


def _sdxl_windows(
    tokenizer: Any, tokens: list[WeightedTokens], length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids [batch, windows, 77] laid out as for training, and weights [batch, joined length]."""
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    window = tokenizer.model_max_length
    rows = [[bos, *t.ids, eos] + [pad] * (length - 2 - len(t.ids)) for t in tokens]
    ids = torch.tensor(rows, dtype=torch.long)
    weights = torch.ones(len(tokens), length, dtype=torch.float32)
    for row, t in zip(weights, tokens):
        row[1 : 1 + len(t.weights)] = torch.tensor(t.weights, dtype=torch.float32)
    if length <= window:
        return ids[:, None, :], weights
    starts = range(1, length - window + 2, window - 2)
    windows = torch.stack([training_window(tokenizer, ids, s, window) for s in starts], dim=1)
    # the joined states are BOS, each window's 75 inner states, the last EOS: the same
    # positions as the unwindowed weights
    return windows, weights
