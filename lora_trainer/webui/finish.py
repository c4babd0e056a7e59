"""After a run: the LoRA, its preview and card into the Lora folder; the WebUI told about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import TrainConfig, config_to_dict
from ..presets import export_kohya_toml
from .builtin_lora import refresh_lora_list
from .output import CardData, OutputPlan, move_into_place, write_card, write_preview


@dataclass
class RunFiles:
    """What a finished run left where the user looks."""

    lora_file: Path
    card_file: Path
    preview_file: Path | None
    epoch_files: list[Path] = field(default_factory=list)
    config_file: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "lora_file": str(self.lora_file),
            "card_file": str(self.card_file),
            "preview_file": str(self.preview_file) if self.preview_file else None,
            "epoch_files": [str(p) for p in self.epoch_files],
            "config_file": str(self.config_file) if self.config_file else None,
        }


def prompt_tag(name: str, weight: float, activation_text: str) -> str:
    """What goes into a prompt to use the LoRA: `<lora:name:w>` and its trigger words."""
    tag = f"<lora:{name}:{weight:g}>"
    return f"{tag} {activation_text}".strip()


def place_outputs(
    plan: OutputPlan, final: Path, last_sample: Path | None, card: CardData, config: TrainConfig
) -> RunFiles:
    """Move the final file in, keep epochs where the settings say, write preview, card and config."""
    lora_file = move_into_place(final, plan.lora_file)
    epochs = _place_epoch_files(plan)
    config_file = plan.work_dir / f"{plan.name}.toml"
    config_file.write_text(
        export_kohya_toml(config_to_dict(config), _toml_header(card)), encoding="utf-8"
    )
    card.trainer.update(
        {
            "work folder": str(plan.work_dir),
            "epochs": [str(p) for p in epochs],
            "config": str(config_file),
        }
    )
    preview = write_preview(last_sample, plan)
    return RunFiles(lora_file, write_card(card, plan), preview, epochs, config_file)


def _place_epoch_files(plan: OutputPlan) -> list[Path]:
    """The checkpoints the run kept (kohya's save_last_n_* may have removed some), oldest first."""
    found = sorted(plan.work_dir.glob(f"{plan.name}-*.safetensors"))
    if not plan.epochs_as_cards:
        return found
    return [move_into_place(p, plan.epochs_folder / p.name) for p in found]


def _toml_header(card: CardData) -> list[str]:
    script = "sdxl_train_network.py" if card.arch == "sdxl" else "train_network.py"
    return [
        "Written by the LoRA Trainer extension. To train again with kohya's sd-scripts:",
        f"accelerate launch {script} --config_file this_file.toml",
        "(the dataset folder and the sample prompts file must still exist)",
    ]


def announce_new_lora() -> None:
    """Make the WebUI see the new file now: Lora list rescanned, cached prompt conditioning dropped."""
    refresh_lora_list()
    reset_prompt_cache()


def reset_prompt_cache() -> None:
    """processing.py keeps the last prompt's conditioning across generations; a replaced LoRA
    of the same name would otherwise keep its old text-encoder effect in it."""
    from modules import processing

    for cls_name, attrs in (
        ("StableDiffusionProcessing", ("cached_c", "cached_uc")),
        ("StableDiffusionProcessingTxt2Img", ("cached_hr_c", "cached_hr_uc")),
    ):
        cls = getattr(processing, cls_name, None)
        if cls is not None:
            for attr in attrs:
                setattr(cls, attr, [None, None])
