"""The "LoRA comparison grid" script: weight x sampler / steps / CFG / schedule / LoRA / epoch.

scripts/lora_compare_grid.py is the thin A1111 Script; it calls `ui()` and `run()` here.
`run()` checks every setting before the first image (a GridError shows in the WebUI as the
red error under the gallery, and as HTTP 500 with its message through the API), then
renders the cells and returns the grid(s) first, then the cells.

For the Train tab: `grid_job_for_run()` builds the grid of a finished run (its epoch files
x weights, with the run's sample prompt and seed) and `run_grid_job()` renders it. Epoch
files are `<name>-000002.safetensors`: those the LoRA's card lists (the tab keeps them in
the run's work folder by default), or in its `<name>_epochs/` folder (EPOCHS_FOLDER_SUFFIX,
epochs_folder(); the tab's "epochs as cards" layout), or beside it (grid_epochs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .grid_epochs import EPOCHS_FOLDER_SUFFIX, epoch_file_stem, epochs_folder, find_epoch_files
from .grid_plan import build_plan
from .grid_request import DEFAULT_WEIGHTS, TITLE, AxisKind, GridRequest
from .grid_values import GridError

__all__ = [
    "DEFAULT_WEIGHTS",
    "EPOCHS_FOLDER_SUFFIX",
    "TITLE",
    "GridError",
    "GridJob",
    "GridRequest",
    "epoch_file_stem",
    "epochs_folder",
    "grid_job_for_run",
    "render",
    "run",
    "run_grid_job",
    "ui",
]

# kohya's sample_sampler names (and our trainer's extra ones) -> the WebUI's sampler names
KOHYA_TO_WEBUI_SAMPLER = {
    "ddim": "DDIM",
    "pndm": "PLMS",
    "lms": "LMS",
    "k_lms": "LMS",
    "euler": "Euler",
    "k_euler": "Euler",
    "euler_a": "Euler a",
    "k_euler_a": "Euler a",
    "heun": "Heun",
    "dpm_2": "DPM2",
    "k_dpm_2": "DPM2",
    "dpm_2_a": "DPM2 a",
    "k_dpm_2_a": "DPM2 a",
    "dpmsolver": "DPM++ 2M",
    "dpmsolver++": "DPM++ 2M",
    "dpmsingle": "DPM++ 2M",
    "dpm++_2m": "DPM++ 2M",
    "dpm++_2m_karras": "DPM++ 2M Karras",
    "dpm++_2m_sde": "DPM++ 2M SDE",
    "dpm++_2m_sde_karras": "DPM++ 2M SDE Karras",
    "euler_karras": "Euler Karras",
    "heun_karras": "Heun Karras",
    "dpm_2_karras": "DPM2 Karras",
    "dpm_2_a_karras": "DPM2 a Karras",
    "unipc": "UniPC",
}
KOHYA_SAMPLE_DEFAULTS = {"width": 512, "height": 512, "sample_steps": 30, "scale": 7.5}


def ui(script: Any, is_img2img: bool) -> list[Any]:
    """The Script's controls (see grid_ui); their values come back to `run()` in order."""
    from .grid_ui import build_ui

    return build_ui(script, is_img2img)


def run(p: Any, *args: Any) -> Any:
    """Script.run: check the arguments, then render the grid on `p`."""
    return render(p, GridRequest.from_args(args))


def render(p: Any, request: GridRequest) -> Any:
    """Plan every cell (raising GridError before any image on bad input), then render."""
    from modules.shared import opts

    from .grid_host import WebuiCatalog
    from .grid_run import GridRender, base_settings

    catalog = WebuiCatalog()
    plan = build_plan(request, base_settings(p), catalog, max_megapixels=opts.img_max_size_mp)
    for warning in catalog.make_loadable(plan.files):
        p.comment(warning)
    return GridRender(p, plan, request).run()


@dataclass(frozen=True)
class GridJob:
    """A grid to render: the script's settings and the txt2img settings around it."""

    request: GridRequest
    settings: dict[str, Any]  # StableDiffusionProcessingTxt2Img keyword arguments


def grid_job_for_run(
    lora_file: Path, sample: Mapping[str, Any], *, weights: str = DEFAULT_WEIGHTS
) -> GridJob:
    """The grid of a finished run: its epoch files (then the final file) x `weights`.

    `sample` is one of the run's sample prompts with kohya's keys (prompt, negative_prompt,
    width, height, seed, sample_steps, scale, sample_sampler), as train/sample_prompts
    reads them; a missing seed is drawn once for the whole grid.
    """
    lora_file = Path(lora_file)
    if not str(sample.get("prompt") or "").strip():
        raise GridError("the run has no sample prompt", fix="set a sample prompt to render a grid")
    axis = AxisKind.EPOCH if find_epoch_files(lora_file) else AxisKind.NOTHING
    request = GridRequest(loras=(lora_file.stem,), weights=weights, y_type=axis.value, y_values="")
    values = {**KOHYA_SAMPLE_DEFAULTS, **{k: v for k, v in sample.items() if v is not None}}
    settings = {
        "prompt": str(values["prompt"]),
        "negative_prompt": str(values.get("negative_prompt") or ""),
        "seed": int(values.get("seed", -1)),
        "width": int(values["width"]),
        "height": int(values["height"]),
        "steps": int(values["sample_steps"]),
        "cfg_scale": float(values["scale"]),
        "sampler_name": webui_sampler(values.get("sample_sampler")),
        "n_iter": 1,
        "batch_size": 1,
    }
    return GridJob(request, settings)


def webui_sampler(name: str | None) -> str:
    """The WebUI's name for a kohya sample_sampler (kohya's default is ddim)."""
    key = "_".join(str(name or "ddim").strip().lower().split())
    return KOHYA_TO_WEBUI_SAMPLER.get(key, str(name))


def run_grid_job(job: GridJob) -> Any:
    """Render `job` as a txt2img would (call it under the WebUI's queue lock)."""
    from modules import processing, scripts, shared
    from modules.shared import opts

    from .grid_host import WebuiCatalog

    settings = dict(job.settings)
    found = WebuiCatalog().sampler(settings["sampler_name"])
    if found is None:
        raise GridError(
            f"unknown sampler `{settings['sampler_name']}`", where="the run's sample_sampler"
        )
    settings["sampler_name"], settings["scheduler"] = found[0], found[1] or "Automatic"
    p = processing.StableDiffusionProcessingTxt2Img(
        sd_model=shared.sd_model,
        outpath_samples=opts.outdir_samples or opts.outdir_txt2img_samples,
        outpath_grids=opts.outdir_grids or opts.outdir_txt2img_grids,
        **settings,
    )
    runner = scripts.scripts_txt2img
    if runner is not None and runner.inputs:
        # like a txt2img click: the always-on scripts run with their default values, and
        # processing keeps the <lora:...> tags in the saved infotext. As for an API call,
        # p.is_api skips the setup() of the WebUI's sampler and seed controls (always-on
        # scripts, modules/processing_scripts/) that would copy the txt2img tab's values
        # over the job's steps, sampler and seed.
        p.is_api = True
        p.scripts = runner
        p.script_args = [0, *(getattr(c, "value", None) for c in runner.inputs[1:])]
    try:
        return render(p, job.request)
    finally:
        p.close()
