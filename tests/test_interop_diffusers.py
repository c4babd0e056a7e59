"""Oracle: diffusers' own kohya loader reads our files and gives our model's outputs.

diffusers' PEFT-backed LoRA loading needs transformers >= 4.34, so these run in the
Forge profile (`bash dev/run test-forge`), not under A1111's transformers 4.30.2.
"""

from __future__ import annotations

import pytest
import torch
from peft.tuners.lora import LoraLayer

from lora_trainer.config import TrainConfig
from lora_trainer.lora.kohya_file import load_kohya_lora, save_kohya_lora
from lora_trainer.lora.network import ADAPTER
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.train.job import inject_network

pytestmark = pytest.mark.interop


def _randomise(network, seed: int) -> None:
    # a trained LoRA has non-zero up weights; random ones exercise every module
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in network.layers():
            for weight in (layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight):
                weight.copy_(torch.randn(weight.shape, generator=gen) * 0.2)


def _outputs(bundle):
    ids = bundle.tokenizer(
        ["sks toy, a red circle"], padding="max_length", max_length=77, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        context = bundle.text_encoder(ids).last_hidden_state
        latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
        out = bundle.unet(latents, torch.tensor([500]), context).sample
    return context, out


def _lora_layer_count(module) -> int:
    return sum(isinstance(m, LoraLayer) for m in module.modules())


@pytest.mark.parametrize("alpha", [1.0, 8.0])
def test_diffusers_loads_our_file_with_identical_outputs(tmp_path, alpha):
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    bundle = build_tiny_sd1()
    config = TrainConfig(network_dim=4, network_alpha=alpha)
    network = inject_network(bundle, config, seed=0)
    _randomise(network, seed=1)
    our_context, our_out = _outputs(bundle)
    path = tmp_path / "ours.safetensors"
    save_kohya_lora(path, network.kohya_state_dict(), {"ss_network_module": "networks.lora"})
    n_unet, n_te = len(list(network.layers("unet"))), len(list(network.layers("te")))
    network.remove()
    _base_context, base_out = _outputs(bundle)
    assert (base_out - our_out).abs().max() > 1e-3  # the LoRA really changes the output

    pipe = StableDiffusionPipeline(
        vae=bundle.vae,
        text_encoder=bundle.text_encoder,
        tokenizer=bundle.tokenizer,
        unet=bundle.unet,
        scheduler=DDPMScheduler.from_config(bundle.scheduler_config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.load_lora_weights(str(tmp_path), weight_name=path.name, adapter_name="ours")
    assert _lora_layer_count(pipe.unet) == n_unet
    assert _lora_layer_count(pipe.text_encoder) == n_te
    their_context, their_out = _outputs(bundle)
    assert (their_context - our_context).abs().max() < 1e-4
    assert (their_out - our_out).abs().max() < 1e-4


def test_diffusers_loads_the_kohya_fixture_like_our_reader(fixtures):
    # sanity of the oracle itself: the real kohya file loads in diffusers' converter
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_lora_to_diffusers

    lora = load_kohya_lora(fixtures / "kohya_sd15_rank4.safetensors")
    converted, _alphas = _convert_non_diffusers_lora_to_diffusers(dict(lora.tensors))
    assert sum(k.startswith("unet.") for k in converted) == 2 * 192
    assert sum(k.startswith("text_encoder.") for k in converted) == 2 * 72
