"""Generate the bundled CLIP tokenizer files from OpenAI's MIT-licensed BPE merge list.

The source is `bpe_simple_vocab_16e6.txt.gz` as shipped in the `open_clip_torch` wheel
(MIT; the same file as in github.com/openai/CLIP, MIT). The output is what transformers'
slow `CLIPTokenizer` reads: vocab.json, merges.txt, tokenizer_config.json and
special_tokens_map.json, in lora_trainer/models/assets/clip_tokenizer/.

    python dev/make_clip_tokenizer.py                 # pip-downloads the wheel first
    python dev/make_clip_tokenizer.py --wheel W.whl   # or use a wheel you already have
    python dev/make_clip_tokenizer.py --bpe F.txt.gz  # or the BPE file itself
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "open_clip_torch==3.3.0"
BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
# sha256 of the .gz file; the same bytes as openai/CLIP's clip/bpe_simple_vocab_16e6.txt.gz.
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"

# CLIP's vocabulary has 49408 entries: 256 byte symbols, the same 256 with "</w>",
# the merges, and the two special tokens. So the file's merge list is cut to fit.
VOCAB_SIZE = 49408
NUM_MERGES = VOCAB_SIZE - 2 * 256 - 2
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
WORD_END = "</w>"
MERGES_HEADER = "#version: 0.2"
MODEL_MAX_LENGTH = 77

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "lora_trainer/models/assets/clip_tokenizer"


def byte_symbols() -> list[str]:
    """The printable character that stands for each byte value, in GPT-2/CLIP vocabulary order.

    Bytes that are printable Latin-1 characters stand for themselves; the others are moved
    to code points 256 and up so that no symbol is whitespace or a control character.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes = {b: b for b in printable}
    shifted = 0
    for b in range(256):
        if b not in codes:
            codes[b] = 256 + shifted
            shifted += 1
    # Vocabulary order is "printable bytes first, then the others", not byte order.
    order = printable + [b for b in range(256) if b not in printable]
    return [chr(codes[b]) for b in order]


def read_merges(bpe_gz: bytes) -> list[tuple[str, str]]:
    """The merge pairs CLIP uses: the file's lines after its header, cut to the vocab size."""
    lines = gzip.decompress(bpe_gz).decode("utf-8").split("\n")
    pairs = [tuple(line.split()) for line in lines[1 : 1 + NUM_MERGES]]
    bad = [p for p in pairs if len(p) != 2]
    if len(pairs) != NUM_MERGES or bad:
        raise SystemExit(f"Unexpected BPE file: {len(pairs)} merges, {len(bad)} malformed.")
    return pairs  # type: ignore[return-value]


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id, in the order CLIP assigns ids."""
    symbols = byte_symbols()
    tokens = symbols + [s + WORD_END for s in symbols] + ["".join(m) for m in merges]
    tokens += [START_TOKEN, END_TOKEN]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise SystemExit(f"Built {len(vocab)} unique tokens, expected {VOCAB_SIZE}.")
    return vocab


def special_tokens() -> dict[str, str]:
    # Stable Diffusion pads with the end token (A1111's id_pad is 49407 for CLIP-L).
    return {
        "bos_token": START_TOKEN,
        "eos_token": END_TOKEN,
        "unk_token": END_TOKEN,
        "pad_token": END_TOKEN,
    }


def tokenizer_config() -> dict[str, object]:
    """Settings for a slow CLIPTokenizer that transformers 4.30 to 4.46 all read the same way."""
    return {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "errors": "replace",
        "add_prefix_space": False,
        # Set explicitly: 4.30's default, and newer versions warn when it is missing.
        "clean_up_tokenization_spaces": True,
        **special_tokens(),
    }


def write_files(bpe_gz: bytes, out: Path) -> None:
    """Write the four tokenizer files into `out`."""
    digest = hashlib.sha256(bpe_gz).hexdigest()
    if digest != BPE_SHA256:
        raise SystemExit(f"BPE file sha256 is {digest}, expected {BPE_SHA256}.")
    merges = read_merges(bpe_gz)
    vocab = build_vocab(merges)
    out.mkdir(parents=True, exist_ok=True)
    # Same layout as the files on the Hugging Face hub, so a byte diff against them is empty.
    (out / "vocab.json").write_text(
        json.dumps(vocab, indent=2, ensure_ascii=False), encoding="utf-8", newline="\n"
    )
    merge_text = "\n".join([MERGES_HEADER, *(" ".join(m) for m in merges)]) + "\n"
    (out / "merges.txt").write_text(merge_text, encoding="utf-8", newline="\n")
    for name, data in (
        ("tokenizer_config.json", tokenizer_config()),
        ("special_tokens_map.json", special_tokens()),
    ):
        (out / name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8", newline="\n")


def bpe_from_wheel(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(BPE_MEMBER)


def download_wheel(into: Path) -> Path:
    """pip-download the open_clip_torch wheel (no dependencies, nothing installed)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    subprocess.run([*cmd, WHEEL_REQUIREMENT, "-d", str(into)], check=True)
    wheels = sorted(into.glob("open_clip_torch-*.whl"))
    if not wheels:
        raise SystemExit(f"pip did not download a wheel into {into}.")
    return wheels[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--wheel", type=Path, help="an open_clip_torch wheel already downloaded")
    source.add_argument("--bpe", type=Path, help="bpe_simple_vocab_16e6.txt.gz itself")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)

    if args.bpe:
        bpe_gz = args.bpe.read_bytes()
    elif args.wheel:
        bpe_gz = bpe_from_wheel(args.wheel)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            bpe_gz = bpe_from_wheel(download_wheel(Path(tmp)))
    write_files(bpe_gz, args.out)
    print(f"Wrote CLIP tokenizer files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
