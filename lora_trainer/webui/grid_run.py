"""Rendering a planned grid in the WebUI: one process_images call per distinct cell.

Progress goes through shared.state like any generation (the job count is set up front, each
process_images call advances job_no, state.job says which cell). Interrupt stops after the
images already finished (the one cut short is dropped) and returns them with a partial
grid; Skip drops the current image (every cell sharing it) and goes on; "stop generating"
finishes the current cell. The plan's notes (ancestral samplers) go to the comments, which
the UI shows, and into the grid's infotext and extra_generation_params, which the API returns.
"""

from __future__ import annotations

from copy import copy
from dataclasses import dataclass

from modules import errors, images, processing, shared
from modules.processing import Processed
from modules.shared import opts, state
from PIL import Image

from .grid_draw import GridColors, GridTexts, draw_grid
from .grid_layout import plan_layout
from .grid_plan import BaseSettings, CellSettings, GridPlan
from .grid_request import TITLE, AxisKind, GridRequest
from .grid_values import format_number

SKIPPED = "skipped"
NOT_RENDERED = "not rendered"
GRID_BASENAME = "lora_grid"
NOTE_KEY = "LoRA grid note"  # in the grid's infotext: the API's only view of the notes


@dataclass
class CellResult:
    image: Image.Image
    infotext: str
    prompt: str


def base_settings(p) -> BaseSettings:
    """What the user set in the txt2img/img2img tab, as the plan's base."""
    hires = bool(getattr(p, "enable_hr", False))
    width, height = p.width, p.height
    if hires:  # the cells come out at the hires size (StableDiffusionProcessingTxt2Img)
        if p.hr_resize_x or p.hr_resize_y:
            width = p.hr_resize_x or p.hr_resize_y * p.width // p.height
            height = p.hr_resize_y or p.hr_resize_x * p.height // p.width
        else:
            width, height = int(p.width * p.hr_scale), int(p.height * p.hr_scale)
    hr_prompt = getattr(p, "hr_prompt", None) if hires else None
    return BaseSettings(
        prompt=p.prompt,
        sampler_name=p.sampler_name,
        scheduler=p.scheduler,
        steps=int(p.steps),
        cfg_scale=float(p.cfg_scale),
        width=int(width),
        height=int(height),
        hr_prompt=hr_prompt or None,
    )


