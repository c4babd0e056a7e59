"""Oracle: diffusers' own kohya loader reads our SD2 and SDXL files and gives our model's outputs.

Runs in the Forge profile (diffusers' PEFT backend needs transformers >= 4.34).

SD2: kohya writes proj_in/proj_out LoRA weights as 1x1 convs [r, C, 1, 1] (its SD2 UNet
uses conv projections); we write the same. diffusers 0.31 builds SD2 with Linear
projections and its loader does not reshape, so it refuses that form with a size
mismatch, for kohya's own files as for ours. The same file with those weights as
[r, C] loads there with identical outputs; the WebUI, Forge, ComfyUI and our reader
take either form.
"""

from __future__ import annotations

import pytest
import torch
from peft.tuners.lora import LoraLayer

from lora_trainer.config import TrainConfig
from lora_trainer.lora.kohya_file import save_kohya_lora
from lora_trainer.lora.network import ADAPTER
from lora_trainer.models.tiny_sd2 import build_tiny_sd2
from lora_trainer.models.tiny_sdxl import build_tiny_sdxl
from lora_trainer.train.conditioning import PromptOptions, encode_conditioning
from lora_trainer.train.job import inject_network

pytestmark = pytest.mark.interop
CPU = torch.device("cpu")
PROMPT = ["sks toy, a red circle"]


def _randomise(network, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in network.layers():
            for weight in (layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight):
                weight.copy_(torch.randn(weight.shape, generator=gen) * 0.2)


def _outputs(bundle):
    options = PromptOptions(resolution=(64, 64))
    with torch.no_grad():
        cond = encode_conditioning(bundle, PROMPT, {"original_size": [(96, 80)]}, CPU, options)
        latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
        out = bundle.unet(
            latents, torch.tensor([500]), cond.context, added_cond_kwargs=cond.added_cond_kwargs
        ).sample
    pooled = (cond.added_cond_kwargs or {}).get("text_embeds")
    return cond.context, pooled, out


def _lora_layers(module) -> int:
    return sum(isinstance(m, LoraLayer) for m in module.modules())


def _our_file(bundle, tmp_path, alpha: float):
    network = inject_network(bundle, TrainConfig(network_dim=4, network_alpha=alpha), seed=0)
    _randomise(network, seed=1)
    ours = _outputs(bundle)
    tensors = {k: v.clone() for k, v in network.kohya_state_dict().items()}
    counts = {part: len(list(network.layers(part))) for part in network.part_names}
    network.remove()
    base = _outputs(bundle)
    assert (base[2] - ours[2]).abs().max() > 1e-3  # the LoRA really changes the output
    return tensors, ours, counts


def _assert_same(theirs, ours) -> None:
    for a, b in zip(theirs, ours):
        if a is not None:
            assert (a - b).abs().max() < 1e-4


@pytest.mark.parametrize("alpha", [1.0, 8.0])
def test_diffusers_loads_our_sdxl_file_with_identical_outputs(tmp_path, alpha):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    bundle = build_tiny_sdxl()
    tensors, ours, counts = _our_file(bundle, tmp_path, alpha)
    path = tmp_path / "sdxl.safetensors"
    save_kohya_lora(path, tensors, {"ss_network_module": "networks.lora"})
    pipe = StableDiffusionXLPipeline(
        vae=bundle.vae,
        text_encoder=bundle.text_encoders[0],
        text_encoder_2=bundle.text_encoders[1],
        tokenizer=bundle.tokenizers[0],
        tokenizer_2=bundle.tokenizers[1],
        unet=bundle.unet,
        scheduler=EulerDiscreteScheduler.from_config(bundle.scheduler_config),
    )
    pipe.load_lora_weights(str(tmp_path), weight_name=path.name, adapter_name="ours")
    assert _lora_layers(pipe.unet) == counts["unet"]
    assert _lora_layers(pipe.text_encoder) == counts["te1"]
    assert _lora_layers(pipe.text_encoder_2) == counts["te2"]
    _assert_same(_outputs(bundle), ours)


def _sd2_pipe(bundle):
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=bundle.vae,
        text_encoder=bundle.text_encoder,
        tokenizer=bundle.tokenizer,
        unet=bundle.unet,
        scheduler=DDPMScheduler.from_config(bundle.scheduler_config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def test_diffusers_loads_our_sd2_file_with_linear_projections(tmp_path):
    bundle = build_tiny_sd2()
    tensors, ours, counts = _our_file(bundle, tmp_path, alpha=2.0)
    flat = {k: v.flatten(1) if v.ndim == 4 else v for k, v in tensors.items()}
    path = tmp_path / "sd2-2d.safetensors"
    save_kohya_lora(path, flat, {"ss_network_module": "networks.lora"})
    pipe = _sd2_pipe(bundle)
    pipe.load_lora_weights(str(tmp_path), weight_name=path.name, adapter_name="ours")
    assert _lora_layers(pipe.unet) == counts["unet"]
    assert _lora_layers(pipe.text_encoder) == counts["te"]
    _assert_same(_outputs(bundle), ours)


def test_diffusers_refuses_kohyas_sd2_projection_shapes(tmp_path):
    bundle = build_tiny_sd2()
    tensors, _ours, _counts = _our_file(bundle, tmp_path, alpha=2.0)
    assert tensors["lora_unet_mid_block_attentions_0_proj_in.lora_down.weight"].ndim == 4
    path = tmp_path / "sd2.safetensors"
    save_kohya_lora(path, tensors, {"ss_network_module": "networks.lora"})
    with pytest.raises((RuntimeError, ValueError), match="size mismatch"):
        _sd2_pipe(bundle).load_lora_weights(str(tmp_path), weight_name=path.name, adapter_name="k")
