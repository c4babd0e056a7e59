"""Fake of scripts/xyz_grid.py (A1111 v1.10.1): the built-in "X/Y/Z plot" script.

The WebUI loads it from its own scripts/ folder with modules.scripts.load_scripts, as a
module named "xyz_grid.py" that is not in sys.modules; extensions reach it through
`modules.scripts.scripts_data` (the entry whose `script_class.__module__` is
"xyz_grid.py") and append AxisOption entries to its `axis_options` list before the UI is
built (its Script.ui() reads the list).

Real: `AxisOption(label, type, apply, format_value=format_value_add_label, confirm=None,
cost=0.0, choices=None, prepare=None)`, `AxisOptionImg2Img` / `AxisOptionTxt2Img` (shown
on one tab only); `apply(p, x, xs)` changes a copy of p for one cell; `confirm(p, xs)`
checks all values before any image; `prepare(text)` parses the values text instead of the
CSV split; `format_value(p, opt, x)` is the label on the grid; `choices()` fills a dropdown.
Script.run(p, x_type, x_values, x_values_dropdown, y_type, ..., csv_mode): for each axis,
values are the dropdown (when the option has choices and not csv_mode), `prepare(text)`,
or the CSV split; int/float options expand ranges ("1-5", "1-5 (+2)", "1-5 [3]");
values are converted with `type`, then `confirm`ed; the seed is fixed once; each cell is a
copy of p with x, y and z applied (in that order) and is passed to process_images; cells
are laid out with images.image_grid and labelled with draw_grid_annotations.
Reduced: a subset of the built-in axis options; one grid per Z value without the
combined Z grid; no sub-grid saving; the UI has only the X/Y/Z rows and csv_mode.
"""

from __future__ import annotations

import csv
import re
from copy import copy
from io import StringIO
from itertools import chain

import modules.scripts as scripts
import numpy as np
from modules import images, processing, sd_samplers, sd_schedulers
from modules.processing import Processed, process_images
from modules.shared import opts, state
from PIL import Image


def apply_field(field):
    def fun(p, x, xs):
        setattr(p, field, x)

    return fun


def apply_prompt(p, x, xs):
    if xs[0] not in p.prompt and xs[0] not in p.negative_prompt:
        raise RuntimeError(f"Prompt S/R did not find {xs[0]} in prompt or negative prompt.")

    p.prompt = p.prompt.replace(xs[0], x)
    p.negative_prompt = p.negative_prompt.replace(xs[0], x)


def confirm_samplers(p, xs):
    for x in xs:
        if x.lower() not in sd_samplers.samplers_map:
            raise RuntimeError(f"Unknown sampler: {x}")


def format_value_add_label(p, opt, x):
    if type(x) == float:  # noqa: E721 - as written upstream
        x = round(x, 8)

    return f"{opt.label}: {x}"


def format_value(p, opt, x):
    if type(x) == float:  # noqa: E721 - as written upstream
        x = round(x, 8)
    return x


def format_value_join_list(p, opt, x):
    return ", ".join(x)


def do_nothing(p, x, xs):
    pass


def format_nothing(p, opt, x):
    return ""


def list_to_csv_string(data_list):
    with StringIO() as o:
        csv.writer(o).writerow(data_list)
        return o.getvalue().strip()


def csv_string_to_list_strip(data_str):
    return list(
        map(str.strip, chain.from_iterable(csv.reader(StringIO(data_str), skipinitialspace=True)))
    )


class AxisOption:
    def __init__(
        self,
        label,
        type,
        apply,
        format_value=format_value_add_label,
        confirm=None,
        cost=0.0,
        choices=None,
        prepare=None,
    ):
        self.label = label
        self.type = type
        self.apply = apply
        self.format_value = format_value
        self.confirm = confirm
        self.cost = cost
        self.prepare = prepare
        self.choices = choices


class AxisOptionImg2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = True


class AxisOptionTxt2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = False


