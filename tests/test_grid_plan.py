"""The grid plan: every cell's settings, and every bad input refused before any image."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lora_trainer.webui.grid_epochs import (
    base_name,
    epoch_file_stem,
    epoch_of,
    epochs_folder,
    find_epoch_files,
)
from lora_trainer.webui.grid_plan import BaseSettings, LoraEntry, build_plan
from lora_trainer.webui.grid_request import GridRequest
from lora_trainer.webui.grid_values import FINAL, GridError, Weight

SAMPLERS = {
    "euler": "Euler",
    "euler a": "Euler a",
    "dpm++ 2m": "DPM++ 2M",
    "dpm++ sde": "DPM++ SDE",
}
SCHEDULES = ["Automatic", "Karras", "Exponential"]


@dataclass
class Catalog:
    """An in-memory stand-in for the WebUI's Lora list, samplers and schedule types."""

    loras: dict[str, LoraEntry] = field(default_factory=dict)
    epoch_files: dict[str, dict[int, LoraEntry]] = field(default_factory=dict)

    def add(self, name: str, activation: str = "", epochs: tuple[int, ...] = ()) -> LoraEntry:
        entry = LoraEntry(
            name, f"/loras/{name}.safetensors", alias=f"{name}_alias", activation_text=activation
        )
        self.loras[name] = entry
        self.epoch_files[name] = {
            e: LoraEntry(epoch_file_stem(name, e), f"/loras/{epoch_file_stem(name, e)}.safetensors")
            for e in epochs
        }
        return entry

    def lora(self, name):
        return self.loras.get(name)

    def lora_names(self):
        return sorted(self.loras)

    def epochs(self, lora):
        return self.epoch_files.get(lora.name, {})

    def sampler(self, text):
        if text.lower() in SAMPLERS:
            return SAMPLERS[text.lower()], None
        head, _, tail = text.rpartition(" ")
        if head.lower() in SAMPLERS and tail in SCHEDULES:
            return SAMPLERS[head.lower()], tail
        return None

    def sampler_names(self):
        return list(SAMPLERS.values())

    def is_stochastic(self, sampler):
        return sampler in ("Euler a", "DPM++ SDE")

    def schedule(self, text):
        return next((s for s in SCHEDULES if s.lower() == text.lower()), None)

    def schedule_names(self):
        return SCHEDULES


BASE = BaseSettings(
    prompt="a dog", sampler_name="Euler", scheduler="Automatic", steps=20, cfg_scale=7.0
)


@pytest.fixture()
def catalog():
    c = Catalog()
    c.add("mine", activation="sks dog", epochs=(2, 4))
    c.add("other", activation="zzz", epochs=(2,))
    return c


def test_weights_by_samplers(catalog):
    plan = build_plan(GridRequest(loras=("mine",)), BASE, catalog)
    assert plan.count == plan.renders == 5 * 4
    assert plan.x.labels == ("0 (off)", "0.25", "0.5", "0.75", "1")
    assert plan.y.labels == ("Euler", "Euler a", "DPM++ 2M Karras", "DPM++ SDE Karras")
    first_row = [c.settings for c in plan.cells[:5]]
    assert [s.prompt for s in first_row] == [
        "a dog",
        "a dog <lora:mine:0.25>",
        "a dog <lora:mine:0.5>",
        "a dog <lora:mine:0.75>",
        "a dog <lora:mine:1>",
    ]
    third = plan.cells[10].settings
    assert (third.sampler_name, third.scheduler, third.steps, third.cfg_scale) == (
        "DPM++ 2M",
        "Karras",
        20,
        7.0,
    )
    assert (
        plan.cells[0].settings.scheduler == "Automatic"
    )  # plain "Euler" keeps the UI's schedule type
    assert "Euler a, DPM++ SDE add fresh noise" in plan.notes[0]
    assert plan.summary() == "5 weights x 4 samplers = 20 images"


def test_steps_cfg_and_schedule_axes(catalog):
    req = GridRequest(
        loras=("mine",),
        weights="1",
        y_type="Steps",
        y_values="",
        z_type="CFG scale",
        z_values="3-9 [3]",
    )
    plan = build_plan(req, BASE, catalog)
    assert plan.y.labels == (
        "15 steps",
        "25 steps",
        "35 steps",
    )  # blank values: the axis's defaults
    assert plan.z.labels == ("CFG 3", "CFG 6", "CFG 9")
    assert [(c.settings.steps, c.settings.cfg_scale) for c in plan.grid_cells(2)] == [
        (15, 9),
        (25, 9),
        (35, 9),
    ]
    assert plan.notes == ()
    plan = build_plan(
        GridRequest(loras=("mine",), y_type="schedule type", y_values="karras"), BASE, catalog
    )
    assert plan.y.labels == ("Karras",) and plan.cells[0].settings.scheduler == "Karras"


