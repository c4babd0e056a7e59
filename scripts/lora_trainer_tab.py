"""A1111 entry point: registers the Train LoRA tab. Logic lives in lora_trainer.webui."""

from modules import script_callbacks

from lora_trainer.webui.tab import build_tab

script_callbacks.on_ui_tabs(build_tab)
