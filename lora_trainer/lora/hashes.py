"""The hashes kohya and A1111 write and check: sshs_model_hash, sshs_legacy_hash, model hashes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import safetensors.torch
import torch

from ..errors import LoraFileError, ModelError

CHUNK = 1024 * 1024
# The old A1111 / additional-networks hash looks at 64 KiB starting 1 MiB into the file.
LEGACY_OFFSET = 0x100000
LEGACY_LENGTH = 0x10000


def _data_offset(header_len_bytes: bytes, total: int, where: str) -> int:
    """Offset of the tensor data in a safetensors file: 8-byte length plus the JSON header."""
    if len(header_len_bytes) < 8:
        raise LoraFileError("file is too short to be a safetensors file", where=where)
    offset = 8 + int.from_bytes(header_len_bytes, "little")
    if offset > total:
        raise LoraFileError(
            "not a safetensors file: its header length points past the end of the file",
            where=where,
            fix="the file is damaged or not a .safetensors file; download or save it again",
        )
    return offset


def model_hash_from_bytes(data: bytes) -> str:
    """sshs_model_hash: sha256 of everything after the 8-byte length and the JSON header."""
    offset = _data_offset(data[:8], len(data), "in-memory safetensors data")
    return hashlib.sha256(memoryview(data)[offset:]).hexdigest()


def legacy_hash_from_bytes(data: bytes) -> str:
    """sshs_legacy_hash: first 8 hex digits of sha256 of bytes [1 MiB, 1 MiB + 64 KiB)."""
    # A file shorter than 1 MiB hashes an empty slice, exactly as kohya and A1111 do.
    return hashlib.sha256(data[LEGACY_OFFSET : LEGACY_OFFSET + LEGACY_LENGTH]).hexdigest()[:8]


def precalculate_hashes(
    tensors: dict[str, torch.Tensor], metadata: dict[str, str]
) -> tuple[str, str]:
    """(sshs_model_hash, sshs_legacy_hash) the way kohya computes them before saving.

    kohya serialises in memory with only the ss_* metadata, so that user edits of other
    metadata keys later do not change the legacy hash; the legacy hash therefore cannot be
    recomputed from the saved file's own bytes.
    """
    training_only = {k: v for k, v in metadata.items() if k.startswith("ss_")}
    data = safetensors.torch.save(tensors, training_only)
    return model_hash_from_bytes(data), legacy_hash_from_bytes(data)


def file_model_hash(path: str | os.PathLike[str]) -> str:
    """sshs_model_hash of a saved .safetensors file, streamed (the file is never fully in memory)."""
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            total = os.fstat(f.fileno()).st_size
            f.seek(_data_offset(f.read(8), total, str(path)))
            for chunk in iter(lambda: f.read(CHUNK), b""):
                digest.update(chunk)
    except OSError as exc:
        raise LoraFileError(
            f"cannot read the file to hash it: {exc.strerror or exc}", where=str(path)
        ) from None
    return digest.hexdigest()


def legacy_model_hash(path: str | os.PathLike[str]) -> str:
    """Old 8-hex model hash of a checkpoint (kohya's ss_sd_model_hash, A1111's old hash)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            f.seek(LEGACY_OFFSET)
            return hashlib.sha256(f.read(LEGACY_LENGTH)).hexdigest()[:8]
    except OSError as exc:
        raise ModelError(
            f"cannot read the model file to hash it: {exc.strerror or exc}", where=str(path)
        ) from None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Full sha256 of a file, read in 1 MiB chunks (kohya's ss_new_sd_model_hash)."""
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ModelError(
            f"cannot read the model file to hash it: {exc.strerror or exc}", where=str(path)
        ) from None
    return digest.hexdigest()
