"""Fake of modules/processing_scripts/sampler.py (A1111 v1.10.1): the sampler controls as a script.

Real: `ScriptSampler(scripts.ScriptBuiltinUI)`, section "sampler", title "Sampler"; ui()
returns (steps slider, value 20; sampling method, value the first visible sampler;
schedule type, value the first scheduler's label); `setup(p, steps, sampler_name,
scheduler)` copies them into p. The WebUI's ui.py builds it with
`setup_ui_for_section("sampler")`. Reduced: always a Dropdown for the sampler (the real one
is a Radio unless opts.samplers_in_dropdown); no infotext paste fields.
"""

from __future__ import annotations

from modules import scripts, sd_samplers, sd_schedulers


class ScriptSampler(scripts.ScriptBuiltinUI):
    section = "sampler"

    def __init__(self):
        self.steps = None
        self.sampler_name = None
        self.scheduler = None

    def title(self):
        return "Sampler"

    def ui(self, is_img2img):
        import gradio as gr

        sampler_names = [x.name for x in sd_samplers.visible_samplers()]
        scheduler_names = [x.label for x in sd_schedulers.schedulers]
        self.steps = gr.Slider(minimum=1, maximum=150, step=1, label="Sampling steps", value=20)
        self.sampler_name = gr.Dropdown(
            label="Sampling method", choices=sampler_names, value=sampler_names[0]
        )
        self.scheduler = gr.Dropdown(
            label="Schedule type", choices=scheduler_names, value=scheduler_names[0]
        )
        return self.steps, self.sampler_name, self.scheduler

    def setup(self, p, steps, sampler_name, scheduler):
        p.steps = steps
        p.sampler_name = sampler_name
        p.scheduler = scheduler
