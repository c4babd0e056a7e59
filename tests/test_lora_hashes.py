"""Hashes against values written by kohya's train_network.py and by a real A1111 WebUI."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import safetensors.torch
from safetensors.torch import load_file

from lora_trainer.errors import LoraFileError, ModelError
from lora_trainer.lora.hashes import (
    file_model_hash,
    legacy_hash_from_bytes,
    legacy_model_hash,
    model_hash_from_bytes,
    precalculate_hashes,
    sha256_file,
)

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
KOHYA_FILE = FIXTURES / "kohya_sd15_rank4.safetensors"


@pytest.fixture(scope="module")
def fixture_metadata() -> dict[str, str]:
    return json.loads((FIXTURES / "kohya_sd15_rank4.metadata.json").read_text())


@pytest.fixture(scope="module")
def fixture_tensors():
    return load_file(KOHYA_FILE)


def test_file_model_hash_matches_kohya(fixture_metadata):
    assert file_model_hash(KOHYA_FILE) == fixture_metadata["sshs_model_hash"]


def test_model_hash_from_bytes_matches_kohya(fixture_metadata):
    assert model_hash_from_bytes(KOHYA_FILE.read_bytes()) == fixture_metadata["sshs_model_hash"]


def test_precalculate_reproduces_both_kohya_hashes(fixture_tensors, fixture_metadata):
    ss_only = {k: v for k, v in fixture_metadata.items() if k.startswith("ss_")}
    assert precalculate_hashes(fixture_tensors, ss_only) == (
        fixture_metadata["sshs_model_hash"],
        "2993ca6c",
    )


def test_precalculate_ignores_non_ss_metadata(fixture_tensors, fixture_metadata):
    # modelspec.* and the sshs_* values themselves must not change the hashes (kohya filters).
    everything = dict(fixture_metadata, **{"modelspec.title": "renamed by a user"})
    assert precalculate_hashes(fixture_tensors, everything)[1] == "2993ca6c"


def test_legacy_hash_does_not_depend_on_metadata_order(fixture_tensors, fixture_metadata):
    # safetensors may write the header keys in any order; only the header length moves the
    # 1 MiB window, and that length is the same for any order.
    ss_only = {k: v for k, v in fixture_metadata.items() if k.startswith("ss_")}
    forward = safetensors.torch.save(fixture_tensors, ss_only)
    backward = safetensors.torch.save(fixture_tensors, dict(reversed(list(ss_only.items()))))
    assert forward[:8] == backward[:8]
    assert legacy_hash_from_bytes(forward) == legacy_hash_from_bytes(backward) == "2993ca6c"


def test_legacy_hash_of_saved_file_differs_as_documented():
    # KOHYA.md: the same slice of the saved file (full metadata) gives ba370c88, not 2993ca6c.
    assert legacy_model_hash(KOHYA_FILE) == "ba370c88"
    assert legacy_hash_from_bytes(KOHYA_FILE.read_bytes()) == "ba370c88"


def test_sha256_file_matches_documented_value():
    expected = "d4367d37f38fbbcc7ff09c32acd58d3a1f89b86027dccd94816859cc9f4c75b0"
    assert sha256_file(KOHYA_FILE) == expected


def test_checkpoint_hashes_match_the_real_webui():
    # a1111_tiny_sd1_state_dict.json: sd_checkpoint_info.hash / .sha256 of tiny-sd1.safetensors.
    info = json.loads((FIXTURES / "a1111_tiny_sd1_state_dict.json").read_text())["facts"][
        "sd_checkpoint_info"
    ]
    checkpoint = FIXTURES / "tiny-sd1.safetensors"
    assert legacy_model_hash(checkpoint) == info["hash"] == "bf110a88"
    assert sha256_file(checkpoint) == info["sha256"]


def test_sha256_file_streams_multiple_chunks(tmp_path):
    data = os.urandom(2 * 1024 * 1024 + 123)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_short_file_legacy_hash_is_empty_window(tmp_path):
    # Files shorter than 1 MiB hash an empty slice, as kohya and A1111 do.
    path = tmp_path / "small.bin"
    path.write_bytes(b"x" * 1000)
    assert legacy_model_hash(path) == hashlib.sha256(b"").hexdigest()[:8]


def test_damaged_header_is_reported():
    bad = (10**9).to_bytes(8, "little") + b"{}"
    with pytest.raises(LoraFileError, match="header length"):
        model_hash_from_bytes(bad)
    with pytest.raises(LoraFileError, match="too short"):
        model_hash_from_bytes(b"abc")


def test_missing_files_give_user_errors(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(LoraFileError, match=r"nope\.safetensors"):
        file_model_hash(missing)
    with pytest.raises(ModelError, match=r"nope\.safetensors"):
        sha256_file(missing)
    with pytest.raises(ModelError, match=r"nope\.safetensors"):
        legacy_model_hash(missing)
