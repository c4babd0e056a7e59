"""The extension's section on the WebUI's Settings page, and typed access to its values."""

from __future__ import annotations

from dataclasses import dataclass

SECTION = ("lora_trainer", "LoRA Trainer", "training")  # (id, title, category: "Training")

OUTPUT_SUBFOLDER = "lora_trainer_output_subfolder"
EPOCHS_AS_CARDS = "lora_trainer_epochs_as_cards"
DEFAULT_PRESET = "lora_trainer_default_preset"
OFFLOAD_CACHED = "lora_trainer_offload_cached"

DEFAULTS = {OUTPUT_SUBFOLDER: "", EPOCHS_AS_CARDS: False, DEFAULT_PRESET: "", OFFLOAD_CACHED: True}


@dataclass(frozen=True)
class TrainerSettings:
    output_subfolder: str
    epochs_as_cards: bool
    default_preset: str
    offload_cached: bool


def register_settings() -> None:
    """on_ui_settings callback: add the options (gradio is only imported here)."""
    import gradio as gr
    from modules import shared

    from .presets_store import preset_names

    info = shared.OptionInfo
    options = {
        OUTPUT_SUBFOLDER: info(
            "", "Sub-folder of the Lora folder for trained LoRAs", gr.Textbox
        ).info("empty: the Lora folder itself"),
        EPOCHS_AS_CARDS: info(
            False, "Save epoch checkpoints in the Lora folder, as cards of their own"
        ).info("otherwise they stay in outputs/lora-trainer, out of the Lora page"),
        DEFAULT_PRESET: info(
            "",
            "Preset loaded when the Train LoRA tab opens",
            gr.Dropdown,
            lambda: {"choices": ["", *preset_names()]},
        ),
        OFFLOAD_CACHED: info(
            True,
            "Move the VAE and text encoder to RAM while training when their outputs are cached",
        ).info("frees VRAM; they move back when training ends"),
    }
    for key, option in shared.options_section(SECTION, options).items():
        shared.opts.add_option(key, option)


def current_settings() -> TrainerSettings:
    """The settings' values (their defaults before the Settings page registered them)."""
    from modules import shared

    def value(key: str):
        return getattr(shared.opts, key, DEFAULTS[key])

    return TrainerSettings(
        output_subfolder=str(value(OUTPUT_SUBFOLDER) or ""),
        epochs_as_cards=bool(value(EPOCHS_AS_CARDS)),
        default_preset=str(value(DEFAULT_PRESET) or ""),
        offload_cached=bool(value(OFFLOAD_CACHED)),
    )
