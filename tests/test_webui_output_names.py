"""Output names in the Lora folder: refusals and the free name they suggest."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_trainer.errors import ConfigError
from lora_trainer.webui.output import check_overwrite, free_name, plan_output


def _plan(lora_dir: Path, tmp_path: Path, name: str = "toy"):
    return plan_output(lora_dir, "", name, tmp_path / "outputs")


def test_free_name_skips_names_used_by_loras_anywhere_below(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "toy.safetensors").write_bytes(b"x")
    (tmp_path / "toy_2.pt").write_bytes(b"x")
    assert free_name(tmp_path, "toy") == "toy_3"
    assert free_name(tmp_path, "other") == "other"


def test_leftover_card_is_not_suggested_again(tmp_path):
    lora_dir = tmp_path / "Lora"
    lora_dir.mkdir()
    (lora_dir / "toy.json").write_text("{}")  # the LoRA file was deleted, its card stayed
    with pytest.raises(ConfigError) as err:
        check_overwrite(_plan(lora_dir, tmp_path), lora_dir, overwrite=False)
    assert "'toy_2'" in str(err.value)
    check_overwrite(_plan(lora_dir, tmp_path), lora_dir, overwrite=True)


def test_same_name_in_another_subfolder_is_refused_even_with_consent(tmp_path):
    lora_dir = tmp_path / "Lora"
    (lora_dir / "old").mkdir(parents=True)
    (lora_dir / "old" / "toy.safetensors").write_bytes(b"x")
    with pytest.raises(ConfigError, match="ambiguous"):
        check_overwrite(_plan(lora_dir, tmp_path), lora_dir, overwrite=True)