axis_options = [
    AxisOption("Nothing", str, do_nothing, format_value=format_nothing),
    AxisOption("Seed", int, apply_field("seed")),
    AxisOption("Steps", int, apply_field("steps")),
    AxisOption("CFG Scale", float, apply_field("cfg_scale")),
    AxisOption("Prompt S/R", str, apply_prompt, format_value=format_value),
    AxisOptionTxt2Img(
        "Sampler",
        str,
        apply_field("sampler_name"),
        format_value=format_value,
        confirm=confirm_samplers,
        choices=lambda: [x.name for x in sd_samplers.samplers if x.name not in opts.hide_samplers],
    ),
    AxisOptionImg2Img(
        "Sampler",
        str,
        apply_field("sampler_name"),
        format_value=format_value,
        confirm=confirm_samplers,
        choices=lambda: [
            x.name for x in sd_samplers.samplers_for_img2img if x.name not in opts.hide_samplers
        ],
    ),
    AxisOption(
        "Schedule type",
        str,
        apply_field("scheduler"),
        choices=lambda: [x.label for x in sd_schedulers.schedulers],
    ),
]

re_range = re.compile(r"\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)(?:\s*\(([+-]\d+)\s*\))?\s*")
re_range_float = re.compile(
    r"\s*([+-]?\s*\d+(?:.\d*)?)\s*-\s*([+-]?\s*\d+(?:.\d*)?)(?:\s*\(([+-]\d+(?:.\d*)?)\s*\))?\s*"
)

re_range_count = re.compile(r"\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)(?:\s*\[(\d+)\s*])?\s*")
re_range_count_float = re.compile(
    r"\s*([+-]?\s*\d+(?:.\d*)?)\s*-\s*([+-]?\s*\d+(?:.\d*)?)(?:\s*\[(\d+(?:.\d*)?)\s*])?\s*"
)


