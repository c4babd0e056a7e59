"""kohya's block-wise LoRA: block_dims/alphas, conv_block_*, *_lr_weight presets and groups."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from empty_models import empty_bundle

from lora_trainer.config import BUILTIN_TINY_MODEL, TrainConfig, config_from_dict
from lora_trainer.demo import make_demo_dataset
from lora_trainer.errors import ConfigError
from lora_trainer.lora.blocks import SD_LAYOUT, SDXL_LAYOUT, block_index
from lora_trainer.lora.kohya_file import load_kohya_lora
from lora_trainer.lora.network_args import network_options
from lora_trainer.models.bundle import ModelBundle
from lora_trainer.models.tiny import build_tiny_sd1
from lora_trainer.presets import import_kohya_gui_json
from lora_trainer.train.job import inject_network, run_training
from lora_trainer.train.optimizers import param_groups

SD_LABELS = [f"IN{i:02d}" for i in range(12)] + ["MID"] + [f"OUT{i:02d}" for i in range(12)]
SDXL_LABELS = (
    ["BASE"]
    + [f"IN{i:02d}" for i in range(9)]
    + [f"MID{i:02d}" for i in range(3)]
    + [f"OUT{i:02d}" for i in range(9)]
    + ["OUT"]
)


def sd_label(module: str) -> str:
    """The LDM block (input_blocks.N / middle_block / output_blocks.N) of a diffusers-named module.

    Written from the LDM layout, independently of kohya's index arithmetic: level i of the
    down path holds input blocks 3i+1, 3i+2 and its downsampler is input block 3i+3; level i
    of the up path holds output blocks 3i, 3i+1, 3i+2, the upsampler sitting in 3i+2.
    """
    name = module.removeprefix("lora_unet_")
    if name.startswith("mid_block_"):
        return "MID"
    side, level, kind, layer = re.match(r"(down|up)_blocks_(\d)_([a-z]+)_(\d)_", name).groups()
    level, layer = int(level), int(layer)
    if side == "down":
        number = 3 * level + 3 if kind == "downsamplers" else 3 * level + 1 + layer
        return f"IN{number:02d}"
    number = 3 * level + 2 if kind == "upsamplers" else 3 * level + layer
    return f"OUT{number:02d}"


def sdxl_label(module: str) -> str:
    """kohya's documented SDXL order: input blocks 0-8, middle 0-2, output blocks 0-8."""
    kind, number = re.match(
        r"lora_unet_(input_blocks|middle_block|output_blocks)_(\d)_", module
    ).groups()
    prefix = {"input_blocks": "IN", "middle_block": "MID", "output_blocks": "OUT"}[kind]
    return f"{prefix}{int(number):02d}"


def fixture_modules(fixtures: Path, name: str) -> dict[str, list[int]]:
    """module name -> lora_down shape, from a kohya key fixture."""
    keys = json.loads((fixtures / name).read_text())["keys"]
    return {k.split(".")[0]: v["shape"] for k, v in keys.items() if k.endswith("lora_down.weight")}


def network_ranks(network) -> dict[str, tuple[int, float]]:
    tensors = network.kohya_state_dict()
    names = {k.split(".")[0] for k in tensors}
    return {
        n: (tensors[f"{n}.lora_down.weight"].shape[0], float(tensors[f"{n}.alpha"])) for n in names
    }


@pytest.fixture(scope="module")
def sd15_empty() -> ModelBundle:
    return empty_bundle("sd1")


@pytest.fixture(scope="module")
def sdxl_empty() -> ModelBundle:
    return empty_bundle("sdxl")


def _built(bundle: ModelBundle, config: TrainConfig) -> tuple[dict, list[dict]]:
    network = inject_network(bundle, config, seed=0)
    try:
        groups = param_groups(network, config, network_options(config))
        named = {id(p): n for n, p in _named_params(network)}
        return network_ranks(network), [
            {"name": g["name"], "lr": g["lr"], "modules": {named[id(p)] for p in g["params"]}}
            for g in groups
        ]
    finally:
        network.remove()


def _named_params(network):
    for target, layer in network.layers():
        yield target.kohya_name, layer.lora_A["default"].weight
        yield target.kohya_name, layer.lora_B["default"].weight


