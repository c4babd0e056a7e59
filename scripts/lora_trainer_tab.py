"""A1111 entry point: registers the Train LoRA tab, its settings and its HTTP API. Logic lives in lora_trainer.webui."""

from modules import script_callbacks

from lora_trainer.webui.settings import register_settings
from lora_trainer.webui.tab import build_tab


def on_app_started(demo, app):
    # imported here: the API module needs fastapi, which only the running WebUI provides
    from lora_trainer.webui.api import on_app_started as register_api

    register_api(demo, app)


script_callbacks.on_ui_tabs(build_tab)
script_callbacks.on_ui_settings(register_settings)
script_callbacks.on_app_started(on_app_started)
