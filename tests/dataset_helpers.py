"""Small builders shared by the dataset tests: images, kohya folders, datasets from options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from lora_trainer.config import config_from_dict
from lora_trainer.dataset.build import build_training_data
from lora_trainer.dataset.group import DatasetGroup


def png(path: Path, size=(64, 64), color=(90, 160, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def concept(
    root: Path,
    name: str,
    count: int,
    size=(64, 64),
    captions: list[str] | None = None,
    ext: str = ".txt",
) -> list[Path]:
    """`root/name/` with `count` PNGs (distinct colours) and optional captions."""
    paths = []
    for i in range(count):
        path = png(root / name / f"{i:02d}.png", size, (40 * i % 256, 90, 200 - 20 * i % 200))
        img = Image.open(path)
        img.paste((250, 250, 0), (0, 0, max(1, size[0] // 3), size[1]))  # not mirror-symmetric
        img.save(path)
        if captions is not None:
            path.with_suffix(ext).write_text(captions[i % len(captions)] + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def group(train_data_dir: Path | None = None, seed: int = 0, **options: Any) -> DatasetGroup:
    """The DatasetGroup a training run would build from these options."""
    values: dict[str, Any] = {"caption_extension": ".txt", "resolution": "64"}
    if train_data_dir is not None:
        values["train_data_dir"] = str(train_data_dir)
    values.update(options)
    data = build_training_data(config_from_dict(values), seed=seed)
    return data.group


@pytest.fixture
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is many times faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
