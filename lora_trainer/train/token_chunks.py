"""kohya's max_token_length: captions of up to 150 or 225 tokens, encoded 75 tokens at a time.

CLIP text encoders see 77 positions: BOS, 75 tokens, EOS. For longer captions kohya
tokenizes to max_token_length + 2 ids, cuts them into windows of BOS + 75 ids + the last
id, encodes each window, and joins the hidden states back into one sequence of
max_token_length + 2 states: the first window's BOS, every window's 75 inner states, the
last window's final state. Tokenizers that pad with <|endoftext|> (SD1, SDXL's first
encoder) need nothing more; those that pad with "!" (id 0: SD2, SDXL's second encoder)
get an EOS where a window would otherwise lack one, exactly as kohya does it.
"""

from __future__ import annotations

from typing import Any

import torch

INNER = 75  # tokens between BOS and EOS in one text-encoder pass


def token_windows(
    tokenizer: Any, captions: list[str], max_token_length: int | None
) -> torch.Tensor:
    """Token ids as [batch, windows, 77]: one window, or max_token_length / 75 windows."""
    window = tokenizer.model_max_length
    if not max_token_length or max_token_length <= window - 2:
        ids = _tokenize(tokenizer, captions, window)
        return ids[:, None, :]
    length = max_token_length + 2
    ids = _tokenize(tokenizer, captions, length)
    starts = range(1, length - window + 2, window - 2)
    return torch.stack([window_ids(tokenizer, ids, start, window) for start in starts], dim=1)


def _tokenize(tokenizer: Any, captions: list[str], length: int) -> torch.Tensor:
    return tokenizer(
        captions, padding="max_length", truncation=True, max_length=length, return_tensors="pt"
    ).input_ids


def window_ids(tokenizer: Any, ids: torch.Tensor, start: int, window: int) -> torch.Tensor:
    """BOS + ids[start : start + 75] + the sequence's last id, with kohya's EOS repairs."""
    chunk = torch.cat([ids[:, :1], ids[:, start : start + window - 2], ids[:, -1:]], dim=1)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if pad == eos:
        return chunk
    # a window cut inside the caption ends with a token, not EOS: make its last id EOS
    cut = (chunk[:, -2] != eos) & (chunk[:, -2] != pad)
    chunk[:, -1] = torch.where(cut, torch.full_like(chunk[:, -1], eos), chunk[:, -1])
    # a window past the caption's end starts BOS PAD...: make it BOS EOS PAD...
    empty = chunk[:, 1] == pad
    chunk[:, 1] = torch.where(empty, torch.full_like(chunk[:, 1], eos), chunk[:, 1])
    return chunk


def join_windows(hidden: torch.Tensor, batch: int) -> torch.Tensor:
    """[batch * n, 77, C] window states -> [batch, n * 75 + 2, C] (unchanged for one window).

    kohya's SD2 branch means to copy a PAD state over an empty window's EOS, but its test
    compares an id with a string and never fires; the join is the same for every model.
    """
    windows = hidden.shape[0] // batch
    if windows == 1:
        return hidden
    width = hidden.shape[1]
    flat = hidden.reshape(batch, windows * width, hidden.shape[-1])
    pieces = [flat[:, :1]]
    pieces += [flat[:, i : i + width - 2] for i in range(1, windows * width, width)]
    pieces.append(flat[:, -1:])
    return torch.cat(pieces, dim=1)