def test_block_index_matches_the_ldm_blocks_of_every_kohya_module(fixtures):
    for module in fixture_modules(fixtures, "kohya_sd15_locon_keys.json"):
        if module.startswith("lora_unet_"):
            assert SD_LABELS[block_index(module, sdxl=False)] == sd_label(module), module
    for module in fixture_modules(fixtures, "kohya_sdxl_lora_keys.json"):
        if module.startswith("lora_unet_"):
            assert SDXL_LABELS[block_index(module, sdxl=True)] == sdxl_label(module), module
    assert SD_LAYOUT.labels() == SD_LABELS and SDXL_LAYOUT.labels() == SDXL_LABELS


def test_block_dims_give_each_block_its_rank_and_alpha(sd15_empty, fixtures):
    dims = [(i * 7) % 5 for i in range(25)]  # several blocks at 0: no module there
    alphas = [0.5 + i for i in range(25)]
    conv_dims = [(i * 3) % 4 for i in range(25)]
    config = TrainConfig(
        network_dim=16,
        network_alpha=3.0,
        network_args=[
            "block_dims=" + ",".join(map(str, dims)),
            "block_alphas=" + ",".join(map(str, alphas)),
            "conv_block_dims=" + ",".join(map(str, conv_dims)),
        ],
    )
    ranks, _ = _built(sd15_empty, config)
    expected = {}
    for module, shape in fixture_modules(fixtures, "kohya_sd15_locon_keys.json").items():
        if not module.startswith("lora_unet_"):
            expected[module] = (16, 3.0)  # the text encoder keeps network_dim/alpha
            continue
        block = SD_LABELS.index(sd_label(module))
        conv3x3 = shape[2:] == [3, 3]
        rank = conv_dims[block] if conv3x3 else dims[block]
        if rank:  # conv_block_alphas not given: conv_alpha's default, 1
            expected[module] = (rank, 1.0 if conv3x3 else alphas[block])
    assert ranks == expected


def test_lr_weights_alone_keep_network_dim_and_drop_zero_blocks(sd15_empty, fixtures):
    config = TrainConfig(
        network_dim=4,
        unet_lr=1e-3,
        text_encoder_lr=5e-5,
        network_args=["down_lr_weight=linear", "mid_lr_weight=0", "block_lr_zero_threshold=0.5"],
    )
    ranks, groups = _built(sd15_empty, config)
    weights = [i / 11 for i in range(12)]  # kohya's "linear" over 12 down blocks
    weights = [w if w > 0.5 else 0 for w in weights] + [0] + [1.0] * 12
    unet = {m for m in fixture_modules(fixtures, "kohya_sd15_lora_keys.json") if "unet" in m}
    kept = {m for m in unet if weights[SD_LABELS.index(sd_label(m))] > 0}
    assert {m for m in ranks if "unet" in m} == kept and kept != unet
    assert all(ranks[m][0] == 4 for m in kept)
    by_name = {g["name"]: g for g in groups}
    assert by_name["te"]["lr"] == 5e-5
    for name, group in by_name.items():
        if name == "te":
            continue
        index = int(name.removeprefix("unet_block"))
        assert group["lr"] == pytest.approx(1e-3 * weights[index])
        assert all(SD_LABELS.index(sd_label(m)) == index for m in group["modules"])
    assert set().union(*(g["modules"] for g in groups if g["name"] != "te")) == kept


