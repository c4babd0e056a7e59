"""`python -m lora_trainer convert`: SD2 proj_in/proj_out between kohya's [r, C, 1, 1] and diffusers' [r, C]."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lora_trainer.cli import main
from lora_trainer.config import TrainConfig
from lora_trainer.errors import LoraFileError
from lora_trainer.lora.kohya_file import load_kohya_lora, save_kohya_lora
from lora_trainer.lora.network import ADAPTER
from lora_trainer.lora.proj_convert import convert_file, lora_family
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.models.tiny_sd2 import build_tiny_sd2
from lora_trainer.train.job import inject_network

SD2_META = {"ss_base_model_version": "sd_v2_v", "ss_v2": "True", "ss_output_name": "toy"}
CPU = torch.device("cpu")


def _randomise(network, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in network.layers():
            for weight in (layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight):
                weight.copy_(torch.randn(weight.shape, generator=gen) * 0.2)


def _unet_output(bundle) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    latents = torch.randn(1, 4, 8, 8, generator=gen)
    context = torch.randn(1, 77, bundle.unet.config.cross_attention_dim, generator=gen)
    with torch.no_grad():
        return bundle.unet(latents, torch.tensor([500]), context).sample


def _sd2_file(folder: Path, metadata: dict | None = None, **options) -> tuple[Path, torch.Tensor]:
    """A trained-looking SD2 LoRA file in kohya's form, and the UNet output with it applied."""
    bundle = build_tiny_sd2()
    network = inject_network(bundle, TrainConfig(network_dim=4, network_alpha=2.0, **options), 0)
    _randomise(network)
    output = _unet_output(bundle)
    path = folder / "toy.safetensors"
    save_kohya_lora(
        path, network.kohya_state_dict(), dict(SD2_META if metadata is None else metadata)
    )
    network.remove()
    return path, output


@pytest.fixture
def sd2_file(tmp_path) -> tuple[Path, torch.Tensor]:
    return _sd2_file(tmp_path)


def test_convert_writes_2d_projections_and_keeps_everything_else(sd2_file):
    path, _ = sd2_file
    result = convert_file(path)
    assert result.path == path.with_name("toy-diffusers.safetensors") and result.family == "sd2"
    before, after = load_kohya_lora(path), load_kohya_lora(result.path)
    assert result.modules and all(m.endswith(("_proj_in", "_proj_out")) for m in result.modules)
    assert len(result.modules) == len([m for m in before.module_names() if "_proj_" in m])
    assert before.tensors.keys() == after.tensors.keys()
    for key, tensor in before.tensors.items():
        if key.split(".")[0] in result.modules and key.endswith("weight"):
            assert tensor.ndim == 4 and after.tensors[key].ndim == 2
            assert torch.equal(after.tensors[key], tensor.flatten(1))
        else:
            assert (
                torch.equal(after.tensors[key], tensor) and after.tensors[key].shape == tensor.shape
            )
    same = {k: v for k, v in before.metadata.items() if k != "sshs_legacy_hash"}
    assert {k: after.metadata[k] for k in same} == same  # the tensor bytes did not change
    assert after.metadata["sshs_model_hash"] == before.metadata["sshs_model_hash"]


def test_round_trip_back_to_kohya_form_is_exact(sd2_file, tmp_path):
    path, _ = sd2_file
    flat = convert_file(path, tmp_path / "flat.safetensors").path
    back = convert_file(flat, tmp_path / "back.safetensors", to="kohya").path
    original, again = load_kohya_lora(path), load_kohya_lora(back)
    assert all(
        torch.equal(t, again.tensors[k]) and t.shape == again.tensors[k].shape
        for k, t in original.tensors.items()
    )


def test_our_reader_takes_both_forms_with_the_same_output(sd2_file):
    path, expected = sd2_file
    flat = convert_file(path).path
    for file in (path, flat):
        bundle = build_tiny_sd2()
        network = inject_network(bundle, TrainConfig(network_dim=4, network_alpha=2.0), seed=9)
        network.load_kohya_state_dict(load_kohya_lora(file).tensors, str(file))
        assert torch.equal(_unet_output(bundle), expected)
        network.remove()


