"""The demo: a generated dataset in kohya layout, trained on the tiny built-in model."""

from __future__ import annotations

import random
import shutil
from dataclasses import replace
from pathlib import Path

from PIL import Image, ImageDraw

from .config import BUILTIN_TINY_MODEL, TrainConfig, config_from_dict
from .errors import ConfigError
from .lora.inspect import describe_lora
from .lora.kohya_file import load_kohya_lora
from .models.tiny import build_tiny_sd1
from .train.evaluate import fixed_batch_loss
from .train.job import inject_network, prepare

DEMO_MARKER = ".lora_trainer_demo"
SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 70),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 40),
}


def make_demo_dataset(root: Path, count: int = 8, seed: int = 0) -> Path:
    """`root/img/2_sks toy/` with `count` drawn images and .txt captions; returns `root/img`."""
    folder = root / "img" / "2_sks toy"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for i in range(count):
        shape, colour = SHAPES[i % len(SHAPES)], rng.choice(list(COLOURS))
        image = _draw(shape, COLOURS[colour], rng)
        image.save(folder / f"{i:02d}_{colour}_{shape}.png")
        (folder / f"{i:02d}_{colour}_{shape}.txt").write_text(
            f"sks toy, {colour} {shape}\n", encoding="utf-8"
        )
    return root / "img"


def _draw(
    shape: str, colour: tuple[int, int, int], rng: random.Random, size: int = 96
) -> Image.Image:
    image = Image.new("RGB", (size, size), tuple(rng.randint(200, 255) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    lo, hi = rng.randint(10, 30), rng.randint(66, 86)
    if shape == "circle":
        draw.ellipse((lo, lo, hi, hi), fill=colour)
    elif shape == "square":
        draw.rectangle((lo, lo, hi, hi), fill=colour)
    else:
        draw.polygon([(size // 2, lo), (lo, hi), (hi, hi)], fill=colour)
    return image


def _claim_folder(root: Path) -> None:
    """The demo only ever replaces a folder it made itself."""
    if root.exists() and any(root.iterdir()) and not (root / DEMO_MARKER).exists():
        raise ConfigError(
            "the demo folder exists and was not made by the demo",
            where=str(root),
            fix="pass --out with a new or empty folder",
        )
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / DEMO_MARKER).write_text("made by python -m lora_trainer demo\n", encoding="utf-8")


def run_demo(root: Path, steps: int = 60) -> int:
    """Train a LoRA on generated images and describe the file; returns the exit code."""
    from .cli import train_with_console

    _claim_folder(root)
    img_dir = make_demo_dataset(root)
    print(
        f"Demo dataset: {img_dir} (kohya layout: <repeats>_<trigger> <class>/ with .txt captions)"
    )
    config = config_from_dict(
        {
            "pretrained_model_name_or_path": BUILTIN_TINY_MODEL,
            "train_data_dir": str(img_dir),
            "output_dir": str(root / "model"),
            "output_name": "demo_lora",
            "caption_extension": ".txt",
            "resolution": "64",
            "network_dim": 8,
            "network_alpha": 4,
            "learning_rate": 5e-3,
            "lr_scheduler": "cosine",
            "lr_warmup_steps": 0.1,
            "max_train_steps": steps,
            "save_every_n_epochs": 2,
            "seed": 42,
            "device": "cpu",
        },
        source="demo",
    )
    result = train_with_console(config)
    if result.output_path is None:
        return 1
    before, after = _check_batch_losses(config, result.output_path)
    print(f"Loss on a fixed check batch: {before:.4f} without the LoRA, {after:.4f} with it")
    print(f"\n{result.output_path}:")
    for line in describe_lora(load_kohya_lora(result.output_path)):
        print(f"  {line}")
    print(
        "\nThis LoRA fits the tiny demo model only. To train one for your checkpoint:\n"
        "  python -m lora_trainer train --pretrained_model_name_or_path model.safetensors \\\n"
        "    --train_data_dir my_dataset/img --output_dir my_dataset/model --output_name my_lora"
    )
    return 0


def _check_batch_losses(config: TrainConfig, lora_path: Path) -> tuple[float, float]:
    """Loss of the base model and of the base model with the saved file loaded."""
    bundle = build_tiny_sd1()
    dataset = prepare(replace(config, overwrite=True)).dataset
    before = fixed_batch_loss(bundle, dataset)
    network = inject_network(bundle, config, seed=0)
    network.load_kohya_state_dict(load_kohya_lora(lora_path).tensors, str(lora_path))
    after = fixed_batch_loss(bundle, dataset)
    network.remove()
    return before, after
