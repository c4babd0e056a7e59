"""The grid script's controls in the txt2img/img2img Script area (gradio 3.41).

`build_ui` runs once per tab and again each time the API asks for the default arguments,
so it keeps no state between calls. Its return order is the order of GridRequest's fields.
"""

from __future__ import annotations

import html
from typing import Any

from .grid_host import WebuiCatalog
from .grid_plan import BaseSettings, build_plan
from .grid_request import (
    AXIS_CHOICES,
    DEFAULT_AXIS_VALUES,
    DEFAULT_WEIGHTS,
    IMAGE_LIMIT,
    INFOTEXT_KEYS,
    MAX_MARGIN,
    AxisKind,
    GridRequest,
    axis_kind,
)
from .grid_values import GridError

REFRESH_SYMBOL = "\U0001f504"  # 🔄, the WebUI's refresh button
WEIGHTS_HELP = (
    "Comma-separated; 0 is the model without the LoRA. Ranges as in the X/Y/Z plot: "
    "0-1 [5] gives 5 values, 0-1 (+0.25) steps by 0.25. Use te:unet (e.g. 1:0) for "
    "separate text-encoder and UNet weights."
)
AXIS_PLACEHOLDERS = {
    AxisKind.NOTHING: "",
    AxisKind.LORA: "blank: the LoRAs picked above",
    AxisKind.EPOCH: "blank: every saved epoch, then final; or e.g. 2, 4, final",
}
# what the summary assumes for the settings that live outside the script
_PREVIEW_BASE = BaseSettings(prompt="", sampler_name="Euler", scheduler=None, steps=20, cfg_scale=7)


def build_ui(script: Any, is_img2img: bool) -> list[Any]:
    """Create the controls; return the ones whose values `run()` receives, in order."""
    import gradio as gr
    from modules.ui_components import FormRow, ToolButton

    choices = lora_choices()
    with FormRow():
        loras = gr.Dropdown(
            label="LoRAs",
            choices=choices,
            value=[],
            multiselect=True,
            elem_id=script.elem_id("loras"),
        )
        refresh = ToolButton(value=REFRESH_SYMBOL, elem_id=script.elem_id("refresh"))
    weights = gr.Textbox(
        label="LoRA weights",
        value=DEFAULT_WEIGHTS,
        info=WEIGHTS_HELP,
        elem_id=script.elem_id("weights"),
    )
    with FormRow():
        y_type = gr.Dropdown(
            label="Second axis",
            choices=AXIS_CHOICES,
            value=AxisKind.SAMPLER.value,
            elem_id=script.elem_id("y_type"),
        )
        y_values = gr.Textbox(
            label="Second axis values",
            value=DEFAULT_AXIS_VALUES[AxisKind.SAMPLER],
            elem_id=script.elem_id("y_values"),
        )
    with FormRow():
        z_type = gr.Dropdown(
            label="Third axis (one grid per value)",
            choices=AXIS_CHOICES,
            value=AxisKind.NOTHING.value,
            elem_id=script.elem_id("z_type"),
        )
        z_values = gr.Textbox(
            label="Third axis values", value="", elem_id=script.elem_id("z_values")
        )
    with FormRow():
        activation = gr.Checkbox(
            label="Add each LoRA's activation text",
            value=False,
            elem_id=script.elem_id("activation_text"),
        )
        allow_many = gr.Checkbox(
            label=f"Allow more than {IMAGE_LIMIT} images",
            value=False,
            elem_id=script.elem_id("allow_many"),
        )
        margin = gr.Slider(
            label="Grid margins (px)",
            minimum=0,
            maximum=MAX_MARGIN,
            step=2,
            value=0,
            elem_id=script.elem_id("margin"),
        )
    controls = [loras, weights, y_type, y_values, z_type, z_values, activation, allow_many, margin]
    summary = gr.HTML(
        value=summary_html(*[c.value for c in controls]), elem_id=script.elem_id("summary")
    )

    refresh.click(fn=refreshed, inputs=controls, outputs=[loras, summary])
    y_type.change(fn=values_for_type, inputs=[y_type, y_values], outputs=[y_values])
    z_type.change(fn=values_for_type, inputs=[z_type, z_values], outputs=[z_values])
    for control in controls:
        control.change(fn=summary_html, inputs=controls, outputs=[summary])
    script.infotext_fields = infotext_fields(controls)
    return controls


def lora_choices(*, refresh: bool = False) -> list[str]:
    """Names for the LoRA picker (empty when the Lora extension is off)."""
    try:
        catalog = WebuiCatalog(refresh_missing=False)
    except GridError:
        return []
    if refresh:
        catalog.refresh()
    return catalog.lora_names()


def refreshed(*values: Any) -> tuple[Any, str]:
    """The refresh button: rescan the Lora folder, keep the picked names that still exist."""
    import gradio as gr

    names = lora_choices(refresh=True)
    picked = [n for n in values[0] or [] if n in names]
    return gr.update(choices=names, value=picked), summary_html(picked, *values[1:])


def values_for_type(kind: str, current: str) -> Any:
    """The values box after the axis type changed: the new type's defaults unless edited."""
    import gradio as gr

    try:
        new = axis_kind(kind)
    except GridError:
        return gr.update()
    defaults = set(DEFAULT_AXIS_VALUES.values())
    value = DEFAULT_AXIS_VALUES[new] if (current or "").strip() in defaults else current
    return gr.update(value=value, placeholder=AXIS_PLACEHOLDERS.get(new, ""))


def summary_html(*values: Any) -> str:
    """How many images the settings make, or what is wrong with them."""
    try:
        request = GridRequest.from_args(values)
        catalog = WebuiCatalog(refresh_missing=False)
        plan = build_plan(request, _PREVIEW_BASE, catalog)
    except GridError as exc:
        return f"<p class='lora-grid-problem'>To fix: {html.escape(exc.message)}</p>"
    text = plan.summary() + ". The seed is the same in every cell."
    epochs = catalog.epochs(plan.loras[0])
    if len(plan.loras) == 1 and epochs and AxisKind.EPOCH.value not in (plan.y.kind, plan.z.kind):
        plural = "s" if len(epochs) > 1 else ""
        text += f" {plan.loras[0].name} has {len(epochs)} saved epoch{plural}: set an axis to Epoch to compare them."
    return f"<p class='lora-grid-summary'>{html.escape(text)}</p>"


def infotext_fields(controls: list[Any]) -> list[tuple[Any, Any]]:
    """(component, reader) pairs: "PNG Info > Send to txt2img" restores the grid's settings."""
    import gradio as gr

    names = list(GridRequest.__dataclass_fields__)

    def reader(field: str):
        def read(params: dict) -> Any:
            request = GridRequest.from_infotext(params)
            if request is None:
                return None  # not a grid's infotext: leave the control alone
            value = getattr(request, field)
            return gr.update(value=list(value) if field == "loras" else value)

        return read

    return [(c, reader(n)) for c, n in zip(controls, names) if n in INFOTEXT_KEYS]