class GridRender:
    """Runs every cell of `plan` on copies of `p` and assembles the result."""

    def __init__(self, p, plan: GridPlan, request: GridRequest) -> None:
        self.p = p
        self.plan = plan
        self.request = request
        # equal settings give equal images: each is generated (or skipped) once
        self.done: dict[CellSettings, CellResult | str] = {}
        self.template = None  # the first processed cell, for the grid's infotext
        self.stopped: str | None = None

    def run(self) -> Processed:
        p = self.p
        processing.fix_seed(p)
        if p.n_iter * p.batch_size > 1:
            p.comment("Batch count and batch size are ignored: each cell is one image.")
        for note in self.plan.notes:
            p.comment(note)
        state.job_count = self.plan.renders
        shared.total_tqdm.updateTotal(self._total_steps())
        outcomes = [self._cell(cell.settings) for cell in self.plan.cells]
        return self._result(outcomes)

    def _cell(self, settings: CellSettings) -> CellResult | str:
        if settings in self.done:
            return self.done[settings]
        if self.stopped or state.interrupted or state.stopping_generation:
            self.stopped = self.stopped or "stopped"
            return NOT_RENDERED
        state.job = f"LoRA grid: image {len(self.done) + 1} of {self.plan.renders}"
        pc = self._processing(settings)
        try:
            res = processing.process_images(pc)
        except Exception as exc:
            if self.template is None:  # nothing finished yet: show the error itself
                raise
            errors.display(exc, "generating a LoRA grid cell")
            self.p.comment(f"Stopped at a failed image: {type(exc).__name__}: {exc}")
            self.stopped = "failed"
            return NOT_RENDERED
        if state.interrupted:  # the image was cut short: drop it
            self.stopped = "interrupted"
            return NOT_RENDERED
        if state.skipped or not res.images:
            state.skipped = False
            self.done[settings] = SKIPPED  # the cells sharing this image are skipped with it
            return SKIPPED
        for comment in pc.comments:
            self.p.comment(comment)
        index = res.index_of_first_image
        result = CellResult(res.images[index], res.infotexts[index], pc.prompt)
        self.template = self.template or pc
        self.done[settings] = result
        return result

    def _processing(self, settings: CellSettings):
        pc = copy(self.p)
        # dicts and lists the cells must not share (process_images writes into them)
        pc.styles = list(self.p.styles)
        pc.extra_generation_params = dict(self.p.extra_generation_params)
        pc.override_settings = dict(self.p.override_settings)
        pc.comments = {}
        pc.prompt = settings.prompt
        if settings.hr_prompt is not None:
            pc.hr_prompt = settings.hr_prompt
        pc.sampler_name = settings.sampler_name
        pc.scheduler = settings.scheduler
        pc.steps = settings.steps
        pc.cfg_scale = settings.cfg_scale
        pc.n_iter = 1
        pc.batch_size = 1
        pc.do_not_save_grid = True  # a one-image "grid" of process_images is not wanted
        return pc

    def _total_steps(self) -> int:
        steps = sum(s.steps for s in {c.settings for c in self.plan.cells})
        if getattr(self.p, "enable_hr", False):
            hires = self.p.hr_second_pass_steps
            steps += sum(hires or s.steps for s in {c.settings for c in self.plan.cells})
        return steps

    def _result(self, outcomes: list[CellResult | str]) -> Processed:
        p = self.p
        finished = [o for o in outcomes if isinstance(o, CellResult)]
        self._report(outcomes)
        if not finished:
            return Processed(p, [], p.seed, "", subseed=p.subseed)
        self._copy_model_names()
        params = self._grid_params()
        info = self._grid_infotext(params)
        grids = [self._grid(iz, outcomes, info) for iz in range(len(self.plan.z.values))]
        cells = [o for o in outcomes if isinstance(o, CellResult)]
        count = len(grids) + len(cells)
        processed = Processed(
            p,
            [*grids, *(c.image for c in cells)],
            p.seed,
            info,
            subseed=p.subseed,
            all_prompts=[p.prompt] * len(grids) + [c.prompt for c in cells],
            all_seeds=[p.seed] * count,
            all_subseeds=[p.subseed] * count,
            index_of_first_image=len(grids),
            infotexts=[info] * len(grids) + [c.infotext for c in cells],
        )
        # Processed.js() (the API's "info") has no comments but has these: the grid's recipe
        processed.extra_generation_params = params
        return processed

    def _report(self, outcomes: list[CellResult | str]) -> None:
        plan, p = self.plan, self.p
        finished = sum(isinstance(o, CellResult) for o in outcomes)
        skipped = outcomes.count(SKIPPED)
        if plan.renders < plan.count and not self.stopped:  # else not all were generated
            p.comment(
                f"{plan.count - plan.renders} cells repeat another cell's image (weight 0 has "
                f"no LoRA), so {plan.renders} images were generated for {plan.count} cells."
            )
        if skipped:
            p.comment(f"{skipped} cells were skipped.")
        if self.stopped:
            p.comment(f"Stopped: {finished} of {plan.count} cells are done.")

    def _copy_model_names(self) -> None:
        # Processed reads these from p; only the processed copies have them
        for name in ("sd_model_name", "sd_model_hash", "sd_vae_name", "sd_vae_hash"):
            setattr(self.p, name, getattr(self.template, name, None))

    def _grid_params(self) -> dict[str, str]:
        """The grid's infotext parameters: the cells' own, the script's settings, its notes."""
        params = {
            k: v for k, v in self.template.extra_generation_params.items() if k != "Lora hashes"
        }
        params["Script"] = TITLE
        params.update(self.request.infotext())
        if self.plan.notes:
            params[NOTE_KEY] = " ".join(self.plan.notes)
        return params

    def _grid_infotext(self, params: dict[str, str]) -> str:
        """The first cell's infotext with the user's own settings and the grid's parameters."""
        p, gp = self.p, copy(self.template)
        gp.sampler_name, gp.scheduler, gp.steps, gp.cfg_scale = (
            p.sampler_name,
            p.scheduler,
            p.steps,
            p.cfg_scale,
        )
        gp.extra_generation_params = params
        return processing.create_infotext(
            gp, [p.prompt], [p.seed], [p.subseed], index=0, all_negative_prompts=[p.negative_prompt]
        )

    def _grid(self, iz: int, outcomes: list[CellResult | str], info: str) -> Image.Image:
        plan = self.plan
        cells = [o for c, o in zip(plan.cells, outcomes) if c.iz == iz]
        first = next(c for c in outcomes if isinstance(c, CellResult)).image
        layout = plan_layout(
            first.width,
            first.height,
            len(plan.x.values),
            len(plan.y.values),
            gap=self.request.margin,
            row_axis=plan.y.used,
        )
        texts = GridTexts(
            caption=(self._caption(iz), self._settings_line(outcomes)),
            x_title=plan.x.title,
            x_labels=plan.x.labels,
            y_title=plan.y.title,
            y_labels=plan.y.labels,
        )
        colors = GridColors(
            background=opts.grid_background_color,
            text=opts.grid_text_active_color,
            inactive=opts.grid_text_inactive_color,
        )
        drawn = [c.image if isinstance(c, CellResult) else c for c in cells]
        grid = draw_grid(drawn, layout, texts, images.get_font, colors)
        if opts.enable_pnginfo:
            grid.info["parameters"] = info
        complete = all(isinstance(c, CellResult) for c in cells)
        if (
            opts.grid_save
            and not self.p.do_not_save_grid
            and (complete or opts.save_incomplete_images)
        ):
            images.save_image(
                grid,
                self.p.outpath_grids,
                GRID_BASENAME,
                self.p.seed,
                self.p.prompt,
                opts.grid_format,
                info=info,
                short_filename=not opts.grid_extended_filename,
                p=self.p,
                grid=True,
            )
        return grid

    def _caption(self, iz: int) -> str:
        names = ", ".join(lora.name for lora in self.plan.loras)
        if self.plan.z.used:
            return f"{names} - {self.plan.z.labels[iz]}"
        return names

    def _settings_line(self, outcomes: list[CellResult | str]) -> str:
        p, kinds = self.p, {self.plan.y.kind, self.plan.z.kind}
        schedules_vary = AxisKind.SCHEDULE.value in kinds or any(
            v.change.scheduler for a in (self.plan.y, self.plan.z) for v in a.values
        )
        parts = [f"Seed {p.seed}"]
        if AxisKind.SAMPLER.value not in kinds:
            parts.append(str(p.sampler_name))
        if not schedules_vary and p.scheduler:
            parts.append(str(p.scheduler))
        if AxisKind.STEPS.value not in kinds:
            parts.append(f"{p.steps} steps")
        if AxisKind.CFG.value not in kinds:
            parts.append(f"CFG {format_number(p.cfg_scale)}")
        if self.stopped:
            done = sum(isinstance(o, CellResult) for o in outcomes)
            parts.append(f"{self.stopped} after {done} of {self.plan.count}")
        return ", ".join(parts)
