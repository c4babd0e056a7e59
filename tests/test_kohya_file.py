"""Reading and writing kohya LoRA files, checked against files made by kohya's own tools."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import safetensors.torch
import torch
from safetensors import safe_open

from lora_trainer.errors import ConfigError, LoraFileError
from lora_trainer.lora import kohya_file
from lora_trainer.lora.hashes import file_model_hash, precalculate_hashes
from lora_trainer.lora.kohya_file import (
    KohyaLora,
    cast_for_save,
    load_kohya_lora,
    save_kohya_lora,
)

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
KOHYA_FILE = FIXTURES / "kohya_sd15_rank4.safetensors"
TINY_FILE = FIXTURES / "tiny-sd1-lora.safetensors"
PROJ_IN = "lora_unet_down_blocks_0_attentions_0_proj_in"
TO_Q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"


@pytest.fixture(scope="module")
def kohya() -> KohyaLora:
    return load_kohya_lora(KOHYA_FILE)


def key_list(name: str) -> dict[str, dict]:
    return json.loads((FIXTURES / name).read_text())["keys"]


def small_lora(rank: int = 2) -> dict[str, torch.Tensor]:
    return {
        f"{TO_Q}.lora_down.weight": torch.randn(rank, 8),
        f"{TO_Q}.lora_up.weight": torch.randn(8, rank),
        f"{TO_Q}.alpha": torch.tensor(1.0),
    }


def test_reads_the_kohya_fixture(kohya):
    assert len(kohya.tensors) == 792
    assert len(kohya.module_names()) == 264
    assert kohya.ranks() == {4}
    assert {kohya.alpha(m) for m in kohya.module_names()} == {2.0}
    assert kohya.text_encoder_prefixes() == ["lora_te"]
    assert kohya.metadata["ss_output_name"] == "kohya_sd15_rank4"
    assert kohya.path == KOHYA_FILE
    assert kohya.dtypes() == {torch.float16}


def test_fixture_keys_and_shapes_equal_kohyas_key_list(kohya):
    expected = key_list("kohya_sd15_lora_keys.json")
    assert {k: list(t.shape) for k, t in kohya.tensors.items()} == {
        k: v["shape"] for k, v in expected.items()
    }


def test_module_queries(kohya):
    assert PROJ_IN in kohya.module_names()
    assert kohya.is_conv(PROJ_IN)  # SD1 proj_in is a 1x1 Conv2d: 4-D weights
    assert kohya.kernel_size(PROJ_IN) == (1, 1)
    assert not kohya.is_conv(TO_Q)
    assert kohya.kernel_size(TO_Q) is None
    assert kohya.rank(TO_Q) == 4


def test_reads_the_tiny_webui_lora():
    lora = load_kohya_lora(TINY_FILE)
    assert len(lora.module_names()) == 3
    assert lora.ranks() == {4}
    assert {lora.alpha(m) for m in lora.module_names()} == {4.0}
    assert lora.metadata["ss_network_alpha"] == "4.0"


def test_missing_alpha_means_alpha_equals_rank():
    tensors = small_lora(rank=3)
    del tensors[f"{TO_Q}.alpha"]
    assert KohyaLora(tensors, {}, None).alpha(TO_Q) == 3.0


def test_cast_for_save_dtypes_and_alpha_shape():
    source = small_lora()
    source[f"{TO_Q}.alpha"] = torch.tensor([2.0])  # a 1-element alpha becomes 0-dim
    for precision, dtype in ((None, torch.float32), ("float", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)):  # fmt: skip
        out = cast_for_save(source, precision)
        assert {t.dtype for t in out.values()} == {dtype}
        assert out[f"{TO_Q}.alpha"].shape == ()
        assert float(out[f"{TO_Q}.alpha"]) == 2.0


def test_cast_for_save_copies_detaches_and_makes_contiguous():
    weight = torch.randn(8, 2, requires_grad=True)
    source = {f"{TO_Q}.lora_up.weight": weight, f"{TO_Q}.lora_down.weight": weight.t(), f"{TO_Q}.alpha": 4}  # fmt: skip
    out = cast_for_save(source, None)
    for key, tensor in out.items():
        assert tensor.device.type == "cpu"
        assert tensor.is_contiguous()
        assert not tensor.requires_grad
        assert tensor.data_ptr() != getattr(source[key], "data_ptr", lambda: 0)()
    assert out[f"{TO_Q}.alpha"].shape == () and float(out[f"{TO_Q}.alpha"]) == 4.0
    assert torch.equal(out[f"{TO_Q}.lora_down.weight"], weight.t().detach())


def test_cast_for_save_rejects_unknown_precision():
    with pytest.raises(ConfigError, match="fp16"):
        cast_for_save(small_lora(), "fp8")


def test_resaving_the_fixture_reproduces_kohyas_hashes(tmp_path, kohya):
    out = tmp_path / "copy.safetensors"
    save_kohya_lora(out, kohya.tensors, kohya.metadata)
    again = load_kohya_lora(out)
    assert again.metadata == kohya.metadata  # same ss_* in, same sshs_* out
    assert file_model_hash(out) == kohya.metadata["sshs_model_hash"]
    assert out.stat().st_size == KOHYA_FILE.stat().st_size


def test_save_load_round_trip_with_hashes(tmp_path):
    tensors = cast_for_save(small_lora(), "fp16")
    path = tmp_path / "out.safetensors"
    save_kohya_lora(path, tensors, {"ss_network_dim": "2", "modelspec.title": "x"})
    lora = load_kohya_lora(path)
    assert lora.metadata["ss_network_dim"] == "2" and lora.metadata["modelspec.title"] == "x"
    assert lora.metadata["sshs_model_hash"] == file_model_hash(path)
    assert (lora.metadata["sshs_model_hash"], lora.metadata["sshs_legacy_hash"]) == precalculate_hashes(tensors, lora.metadata)  # fmt: skip
    for key, tensor in tensors.items():
        assert torch.equal(lora.tensors[key], tensor)
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]


def test_locon_key_list_round_trip(tmp_path):
    keys = key_list("kohya_sd15_locon_keys.json")
    tensors = {
        k: torch.full(v["shape"], 1.0)
        if k.endswith("alpha")
        else torch.zeros(v["shape"], dtype=torch.float16)
        for k, v in keys.items()
    }
    path = tmp_path / "locon.safetensors"
    save_kohya_lora(path, tensors, {})
    lora = load_kohya_lora(path)
    assert len(lora.module_names()) == 350
    assert any(lora.kernel_size(m) == (3, 3) for m in lora.module_names())


def test_refuses_to_overwrite_unless_asked(tmp_path):
    path = tmp_path / "mine.safetensors"
    path.write_bytes(b"precious")
    with pytest.raises(LoraFileError, match="--overwrite") as info:
        save_kohya_lora(path, small_lora(), {})
    assert "output_name" in str(info.value) and str(path) in str(info.value)
    assert path.read_bytes() == b"precious"
    save_kohya_lora(path, small_lora(), {}, overwrite=True)
    assert load_kohya_lora(path).ranks() == {2}


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "mine.safetensors"
    path.write_bytes(b"precious")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(kohya_file.os, "replace", broken_replace)
    with pytest.raises(LoraFileError, match="No space left"):
        save_kohya_lora(path, small_lora(), {}, overwrite=True)
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["mine.safetensors"]


def test_creates_missing_output_folder(tmp_path):
    path = tmp_path / "a" / "b" / "x.safetensors"
    save_kohya_lora(path, small_lora(), {})
    assert path.is_file()


@pytest.mark.parametrize(
    ("metadata", "name", "match"),
    [
        ({"ss_network_dim": 4}, "x.safetensors", "must all be strings"),
        ({}, "x.ckpt", r"\.safetensors"),
    ],
)
def test_save_rejects_bad_input(tmp_path, metadata, name, match):
    with pytest.raises(LoraFileError, match=match):
        save_kohya_lora(tmp_path / name, small_lora(), metadata)
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_incomplete_modules(tmp_path):
    tensors = small_lora()
    del tensors[f"{TO_Q}.lora_up.weight"]
    with pytest.raises(LoraFileError, match=r"no lora_up\.weight"):
        save_kohya_lora(tmp_path / "x.safetensors", tensors, {})


def write(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    safetensors.torch.save_file(tensors, str(path))
    return path


@pytest.mark.parametrize(
    ("tensors", "match"),
    [
        ({"unet.down_blocks.0.attn.to_q.lora_A.weight": torch.zeros(2, 4)}, "PEFT / diffusers LoRA"),
        ({"unet.down_blocks.0.processor.to_q_lora.down.weight": torch.zeros(2, 4)}, "attention-processor"),
        ({"lora_unet_x.hada_w1_a": torch.zeros(2, 4)}, "LyCORIS"),
        ({"model.diffusion_model.out.2.bias": torch.zeros(4)}, "full Stable Diffusion checkpoint"),
        ({"emb_params": torch.zeros(1, 768)}, "textual-inversion embedding"),
        ({f"{TO_Q}.lora_down.weight": torch.zeros(2, 8)}, "no lora_up.weight"),
        ({f"{TO_Q}.lora_up.weight": torch.zeros(8, 2), f"{TO_Q}.alpha": torch.tensor(1.0)}, "no lora_down.weight"),
        ({f"{TO_Q}.lora_down.weight": torch.zeros(4, 8), f"{TO_Q}.lora_up.weight": torch.zeros(8, 2)}, "do not fit"),
        ({**small_lora(), f"{TO_Q}.dora_scale": torch.zeros(8)}, "not plain kohya LoRA keys"),
    ],
)  # fmt: skip
def test_load_explains_what_is_wrong(tmp_path, tensors, match):
    path = write(tmp_path / "bad.safetensors", tensors)
    with pytest.raises(LoraFileError, match=match) as info:
        load_kohya_lora(path)
    assert str(path) in str(info.value)


def test_load_rejects_missing_folder_and_non_safetensors(tmp_path):
    with pytest.raises(LoraFileError, match="not found"):
        load_kohya_lora(tmp_path / "missing.safetensors")
    with pytest.raises(LoraFileError, match="folder"):
        load_kohya_lora(tmp_path)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(64))
    with pytest.raises(LoraFileError, match=r"not a valid \.safetensors"):
        load_kohya_lora(garbage)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(TINY_FILE.read_bytes()[:200])
    with pytest.raises(LoraFileError, match="damaged"):
        load_kohya_lora(truncated)
    pickle = tmp_path / "old.ckpt"
    pickle.write_bytes(b"PK")
    with pytest.raises(LoraFileError, match="safetensors version"):
        load_kohya_lora(pickle)


def test_saved_alpha_is_0_dim_in_save_precision(tmp_path):
    path = tmp_path / "x.safetensors"
    save_kohya_lora(path, cast_for_save(small_lora(), "bf16"), {})
    with safe_open(str(path), framework="pt") as f:
        alpha = f.get_tensor(f"{TO_Q}.alpha")
    assert alpha.shape == () and alpha.dtype == torch.bfloat16
