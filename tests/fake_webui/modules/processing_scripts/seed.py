"""Fake of modules/processing_scripts/seed.py (A1111 v1.10.1): the seed controls as a script.

Real: `ScriptSeed(scripts.ScriptBuiltinUI)`, section "seed", title "Seed", always visible;
ui() returns (seed, value -1; "Extra" checkbox; variation seed, -1; variation strength, 0;
resize seed from width, 0; from height, 0); `setup(p, ...)` sets p.seed, and the variation
and resize values only when "Extra" is ticked and they are set. Reduced: no random/reuse
buttons, no --use-textbox-seed, no infotext paste fields.
"""

from __future__ import annotations

from modules import scripts


class ScriptSeed(scripts.ScriptBuiltinUI):
    section = "seed"
    create_group = False

    def title(self):
        return "Seed"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        import gradio as gr

        seed = gr.Number(label="Seed", value=-1, precision=0)
        seed_checkbox = gr.Checkbox(label="Extra", value=False)
        subseed = gr.Number(label="Variation seed", value=-1, precision=0)
        subseed_strength = gr.Slider(label="Variation strength", value=0.0, minimum=0, maximum=1)
        resize_w = gr.Slider(
            minimum=0, maximum=2048, step=8, label="Resize seed from width", value=0
        )
        resize_h = gr.Slider(
            minimum=0, maximum=2048, step=8, label="Resize seed from height", value=0
        )
        return seed, seed_checkbox, subseed, subseed_strength, resize_w, resize_h

    def setup(self, p, seed, seed_checkbox, subseed, subseed_strength, resize_w, resize_h):
        p.seed = seed
        if seed_checkbox and subseed_strength > 0:
            p.subseed = subseed
            p.subseed_strength = subseed_strength
        if seed_checkbox and resize_w > 0 and resize_h > 0:
            p.seed_resize_from_w = resize_w
            p.seed_resize_from_h = resize_h
