"""The tab's Presets section: save/load named presets, import kohya files, export a kohya TOML."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import config_from_dict, config_to_dict
from ..errors import ConfigError, UserError
from ..presets import (
    Preset,
    export_kohya_toml,
    import_kohya_gui_json,
    import_kohya_toml,
    preset_from_json,
    shareable,
)
from . import form, host
from .live_model import describe_loaded_model
from .presets_store import store
from .request import write_prompts
from .settings import current_settings
from .tab_training import FormControls, model_defaults
from .ui_compat import uploaded_paths


@dataclass
class PresetsSection:
    choice: Any
    refresh: Any
    load: Any
    delete: Any
    name: Any
    replace: Any
    save: Any
    upload: Any
    export: Any
    download: Any
    message: Any


def build_presets_section() -> PresetsSection:
    import gradio as gr

    names = store().names()
    default = current_settings().default_preset
    with gr.Row():
        choice = gr.Dropdown(label="Preset", choices=names, value=default if default in names else None,
                             elem_id="lora_trainer_preset")  # fmt: skip
        refresh = gr.Button("Refresh", elem_id="lora_trainer_preset_refresh")
        load = gr.Button("Load", variant="primary", elem_id="lora_trainer_preset_load")
        delete = gr.Button("Delete", elem_id="lora_trainer_preset_delete")
    with gr.Row():
        name = gr.Textbox(label="Save the current settings as", elem_id="lora_trainer_preset_name")
        replace = gr.Checkbox(
            label="Replace a preset with this name",
            value=False,
            elem_id="lora_trainer_preset_replace",
        )
        save = gr.Button("Save preset", elem_id="lora_trainer_preset_save")
    with gr.Row():
        upload = gr.File(label="Import a kohya_ss GUI .json, a kohya .toml or a preset .json",
                         file_types=[".json", ".toml"], elem_id="lora_trainer_preset_import")  # fmt: skip
        with gr.Column():
            export = gr.Button("Export as kohya TOML", elem_id="lora_trainer_preset_export")
            download = gr.File(
                label="kohya TOML", interactive=False, elem_id="lora_trainer_preset_download"
            )
    message = gr.Textbox(
        label="", lines=3, interactive=False, elem_id="lora_trainer_preset_message"
    )
    return PresetsSection(
        choice, refresh, load, delete, name, replace, save, upload, export, download, message
    )


def _choices_update(value: str | None = None) -> Any:
    import gradio as gr

    return gr.update(choices=store().names(), value=value)


def _fill(controls: FormControls, options: dict[str, Any], extras: dict[str, Any]) -> list[Any]:
    values = form.preset_values(
        controls.fields, options, extras, model_defaults(describe_loaded_model())
    )
    return controls.updates(values)


def load_preset(controls: FormControls, name: str | None) -> list[Any]:
    """[message, *field updates]: the preset over the tab's defaults."""
    if not name:
        return ["Pick a preset first.", *controls.updates({})]
    try:
        preset = store().load(name)
    except UserError as exc:
        return [exc.message, *controls.updates({})]
    return [f"Loaded preset '{name}'.", *_fill(controls, preset.options, preset.extras)]


def save_preset(controls: FormControls, name: str, replace: bool, *values: Any) -> list[Any]:
    """[message, dropdown update]."""
    name = (name or "").strip()
    request = controls.values_to_request(list(values))
    extras = {"sample_prompt": request.sample_prompt, "preferred_weight": request.preferred_weight}
    try:
        path = store().save(
            Preset(name, shareable(request.options), extras), overwrite=bool(replace)
        )
    except UserError as exc:
        return [exc.message, _choices_update()]
    return [f"Saved preset '{name}' ({path}).", _choices_update(name)]


def delete_preset(name: str | None) -> list[Any]:
    if not name:
        return ["Pick a preset first.", _choices_update()]
    try:
        store().delete(name)
    except UserError as exc:
        return [exc.message, _choices_update(name)]
    return [f"Deleted preset '{name}'.", _choices_update()]


def import_settings(controls: FormControls, upload: Any) -> list[Any]:
    """[message, *field updates] from an uploaded kohya_ss GUI JSON, kohya TOML or preset."""
    paths = uploaded_paths(upload)
    if not paths:
        return ["Choose a file to import.", *controls.updates({})]
    path = paths[0]
    try:
        result = read_settings_file(path)
    except UserError as exc:
        return [f"Cannot import {path.name}: {exc.message}", *controls.updates({})]
    notes = "".join(f"\n- {note}" for note in result.notes)
    message = f"Imported {len(result.options)} options from {path.name}.{notes}"
    return [message, *_fill(controls, result.options, result.extras)]


def read_settings_file(path: Path):
    """Options from a file: our preset, a kohya_ss GUI configuration, or a kohya TOML."""
    from ..presets import ImportResult

    if path.suffix.lower() == ".toml":
        return import_kohya_toml(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"not a readable JSON file: {exc}") from None
    if isinstance(data, dict) and data.get("format") == "lora-trainer-preset":
        preset = preset_from_json(data, str(path))
        return ImportResult(preset.options, preset.extras)
    return import_kohya_gui_json(data, str(path))


def export_settings(controls: FormControls, *values: Any) -> list[Any]:
    """[message, file]: the current settings as a kohya TOML, with its sample prompts file."""
    request = controls.values_to_request(list(values))
    info = describe_loaded_model()
    name = str(request.options.get("output_name") or "lora").strip()
    folder = host.outputs_dir() / "lora-trainer" / "exports"
    options = dict(request.options)
    options.update(kohya_model_options(info))
    options["output_dir"] = str(host.lora_dir())
    if request.sample_prompt.strip():
        options["sample_prompts"] = str(
            write_prompts(folder / f"{name}_prompts", request.sample_prompt.strip())
        )
    else:  # kohya needs a prompts file to sample; without one, no samples
        for key in ("sample_every_n_epochs", "sample_every_n_steps", "sample_at_first"):
            options.pop(key, None)
    try:
        config = config_from_dict(options, source="the tab's settings")
    except UserError as exc:
        return [f"Cannot export: {exc.message}", None]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.toml"
    header = [f"kohya sd-scripts configuration for '{name}', exported by the LoRA Trainer extension.",
              f"Run: accelerate launch {'sdxl_' if info and info.arch == 'sdxl' else ''}train_network.py --config_file {target.name}"]  # fmt: skip
    target.write_text(export_kohya_toml(config_to_dict(config), header), encoding="utf-8")
    return [f"Exported {target}.", str(target)]


def kohya_model_options(info) -> dict[str, Any]:
    """kohya's model switches and path for the loaded checkpoint."""
    if info is None:
        return {}
    return {
        "pretrained_model_name_or_path": str(info.path) if info.path else info.title,
        "v2": info.arch == "sd2",
        "v_parameterization": info.v_prediction,
        "sdxl": info.arch == "sdxl",
    }