class Script(scripts.Script):
    def title(self):
        return "X/Y/Z plot"

    def ui(self, is_img2img):
        import gradio as gr

        self.current_axis_options = [
            x
            for x in axis_options
            if type(x) == AxisOption or x.is_img2img == is_img2img  # noqa: E721
        ]
        labels = [x.label for x in self.current_axis_options]
        x_type = gr.Dropdown(
            label="X type",
            choices=labels,
            value=labels[1],
            type="index",
            elem_id=self.elem_id("x_type"),
        )
        x_values = gr.Textbox(label="X values", lines=1, elem_id=self.elem_id("x_values"))
        x_values_dropdown = gr.Dropdown(
            label="X values", visible=False, multiselect=True, interactive=True
        )
        y_type = gr.Dropdown(
            label="Y type",
            choices=labels,
            value=labels[0],
            type="index",
            elem_id=self.elem_id("y_type"),
        )
        y_values = gr.Textbox(label="Y values", lines=1, elem_id=self.elem_id("y_values"))
        y_values_dropdown = gr.Dropdown(
            label="Y values", visible=False, multiselect=True, interactive=True
        )
        z_type = gr.Dropdown(
            label="Z type",
            choices=labels,
            value=labels[0],
            type="index",
            elem_id=self.elem_id("z_type"),
        )
        z_values = gr.Textbox(label="Z values", lines=1, elem_id=self.elem_id("z_values"))
        z_values_dropdown = gr.Dropdown(
            label="Z values", visible=False, multiselect=True, interactive=True
        )
        csv_mode = gr.Checkbox(
            label="Use text inputs instead of dropdowns",
            value=False,
            elem_id=self.elem_id("csv_mode"),
        )
        return [
            x_type,
            x_values,
            x_values_dropdown,
            y_type,
            y_values,
            y_values_dropdown,
            z_type,
            z_values,
            z_values_dropdown,
            csv_mode,
        ]

    def run(
        self,
        p,
        x_type,
        x_values,
        x_values_dropdown,
        y_type,
        y_values,
        y_values_dropdown,
        z_type,
        z_values,
        z_values_dropdown,
        csv_mode,
    ):
        x_type, y_type, z_type = x_type or 0, y_type or 0, z_type or 0

        processing.fix_seed(p)
        if not opts.return_grid:
            p.batch_size = 1

        def process_axis(opt, vals, vals_dropdown):
            if opt.label == "Nothing":
                return [0]

            if opt.choices is not None and not csv_mode:
                valslist = vals_dropdown
            elif opt.prepare is not None:
                valslist = opt.prepare(vals)
            else:
                valslist = csv_string_to_list_strip(vals)

            if opt.type is int:
                valslist_ext = []
                for val in valslist:
                    if val.strip() == "":
                        continue
                    m = re_range.fullmatch(val)
                    mc = re_range_count.fullmatch(val)
                    if m is not None:
                        start = int(m.group(1))
                        end = int(m.group(2)) + 1
                        step = int(m.group(3)) if m.group(3) is not None else 1
                        valslist_ext += list(range(start, end, step))
                    elif mc is not None:
                        start = int(mc.group(1))
                        end = int(mc.group(2))
                        num = int(mc.group(3)) if mc.group(3) is not None else 1
                        valslist_ext += [
                            int(x) for x in np.linspace(start=start, stop=end, num=num).tolist()
                        ]
                    else:
                        valslist_ext.append(val)
                valslist = valslist_ext
            elif opt.type is float:
                valslist_ext = []
                for val in valslist:
                    if val.strip() == "":
                        continue
                    m = re_range_float.fullmatch(val)
                    mc = re_range_count_float.fullmatch(val)
                    if m is not None:
                        start = float(m.group(1))
                        end = float(m.group(2))
                        step = float(m.group(3)) if m.group(3) is not None else 1
                        valslist_ext += np.arange(start, end + step, step).tolist()
                    elif mc is not None:
                        start = float(mc.group(1))
                        end = float(mc.group(2))
                        num = int(mc.group(3)) if mc.group(3) is not None else 1
                        valslist_ext += np.linspace(start=start, stop=end, num=num).tolist()
                    else:
                        valslist_ext.append(val)
                valslist = valslist_ext

            valslist = [opt.type(x) for x in valslist]

            if opt.confirm:
                opt.confirm(p, valslist)

            return valslist

        x_opt = self.current_axis_options[x_type]
        if x_opt.choices is not None and not csv_mode:
            x_values = list_to_csv_string(x_values_dropdown)
        xs = process_axis(x_opt, x_values, x_values_dropdown)

        y_opt = self.current_axis_options[y_type]
        if y_opt.choices is not None and not csv_mode:
            y_values = list_to_csv_string(y_values_dropdown)
        ys = process_axis(y_opt, y_values, y_values_dropdown)

        z_opt = self.current_axis_options[z_type]
        if z_opt.choices is not None and not csv_mode:
            z_values = list_to_csv_string(z_values_dropdown)
        zs = process_axis(z_opt, z_values, z_values_dropdown)

        state.job_count = len(xs) * len(ys) * len(zs) * p.n_iter

        def cell(x, y, z):
            if state.interrupted or state.stopping_generation:
                return Processed(p, [], p.seed, "")

            pc = copy(p)
            pc.styles = pc.styles[:]
            x_opt.apply(pc, x, xs)
            y_opt.apply(pc, y, ys)
            z_opt.apply(pc, z, zs)
            return process_images(pc)

        grids, cells, infotexts, prompts = [], [], [], []
        for z in zs:
            row_images = []
            for y in ys:
                for x in xs:
                    res = cell(x, y, z)
                    image = res.images[0] if res.images else Image.new("RGB", (p.width, p.height))
                    row_images.append(image)
                    cells.append(image)
                    infotexts.append(res.infotexts[0] if res.images else "")
                    prompts.append(res.prompt)
            grid = images.image_grid(row_images, rows=len(ys))
            w, h = row_images[0].size
            grid = images.draw_grid_annotations(
                grid,
                w,
                h,
                [[images.GridAnnotation(x_opt.format_value(p, x_opt, x))] for x in xs],
                [[images.GridAnnotation(y_opt.format_value(p, y_opt, y))] for y in ys],
            )
            grids.append(grid)

        return Processed(
            p,
            grids + cells,
            p.seed,
            infotexts[0] if infotexts else "",
            all_prompts=prompts[:1] * len(grids) + prompts,
            infotexts=infotexts[:1] * len(grids) + infotexts,
        )
