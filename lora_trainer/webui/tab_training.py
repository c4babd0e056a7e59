"""The tab's Training section: output, the loaded checkpoint, the usual options, and Advanced."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import form
from .form import Field
from .live_model import LiveModelInfo, describe_loaded_model
from .request import default_precision

ADVANCED_COLUMNS = 3


@dataclass
class FormControls:
    """The form's gradio components, in the order of `fields` (event inputs use this order)."""

    fields: list[Field] = field(default_factory=list)
    components: list[Any] = field(default_factory=list)

    def add(self, spec: Field, component: Any) -> Any:
        self.fields.append(spec)
        self.components.append(component)
        return component

    def component(self, name: str) -> Any:
        return self.components[[f.name for f in self.fields].index(name)]

    def values_to_request(self, values: list[Any]):
        """Form values -> TrainRequest."""
        from .request import TrainRequest

        options, extras = form.split_values(self.fields, list(values))
        weight = extras.get("preferred_weight")
        return TrainRequest(
            options=options,
            sample_prompt=extras.get("sample_prompt") or "",
            activation_text=extras.get("activation_text") or "",
            preferred_weight=0.8 if weight is None else float(weight),
            overwrite=bool(extras.get("overwrite")),
        )

    def updates(self, values: dict[str, Any]) -> list[Any]:
        """One gr.update per component: a new value where `values` has one, no change elsewhere."""
        import gradio as gr

        return [
            gr.update(value=form.option_to_value(f, values[f.name]))
            if f.name in values
            else gr.update()
            for f in self.fields
        ]


@dataclass
class TrainingSection:
    form: FormControls
    checkpoint: Any
    arch: Any
    refresh_model: Any
    # model-dependent fields as built while no model (or another one) may have been loaded,
    # that no preset set: what the page-load refresh may replace
    placeholders: dict[str, Any] = field(default_factory=dict)


def model_defaults(info: LiveModelInfo | None) -> dict[str, Any]:
    """Form defaults that follow the loaded model (resolution, precision, checkpointing)."""
    if info is None:
        return form.arch_defaults(None, "no")
    return form.arch_defaults(info.arch, default_precision(info))


def default_preset_values() -> dict[str, Any]:
    """The options of the preset chosen in Settings, shown when the tab opens ({} when none)."""
    import logging

    from ..errors import UserError
    from .presets_store import store
    from .settings import current_settings

    name = current_settings().default_preset
    if not name:
        return {}
    try:
        preset = store().load(name)
    except UserError as exc:  # a deleted or broken preset must not break the tab
        logging.getLogger(__name__).warning(
            "LoRA trainer: default preset not loaded: %s", exc.message
        )
        return {}
    return {**preset.options, **{k: v for k, v in preset.extras.items() if v is not None}}


def model_text(info: LiveModelInfo | None) -> tuple[str, str]:
    """(checkpoint, family line) as the section shows them."""
    if info is None:
        return "No checkpoint loaded", (
            "Load a checkpoint at the top of the page (or wait while the WebUI loads one), "
            "then press Refresh."
        )
    line = info.label + (f". Cannot train: {info.problem}" if info.problem else "")
    return info.title, line


def make_component(spec: Field, value: Any) -> Any:
    """The gradio input for one field."""
    import gradio as gr

    common = {"label": spec.label, "elem_id": f"lora_trainer_{spec.name}"}
    if spec.info:
        common["info"] = spec.info
    shown = form.option_to_value(spec, value)
    if spec.kind == form.BOOL:
        return gr.Checkbox(value=bool(value), **common)
    if form.typed_as_text(spec):
        return gr.Textbox(value=shown, placeholder="empty: not set", **common)
    if spec.kind in (form.INT, form.FLOAT):
        return gr.Number(value=shown, precision=0 if spec.kind == form.INT else None, **common)
    if spec.kind == form.CHOICE:
        return gr.Dropdown(
            choices=list(spec.choices), value=shown, allow_custom_value=True, **common
        )
    lines = 3 if spec.kind == form.MULTILINE else 1
    placeholder = "key=value key2=value2" if spec.kind == form.LIST else None
    return gr.Textbox(value=shown, lines=lines, placeholder=placeholder, **common)


def add_fields(controls: FormControls, specs: list[Field], defaults: dict[str, Any]) -> None:
    """The fields of one section, in a row."""
    import gradio as gr

    with gr.Row():
        for spec in specs:
            controls.add(spec, make_component(spec, form.field_default(spec, defaults)))


def build_training(controls: FormControls) -> TrainingSection:
    """Lay out the Training section; the dataset fields are added by the Dataset section."""
    import gradio as gr

    info = describe_loaded_model()
    preset = default_preset_values()
    defaults = {**model_defaults(info), **preset}
    sections = form.main_fields()
    checkpoint_name, arch_line = model_text(info)
    with gr.Row():
        checkpoint = gr.Textbox(
            value=checkpoint_name, label="Trains on the loaded checkpoint", interactive=False,
            elem_id="lora_trainer_checkpoint", scale=3,
        )  # fmt: skip
        arch = gr.Textbox(
            value=arch_line, label="Model", interactive=False, elem_id="lora_trainer_arch", scale=3
        )
        refresh_model = gr.Button("Refresh", elem_id="lora_trainer_refresh_model", scale=1)
    for section in ("output", "network", "learning", "length", "image", "speed", "samples"):
        add_fields(controls, sections[section], defaults)
    shown = {spec.name for spec in controls.fields} | {f.name for f in sections["dataset"]}
    with gr.Accordion(
        "Advanced (all other kohya options)", open=False, elem_id="lora_trainer_advanced"
    ):
        gr.Markdown("kohya's option names and defaults; empty means not set.")
        advanced = form.advanced_fields(shown)
        for start in range(0, len(advanced), ADVANCED_COLUMNS):
            add_fields(controls, advanced[start : start + ADVANCED_COLUMNS], defaults)
    placeholders = {n: controls.component(n).value for n in MODEL_FIELDS if n not in preset}
    return TrainingSection(controls, checkpoint, arch, refresh_model, placeholders)


def refresh_model_view() -> list[Any]:
    """After the user loaded another checkpoint: its name, family and model-dependent defaults."""
    import gradio as gr

    info = describe_loaded_model()
    checkpoint, arch = model_text(info)
    defaults = model_defaults(info)
    return [gr.update(value=checkpoint), gr.update(value=arch)] + [
        gr.update(value=defaults[name]) for name in MODEL_FIELDS
    ]


def page_load_view(placeholders: dict[str, Any], *shown: Any) -> list[Any]:
    """When the page opens: the checkpoint as it is now, and model defaults for untouched fields.

    A1111 builds the UI before its startup thread has loaded the model, so the values the
    tab was built with may say "no checkpoint"; values the user's ui-config.json or the
    default preset chose differ from `placeholders` and are kept.
    """
    import gradio as gr

    info = describe_loaded_model()
    checkpoint, arch = model_text(info)
    defaults = model_defaults(info)
    fields = [
        gr.update(value=defaults[name])
        if name in placeholders and value == placeholders[name]
        else gr.update()
        for name, value in zip(MODEL_FIELDS, shown)
    ]
    return [gr.update(value=checkpoint), gr.update(value=arch), *fields]


MODEL_FIELDS = ("resolution", "mixed_precision", "gradient_checkpointing", "max_bucket_reso")