def test_locon_3x3_convs_stay_4d(tmp_path):
    path, _ = _sd2_file(tmp_path, network_args=["conv_dim=2", "conv_alpha=1"])
    before = load_kohya_lora(path)
    after = load_kohya_lora(convert_file(path).path)
    convs = [m for m in before.module_names() if before.kernel_size(m) == (3, 3)]
    assert convs and all(after.down(m).shape == before.down(m).shape for m in convs)


def test_cli_refuses_to_overwrite_without_force(sd2_file, capsys):
    path, _ = sd2_file
    target = path.with_name("toy-diffusers.safetensors")
    assert main(["convert", str(path)]) == 0
    assert "Wrote" in capsys.readouterr().out and target.is_file()
    stamp = target.stat().st_mtime_ns
    assert main(["convert", str(path)]) == 2
    assert "the output file already exists" in capsys.readouterr().err
    assert target.stat().st_mtime_ns == stamp
    # in place, with --force: atomic replace, no temporary file left behind
    assert main(["convert", str(path), "-o", str(path), "--force"]) == 0
    assert load_kohya_lora(path).down("lora_unet_mid_block_attentions_0_proj_in").ndim == 2
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "toy-diffusers.safetensors", "toy.safetensors",
    ]  # fmt: skip


def test_cli_refuses_an_already_converted_file(sd2_file, capsys):
    path, _ = sd2_file
    flat = convert_file(path).path
    assert main(["convert", str(flat), "-o", str(flat.with_name("again.safetensors"))]) == 2
    assert "already in the diffusers form" in capsys.readouterr().err


def test_only_sd2_loras_are_converted(tmp_path):
    sd1 = build_tiny_sd1()
    network = inject_network(sd1, TrainConfig(network_dim=4), seed=0)
    path = tmp_path / "sd1.safetensors"
    save_kohya_lora(path, network.kohya_state_dict(), {"ss_base_model_version": "sd_v1"})
    with pytest.raises(LoraFileError, match=r"this is an SD1\.x LoRA"):
        convert_file(path)
    assert not (tmp_path / "sd1-diffusers.safetensors").exists()


def test_unknown_family_needs_sd2_flag(tmp_path):
    path, _ = _sd2_file(tmp_path, metadata={})
    assert lora_family(load_kohya_lora(path)) is None  # tiny widths say nothing
    with pytest.raises(LoraFileError, match=r"cannot tell whether this LoRA is for SD2\.x"):
        convert_file(path)
    assert main(["convert", str(path), "--sd2"]) == 0


def test_a_lora_without_projections_has_nothing_to_convert(tmp_path):
    path, _ = _sd2_file(tmp_path, network_train_text_encoder_only=True)
    with pytest.raises(LoraFileError, match="no proj_in/proj_out modules"):
        convert_file(path)


@pytest.mark.interop
def test_diffusers_loads_the_converted_file_with_identical_outputs(sd2_file):
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from peft.tuners.lora import LoraLayer

    path, expected = sd2_file
    flat = convert_file(path).path
    bundle = build_tiny_sd2()
    pipe = StableDiffusionPipeline(
        vae=bundle.vae, text_encoder=bundle.text_encoder, tokenizer=bundle.tokenizer,
        unet=bundle.unet, scheduler=DDPMScheduler.from_config(bundle.scheduler_config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.load_lora_weights(str(flat.parent), weight_name=flat.name, adapter_name="converted")
    modules = load_kohya_lora(flat).module_names()
    unet_layers = sum(isinstance(m, LoraLayer) for m in pipe.unet.modules())
    assert unet_layers == len([m for m in modules if m.startswith("lora_unet_")])
    assert (_unet_output(bundle) - expected).abs().max() < 1e-4