def test_sdxl_takes_23_blocks(sdxl_empty, fixtures):
    dims = [0] + [2] * 9 + [3, 0, 5] + [6] * 9 + [0]
    config = TrainConfig(
        network_args=[
            "block_dims=" + ",".join(map(str, dims)),
            "up_lr_weight=" + ",".join(["0.5"] * 9),
        ]
    )
    ranks, groups = _built(sdxl_empty, config)
    expected = {}
    for module in fixture_modules(fixtures, "kohya_sdxl_lora_keys.json"):
        if module.startswith("lora_unet_"):
            rank = dims[SDXL_LABELS.index(sdxl_label(module))]
            if rank:
                expected[module] = rank
        else:
            expected[module] = 4
    assert {m: r for m, (r, _) in ranks.items()} == expected
    up = [g for g in groups if g["name"].startswith("unet_block") and int(g["name"][10:]) >= 13]
    assert up and all(g["lr"] == pytest.approx(0.5e-4) for g in up)
    with pytest.raises(ConfigError, match=r"block_dims has 25 values, but SDXL models take 23"):
        inject_network(sdxl_empty, TrainConfig(network_args=["block_dims=" + "4," * 24 + "4"]), 0)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("sine", [math.sin(math.pi / 2 * i / 11) for i in range(12)]),
        ("cosine", [math.sin(math.pi / 2 * (11 - i) / 11) for i in range(12)]),
        ("linear+0.5", [0.5 + i / 11 for i in range(12)]),
        ("reverse_linear", [(11 - i) / 11 for i in range(12)]),
        ("zeros+.25", [0.25] * 12),
        ("1,,2", [1.0, 0.0, 2.0] + [1.0] * 9),  # kohya: empty = 0, missing = 1
    ],
)
def test_lr_weight_presets(value, expected):
    from lora_trainer.lora.blocks import block_lr_weights, parse_block_args

    weights, warnings = block_lr_weights(parse_block_args({"up_lr_weight": value}), SD_LAYOUT)
    assert weights == pytest.approx([1.0] * 13 + expected)
    assert bool(warnings) == ("," in value)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["block_dims=" + "4," * 23 + "4"],
            r"block_dims has 24 values, but SD1/SD2 models take 25 .*IN00-IN11, MID, OUT00-OUT11.* SDXL models 23",
        ),
        (["block_dims=" + "4," * 24 + "4", "block_alphas=1,1"], "block_alphas has 2 values"),
        (["block_alphas=" + "1," * 24 + "1"], "no effect without block_dims"),
        (["conv_block_dims=" + "1," * 24 + "1"], "no effect without block_dims"),
        (["block_lr_zero_threshold=0.1"], "no effect without block_dims"),
        (
            ["block_dims=" + "4," * 24 + "4", "conv_block_alphas=" + "1," * 24 + "1"],
            "without conv_block_dims",
        ),
        (
            ["down_lr_weight=" + "1," * 12 + "1"],
            r"13 values, but SD1/SD2 models have 12 such blocks \(IN00-IN11\)",
        ),
        (["mid_lr_weight=1,1,1,1"], "mid_lr_weight has 4 values"),
        (["down_lr_weight=wave"], "neither a preset nor a list"),
        (["down_lr_weight=0.5"], "neither a preset nor a list"),
        (["down_lr_weight=sine+x"], "not a number"),
        (["block_dims=" + "4," * 24 + "x"], "not a number"),
        (["block_dims=" + "4," * 24 + "2.5"], "whole numbers"),
        (
            ["block_dims=" + "4," * 24 + "4", "block_alphas=" + "1," * 24 + "0"],
            "block OUT11 alpha 0",
        ),
    ],
)
def test_block_args_errors(args, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"network_args": args})


def test_sdxl_flag_checks_sdxl_counts_before_loading():
    with pytest.raises(ConfigError, match="SDXL models have 9 such blocks"):
        config_from_dict({"sdxl": True, "network_args": ["down_lr_weight=" + "1," * 11 + "1"]})
    config_from_dict({"sdxl": True, "network_args": ["block_dims=" + "4," * 22 + "4"]})


def test_short_lr_list_is_filled_and_said(tmp_path):
    dataset = make_demo_dataset(tmp_path / "data", count=2)
    messages = []
    run_training(
        _run_config(dataset, tmp_path / "out", network_args=["down_lr_weight=0.5,0.5"]),
        emit=lambda e: messages.append(getattr(e, "text", "")),
    )
    assert any("blocks IN02-IN11 use 1.0" in m for m in messages)


def _run_config(dataset: Path, out: Path, **options) -> TrainConfig:
    values = {
        "pretrained_model_name_or_path": BUILTIN_TINY_MODEL,
        "train_data_dir": str(dataset),
        "output_dir": str(out),
        "output_name": "b",
        "caption_extension": ".txt",
        "resolution": "64",
        "max_train_steps": 1,
        "seed": 3,
        "device": "cpu",
        "network_train_unet_only": True,
        **options,
    }
    return config_from_dict(values)


