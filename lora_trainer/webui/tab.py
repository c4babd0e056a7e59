"""The "Train LoRA" tab. This version inspects LoRA files and prepares the training command."""

from __future__ import annotations

import shlex
from pathlib import Path

from ..errors import UserError
from ..lora.inspect import describe_lora
from ..lora.kohya_file import load_kohya_lora
from . import host

TAB_TITLE = "Train LoRA"
TAB_ID = "lora_trainer"


def list_loras(folder: Path) -> list[str]:
    """LoRA files under the Lora folder, as paths relative to it."""
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.safetensors"))


def describe(relative: str | None) -> str:
    """The inspect text for one LoRA of the Lora folder, or what went wrong."""
    if not relative:
        return "Pick a LoRA file to see what it was trained on and how."
    try:
        return "\n".join(describe_lora(load_kohya_lora(host.lora_dir() / relative)))
    except UserError as exc:
        return f"Cannot read this file: {exc.message}"


def train_command() -> str:
    """The command line that trains on the loaded checkpoint into the Lora folder."""
    checkpoint = host.loaded_checkpoint_file()
    parts = [
        "python", "-m", "lora_trainer", "train",
        "--pretrained_model_name_or_path", str(checkpoint or "MODEL.safetensors"),
        "--train_data_dir", "DATASET/img",
        "--output_dir", str(host.lora_dir()),
        "--output_name", "my_lora",
        "--caption_extension", ".txt",
    ]  # fmt: skip
    return shlex.join(parts)


def build_tab() -> list[tuple]:
    """on_ui_tabs callback: [(blocks, title, elem_id)]."""
    import gradio as gr

    with gr.Blocks(analytics_enabled=False) as blocks:
        gr.Markdown(
            "Training from this tab comes in the next version. Until then, train from a terminal "
            "in this extension's folder with the command below, then use the file as "
            "`<lora:my_lora:0.7>`.",
            elem_classes=["lora-trainer-status"],
        )
        gr.Textbox(
            value=train_command,
            label="Training command",
            lines=2,
            show_copy_button=True,
            elem_id="lora_trainer_command",
        )
        with gr.Row():
            choice = gr.Dropdown(
                choices=list_loras(host.lora_dir()),
                label="Inspect a LoRA",
                elem_id="lora_trainer_inspect_file",
            )
            refresh = gr.Button("Refresh list", elem_id="lora_trainer_inspect_refresh")
        details = gr.Textbox(
            label="About this LoRA", lines=16, interactive=False, elem_id="lora_trainer_inspect"
        )
        choice.change(describe, inputs=[choice], outputs=[details])
        refresh.click(lambda: gr.update(choices=list_loras(host.lora_dir())), outputs=[choice])
    return [(blocks, TAB_TITLE, TAB_ID)]