def test_lora_axis_replaces_the_other_lora_and_adds_its_activation_text(catalog):
    base = BaseSettings(
        prompt="a dog <lora:mine:0.8>, grass",
        sampler_name="Euler",
        scheduler=None,
        steps=20,
        cfg_scale=7,
    )
    req = GridRequest(
        loras=("mine", "other"), weights="0, 1", y_type="LoRA", y_values="", activation_text=True
    )
    plan = build_plan(req, base, catalog)
    assert plan.y.labels == ("mine", "other")
    assert [c.settings.prompt for c in plan.cells] == [
        "a dog , grass, sks dog",
        "a dog <lora:mine:1>, grass, sks dog",
        "a dog , grass, zzz",
        "a dog <lora:other:1>, grass, zzz",
    ]


def test_epoch_axis_uses_the_epoch_files_and_shares_the_base_cells(catalog):
    req = GridRequest(loras=("mine",), weights="0, 0.5, 1", y_type="Epoch", y_values="")
    plan = build_plan(req, BASE, catalog)
    assert plan.y.labels == ("epoch 2", "epoch 4", FINAL)
    assert [c.settings.lora for c in plan.cells] == [
        None, "mine-000002", "mine-000002",
        None, "mine-000004", "mine-000004",
        None, "mine", "mine",
    ]  # fmt: skip
    assert plan.count == 9 and plan.renders == 7  # the three weight-0 cells are one image
    assert "7 to generate" in plan.summary()
    base = BaseSettings(
        prompt="<lora:mine-000002:1> a dog",
        sampler_name="Euler",
        scheduler=None,
        steps=20,
        cfg_scale=7,
    )
    plan = build_plan(
        GridRequest(loras=("mine",), weights="0.5", y_type="Epoch", y_values="4"), base, catalog
    )
    assert plan.cells[0].settings.prompt == "<lora:mine-000004:0.5> a dog"


def test_epochs_with_several_loras_are_the_common_ones(catalog):
    req = GridRequest(loras=("mine", "other"), weights="1", y_type="Epoch", z_type="LoRA")
    plan = build_plan(req, BASE, catalog)
    assert plan.y.labels == ("epoch 2", FINAL)
    assert [c.settings.lora for c in plan.cells] == ["mine-000002", "mine", "other-000002", "other"]


def test_te_unet_weights_and_hires_prompt(catalog):
    base = BaseSettings(
        prompt="a dog",
        sampler_name="Euler",
        scheduler=None,
        steps=20,
        cfg_scale=7,
        hr_prompt="a dog, sharp",
    )
    plan = build_plan(
        GridRequest(loras=("mine",), weights="1:0, 0:1", y_type="Nothing"), base, catalog
    )
    assert plan.x.title == "LoRA weight (TE:UNet)"
    assert [c.settings.prompt for c in plan.cells] == [
        "a dog <lora:mine:1:0>",
        "a dog <lora:mine:0:1>",
    ]
    assert plan.cells[0].settings.hr_prompt == "a dog, sharp <lora:mine:1:0>"
    assert plan.cells[1].settings.weight == Weight(0, 1)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            GridRequest(loras=("mine",), y_values="Euler, Eulr"),
            "unknown sampler `Eulr`.*did you mean `Euler`",
        ),
        (GridRequest(loras=("mien",)), "LoRA not found: mien.*did you mean `mine`"),
        (GridRequest(loras=()), "no LoRA picked"),
        (GridRequest(loras=("mine", "other")), "2 LoRAs are picked but no axis compares them"),
        (GridRequest(loras=("mine",), weights=""), "Weights is empty"),
        (GridRequest(loras=("mine",), weights="1-"), "`1-` is not a number or a range"),
        (GridRequest(loras=("mine",), y_type="Steps", y_values="0"), "0 steps is too few"),
        (GridRequest(loras=("mine",), y_type="CFG scale", y_values="-1"), "negative"),
        (
            GridRequest(loras=("mine",), y_type="Schedule type", y_values="Karas"),
            "unknown schedule type.*`Karras`",
        ),
        (
            GridRequest(loras=("mine",), y_type="Epoch", y_values="3"),
            "mine has no file for epoch 3 .epochs found: 2, 4",
        ),
        (GridRequest(loras=("mine",), y_type="Sampler", z_type="sampler"), "both Sampler"),
        (GridRequest(loras=("mine",), y_type="Size"), "unknown axis type `Size`"),
        (GridRequest(loras=("mine",), y_type="LoRA", y_values="nope"), "LoRA not found: nope"),
        (
            GridRequest(loras=("mine",), weights="0-1 [30]"),
            "makes 120 images, more than 100.*Allow more than 100",
        ),
    ],
)
def test_bad_input_is_refused(catalog, request_, message):
    with pytest.raises(GridError, match=message):
        build_plan(request_, BASE, catalog)