def test_training_with_block_dims_writes_their_ranks_and_alphas(tmp_path):
    dataset = make_demo_dataset(tmp_path / "data", count=2)
    dims = ["0"] * 25
    dims[1], dims[2], dims[16], dims[17] = "2", "0", "6", "3"  # tiny UNet: IN01-02, OUT03-05
    alphas = ["1"] * 25
    alphas[16] = "1.5"
    args = ["block_dims=" + ",".join(dims), "block_alphas=" + ",".join(alphas)]
    result = run_training(_run_config(dataset, tmp_path / "out", network_args=args))
    lora = load_kohya_lora(result.output_path)
    ranks = {m: (lora.rank(m), lora.alpha(m)) for m in lora.module_names()}
    bundle = build_tiny_sd1()
    expected = {}
    for name in _tiny_unet_modules(bundle):
        block = SD_LABELS.index(sd_label(name))
        if int(dims[block]):
            expected[name] = (int(dims[block]), float(alphas[block]))
    assert ranks == expected and {r for r, _ in ranks.values()} == {2, 6, 3}
    assert json.loads(lora.metadata["ss_network_args"]) == {
        "block_dims": ",".join(dims), "block_alphas": ",".join(alphas), "dropout": None
    }  # fmt: skip
    assert lora.metadata["ss_network_dim"] == "4"


def _tiny_unet_modules(bundle) -> list[str]:
    from lora_trainer.lora.targets import unet_targets

    return [t.kohya_name for t in unet_targets(bundle.unet)]


def test_down_lr_weight_scales_each_blocks_first_step(tmp_path):
    # AdamW's first update is lr * sign(grad) per element: the lora_up weights (zero at the
    # start) end at exactly the block's rate, so each block's lr is visible in the file
    dataset = make_demo_dataset(tmp_path / "data", count=2)
    args = ["down_lr_weight=0.25,0.5,1.5", "up_lr_weight=0,0,0,0,2,0.75"]
    config = _run_config(dataset, tmp_path / "out", network_args=args, unet_lr=1e-3)
    lora = load_kohya_lora(run_training(config).output_path)
    weights = [0.25, 0.5, 1.5] + [1.0] * 9 + [1.0] + [0, 0, 0, 0, 2, 0.75] + [1.0] * 6
    seen = set()
    for module in lora.module_names():
        block = SD_LABELS.index(sd_label(module))
        seen.add(block)
        biggest = lora.up(module).abs().max().item()
        assert biggest == pytest.approx(1e-3 * weights[block], rel=0.02), module
    assert seen == {1, 2, 12, 17, 18}  # OUT03 (block 16) has weight 0: no module


def test_gui_import_passes_block_fields_as_network_args():
    result = import_kohya_gui_json(
        {
            "LoRA_type": "Standard",
            "down_lr_weight": "sine+.5",
            "mid_lr_weight": "",
            "block_lr_zero_threshold": "0.1",
            "block_dims": "",
            "dim_from_weights": False,
        }
    )
    assert result.options["network_args"] == [
        "down_lr_weight=sine+.5",
        "block_lr_zero_threshold=0.1",
    ]
    assert result.options.get("dim_from_weights") in (None, False)
    alone = import_kohya_gui_json({"LoRA_type": "Standard", "block_alphas": "1," * 24 + "1"})
    assert "network_args" not in alone.options
    assert any("block_alphas has no effect" in note for note in alone.notes)


def test_lora_plus_splits_each_block(sd15_empty):
    config = TrainConfig(unet_lr=1e-3, network_train_unet_only=True,
                         network_args=["mid_lr_weight=2", "loraplus_unet_lr_ratio=4"])  # fmt: skip
    _, groups = _built(sd15_empty, config)
    by_name = {g["name"]: g["lr"] for g in groups}
    assert by_name["unet_block12"] == pytest.approx(2e-3)
    assert by_name["unet_block12_plus"] == pytest.approx(8e-3)
    assert by_name["unet_block1_plus"] == pytest.approx(4e-3)
    assert torch.tensor(len(groups)) == 2 * len([n for n in by_name if not n.endswith("_plus")])
