"""Fake of modules/ui_components.py (A1111 v1.10.1): the WebUI's small gradio components.

Real (gradio 3.41): `FormComponent.get_expected_parent()` returns gr.components.Form (and
is patched onto gr.Dropdown); `ToolButton(FormComponent, gr.Button)` adds the "tool" CSS
class (small emoji buttons such as the refresh button); `FormRow`, `FormColumn`,
`FormGroup`, `FormHTML` are the form-friendly Row/Column/Group/HTML. Like the real module,
importing it needs gradio.
"""

from __future__ import annotations

import gradio as gr


class FormComponent:
    def get_expected_parent(self):
        return gr.components.Form


gr.Dropdown.get_expected_parent = FormComponent.get_expected_parent


class ToolButton(FormComponent, gr.Button):
    """Small button with single emoji as text, fits inside gradio forms"""

    def __init__(self, *args, **kwargs):
        classes = kwargs.pop("elem_classes", [])
        super().__init__(*args, elem_classes=["tool", *classes], **kwargs)

    def get_block_name(self):
        return "button"


class FormRow(FormComponent, gr.Row):
    """Same as gr.Row but fits inside gradio forms"""

    def get_block_name(self):
        return "row"


class FormColumn(FormComponent, gr.Column):
    """Same as gr.Column but fits inside gradio forms"""

    def get_block_name(self):
        return "column"


class FormGroup(FormComponent, gr.Group):
    """Same as gr.Group but fits inside gradio forms"""

    def get_block_name(self):
        return "group"


class FormHTML(FormComponent, gr.HTML):
    """Same as gr.HTML but fits inside gradio forms"""

    def get_block_name(self):
        return "html"