def test_many_images_when_allowed_and_the_megapixel_limit(catalog):
    req = GridRequest(loras=("mine",), weights="0-1 [30]", allow_many=True)
    assert build_plan(req, BASE, catalog).count == 120
    with pytest.raises(GridError, match="31 megapixels, the WebUI's limit is 20"):
        build_plan(req, BASE, catalog, max_megapixels=20)


def test_epoch_axis_without_epoch_files(catalog):
    catalog.add("plain")
    with pytest.raises(
        GridError, match=r"no epoch files found for plain.*plain-000002\.safetensors"
    ):
        build_plan(GridRequest(loras=("plain",), y_type="Epoch"), BASE, catalog)
    catalog.add("third", epochs=(3,))
    with pytest.raises(GridError, match="mine, third have no saved epoch in common"):
        build_plan(
            GridRequest(loras=("mine", "third"), y_type="Epoch", z_type="LoRA"), BASE, catalog
        )
    catalog.add("mine-000004")
    with pytest.raises(GridError, match="is itself an epoch file: pick mine"):
        build_plan(GridRequest(loras=("mine-000004",), y_type="Epoch"), BASE, catalog)


def test_epoch_files_are_found_beside_and_in_the_epochs_folder(tmp_path: Path):
    final = tmp_path / "mine.safetensors"
    final.write_bytes(b"x")
    (tmp_path / "mine-000002.safetensors").write_bytes(b"x")
    (tmp_path / "mine-000003.txt").write_text("not a LoRA")
    (tmp_path / "mine-2.safetensors").write_bytes(b"not kohya's name")
    (tmp_path / "minex-000002.safetensors").write_bytes(b"another LoRA")
    folder = epochs_folder(final)
    assert folder == tmp_path / "mine_epochs"
    folder.mkdir()
    (folder / "mine-000004.safetensors").write_bytes(b"x")
    (folder / "mine-000002.safetensors").write_bytes(b"duplicate")
    assert find_epoch_files(final) == {
        2: tmp_path / "mine-000002.safetensors",
        4: folder / "mine-000004.safetensors",
    }
    assert epoch_of("mine-000010", "mine") == 10 and epoch_of("mine-10", "mine") is None
    assert base_name("my-lora-000002") == "my-lora" and base_name("my-lora") is None


def test_epoch_files_listed_in_the_card_are_found_first(tmp_path: Path):
    # the Train tab keeps epochs in its work folder and lists them in the card <name>.json
    lora_dir, work = tmp_path / "Lora", tmp_path / "outputs" / "lora-trainer" / "mine" / "run"
    lora_dir.mkdir()
    work.mkdir(parents=True)
    final = lora_dir / "mine.safetensors"
    final.write_bytes(b"x")
    for epoch in (1, 2):
        (work / f"mine-00000{epoch}.safetensors").write_bytes(b"x")
    (lora_dir / "mine-000002.safetensors").write_bytes(b"an older run's file")
    (lora_dir / "mine-000003.safetensors").write_bytes(b"x")
    listed = [str(work / "mine-000001.safetensors"), str(work / "mine-000002.safetensors"),
              str(work / "mine-000009.safetensors"),  # deleted since: left out
              str(work / "notes.txt"), 42]  # fmt: skip
    card = {"activation text": "sks", "lora trainer": {"epochs": listed}}
    final.with_suffix(".json").write_text(json.dumps(card), encoding="utf-8")
    assert find_epoch_files(final) == {
        1: work / "mine-000001.safetensors",
        2: work / "mine-000002.safetensors",
        3: lora_dir / "mine-000003.safetensors",
    }
    # renamed on the Lora page: the card still lists the epochs under their first name
    final.rename(lora_dir / "renamed.safetensors")
    final.with_suffix(".json").rename(lora_dir / "renamed.json")
    assert list(find_epoch_files(lora_dir / "renamed.safetensors")) == [1, 2]
    # a broken or foreign card is no card
    for text in ("{not json", '["a list"]', '{"lora trainer": {"epochs": "x"}}'):
        (lora_dir / "renamed.json").write_text(text, encoding="utf-8")
        assert find_epoch_files(lora_dir / "renamed.safetensors") == {}


def test_the_image_limit_counts_generated_images_not_cells(catalog):
    catalog.add("third", epochs=(2,))
    loras = ("mine", "other", "third")
    # 34 weights x 3 LoRAs = 102 cells, but the 3 weight-0 cells are one image: 100
    plan = build_plan(GridRequest(loras=loras, weights="0-33", y_type="LoRA"), BASE, catalog)
    assert (plan.count, plan.renders) == (102, 100)
    assert "102 images (100 to generate" in plan.summary()
    with pytest.raises(GridError, match=r"makes 103 images \(for 105 cells\), more than 100"):
        build_plan(GridRequest(loras=loras, weights="0-34", y_type="LoRA"), BASE, catalog)
    allowed = GridRequest(loras=loras, weights="0-34", y_type="LoRA", allow_many=True)
    assert build_plan(allowed, BASE, catalog).renders == 103
