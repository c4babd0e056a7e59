"""Fake of modules/processing.py (A1111 v1.10.1): processing objects, Processed, process_images.

Real:
- `StableDiffusionProcessing` (a dataclass, repr=False) with the generation settings
  (prompt, negative_prompt, styles, seed, subseed, subseed_strength, sampler_name,
  scheduler, batch_size, n_iter, steps, cfg_scale, width, height, do_not_save_samples,
  do_not_save_grid, extra_generation_params, override_settings, ...), `comment(text)`,
  `setup_prompts()`, `save_samples()`, `close()`; `StableDiffusionProcessingTxt2Img` adds
  hires fix fields (enable_hr, hr_scale, hr_resize_x/y, hr_prompt, ...);
- the prompt-conditioning cache: class attributes `cached_c` / `cached_uc` (and
  `cached_hr_c` / `cached_hr_uc` on Txt2Img), each a [params, conds] list that every new
  processing object takes by reference in `__post_init__`; `setup_conds()` (called per
  batch after the extra networks are activated) goes through `get_conds_with_caching`,
  keyed by `cached_params()`; `close()` replaces the class lists only when
  opts.persistent_cond_cache is off (it is on by default);
  `StableDiffusionProcessingImg2Img` adds init_images, denoising_strength, mask fields;
- `Processed(p, images_list, seed=-1, info="", subseed=None, all_prompts=None,
  all_negative_prompts=None, all_seeds=None, all_subseeds=None, index_of_first_image=0,
  infotexts=None, comments="")`: copies p's settings; `comments` come from p.comments (the
  argument is ignored, as in the real one); `js()` is what the UI and the API return;
- `get_fixed_seed(seed)`, `fix_seed(p)`: -1 (or "" / None) draws a random seed;
- `create_infotext(p, all_prompts, all_seeds, all_subseeds, comments=None, iteration=0,
  position_in_batch=0, use_main_prompt=False, index=None, all_negative_prompts=None)`:
  "prompt\\nNegative prompt: ...\\nSteps: 20, Sampler: ..., Seed: ..., ..." with
  p.extra_generation_params merged in and values quoted by infotext_utils.quote;
- `process_images(p)`: applies p.override_settings to opts for the call, fixes the sampler
  and schedule names, then the generation loop: per batch it resets `state.skipped`,
  stops when `state.interrupted` or `state.stopping_generation`, parses `<name:...>`
  extra-network tags out of the prompts and activates them, samples, calls
  `state.nextjob()`, saves each image (images.save_image with its infotext) when
  `p.save_samples()`, and makes a grid only when there is more than one image (or
  opts.grid_only_if_multiple is off) and p.do_not_save_grid is not set.

Left out: the models. The text encoder is `learned_conditioning`, which records each run
in `cond_calls` (a cache hit records nothing). "Sampling" draws a flat-coloured image whose colour is a hash of
what decides a real image (the prompt text without its tags, the extra-network tags, the
negative prompt, sampler, schedule type, steps, CFG, seed, size, and img2img's input), so
equal settings give equal images and any difference gives another image. Test seams:
`calls` records the settings of every process_images call, and `on_sample(p)` (if set)
runs while a batch samples, where a user could press Interrupt, Skip or Stop; an image
whose sampling was interrupted or skipped is drawn darker, as a real one is left noisy.
Styles are not applied (there is no styles database).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from PIL import Image

from modules import extra_networks, images, infotext_utils, sd_samplers, shared
from modules.shared import opts, state

calls: list[dict[str, Any]] = []
cond_calls: list[tuple] = []  # the prompts each text-encoder run encoded (cache misses)
on_sample: Callable[[StableDiffusionProcessing], None] | None = None


@dataclass(repr=False)
class StableDiffusionProcessing:
    sd_model: object = None
    outpath_samples: str = None
    outpath_grids: str = None
    prompt: str = ""
    prompt_for_display: str = None
    negative_prompt: str = ""
    styles: list[str] = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    seed_enable_extras: bool = True
    sampler_name: str = None
    scheduler: str = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool = None
    tiling: bool = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    extra_generation_params: dict[str, Any] = None
    overlay_images: list = None
    eta: float = None
    do_not_reload_embeddings: bool = False
    denoising_strength: float = None
    ddim_discretize: str = None
    s_min_uncond: float = None
    s_churn: float = None
    s_tmax: float = None
    s_tmin: float = None
    s_noise: float = None
    override_settings: dict[str, Any] = None
    override_settings_restore_afterwards: bool = True
    sampler_index: int = None
    refiner_checkpoint: str = None
    refiner_switch_at: float = None
    token_merging_ratio = 0
    token_merging_ratio_hr = 0
    disable_extra_networks: bool = False
    firstpass_image: Image = None

    scripts_value: Any = field(default=None, init=False)
    script_args_value: list = field(default=None, init=False)
    scripts_setup_complete: bool = field(default=False, init=False)

    # class attributes, not fields: the conditioning cache every processing object shares
    cached_uc: ClassVar[list] = [None, None]
    cached_c: ClassVar[list] = [None, None]

    comments: dict = None
    sampler: Any = field(default=None, init=False)
    is_using_inpainting_conditioning: bool = field(default=False, init=False)
    paste_to: tuple | None = field(default=None, init=False)
    is_hr_pass: bool = field(default=False, init=False)

    c: tuple = field(default=None, init=False)
    uc: tuple = field(default=None, init=False)

    color_corrections: list = field(default=None, init=False)

    all_prompts: list = field(default=None, init=False)
    all_negative_prompts: list = field(default=None, init=False)
    all_seeds: list = field(default=None, init=False)
    all_subseeds: list = field(default=None, init=False)
    iteration: int = field(default=0, init=False)
    main_prompt: str = field(default=None, init=False)
    main_negative_prompt: str = field(default=None, init=False)

    prompts: list = field(default=None, init=False)
    negative_prompts: list = field(default=None, init=False)
    seeds: list = field(default=None, init=False)
    subseeds: list = field(default=None, init=False)
    extra_network_data: dict = field(default=None, init=False)

    user: str = field(default=None, init=False)

    sd_model_name: str = field(default=None, init=False)
    sd_model_hash: str = field(default=None, init=False)
    sd_vae_name: str = field(default=None, init=False)
    sd_vae_hash: str = field(default=None, init=False)

    is_api: bool = field(default=False, init=False)

    def __post_init__(self):
        if self.sampler_index is not None:
            print(
                "sampler_index argument for StableDiffusionProcessing does not do anything; use sampler_name",
                file=sys.stderr,
            )
        self.comments = {}
        if self.styles is None:
            self.styles = []
        self.sampler_noise_scheduler_override = None
        self.extra_generation_params = self.extra_generation_params or {}
        self.override_settings = self.override_settings or {}
        self.script_args = self.script_args or {}
        self.refiner_checkpoint_info = None
        if not self.seed_enable_extras:
            self.subseed = -1
            self.subseed_strength = 0
            self.seed_resize_from_h = 0
            self.seed_resize_from_w = 0

        self.cached_uc = StableDiffusionProcessing.cached_uc
        self.cached_c = StableDiffusionProcessing.cached_c

    @property
    def sd_model(self):  # noqa: F811 - the real class shadows its field with this property too
        return shared.sd_model

    @sd_model.setter
    def sd_model(self, value):
        pass

    @property
    def scripts(self):
        return self.scripts_value

    @scripts.setter
    def scripts(self, value):
        self.scripts_value = value
        if self.scripts_value and self.script_args_value and not self.scripts_setup_complete:
            self.setup_scripts()

    @property
    def script_args(self):
        return self.script_args_value

    @script_args.setter
    def script_args(self, value):
        self.script_args_value = value
        if self.scripts_value and self.script_args_value and not self.scripts_setup_complete:
            self.setup_scripts()

    def setup_scripts(self):
        self.scripts_setup_complete = True
        self.scripts.setup_scrips(self, is_ui=not self.is_api)

    def comment(self, text):
        self.comments[text] = 1

    def fill_fields_from_opts(self):
        self.s_min_uncond = (
            self.s_min_uncond if self.s_min_uncond is not None else opts.s_min_uncond
        )
        self.s_churn = self.s_churn if self.s_churn is not None else opts.s_churn
        self.s_tmin = self.s_tmin if self.s_tmin is not None else opts.s_tmin
        self.s_tmax = (self.s_tmax if self.s_tmax is not None else opts.s_tmax) or float("inf")
        self.s_noise = self.s_noise if self.s_noise is not None else opts.s_noise

    def init(self, all_prompts, all_seeds, all_subseeds):
        pass

    def close(self):
        self.sampler = None
        self.c = None
        self.uc = None
        if not opts.persistent_cond_cache:
            StableDiffusionProcessing.cached_c = [None, None]
            StableDiffusionProcessing.cached_uc = [None, None]

    def get_token_merging_ratio(self, for_hr=False):
        if for_hr:
            return (
                self.token_merging_ratio_hr
                or opts.token_merging_ratio_hr
                or self.token_merging_ratio
                or opts.token_merging_ratio
            )
        return self.token_merging_ratio or opts.token_merging_ratio

    def setup_prompts(self):
        if isinstance(self.prompt, list):
            self.all_prompts = self.prompt
        elif isinstance(self.negative_prompt, list):
            self.all_prompts = [self.prompt] * len(self.negative_prompt)
        else:
            self.all_prompts = self.batch_size * self.n_iter * [self.prompt]

        if isinstance(self.negative_prompt, list):
            self.all_negative_prompts = self.negative_prompt
        else:
            self.all_negative_prompts = [self.negative_prompt] * len(self.all_prompts)

        if len(self.all_prompts) != len(self.all_negative_prompts):
            raise RuntimeError(
                f"Received a different number of prompts ({len(self.all_prompts)}) and negative prompts ({len(self.all_negative_prompts)})"
            )

        self.main_prompt = self.all_prompts[0]
        self.main_negative_prompt = self.all_negative_prompts[0]

    def cached_params(
        self,
        required_prompts,
        steps,
        extra_network_data,
        hires_steps=None,
        use_old_scheduling=False,
    ):
        """Returns parameters that invalidate the cond cache if changed"""
        return (
            required_prompts,
            steps,
            hires_steps,
            use_old_scheduling,
            opts.CLIP_stop_at_last_layers,
            shared.sd_model.sd_checkpoint_info,
            extra_network_data,
            opts.sdxl_crop_left,
            opts.sdxl_crop_top,
            self.width,
            self.height,
            opts.fp8_storage,
            opts.cache_fp16_weight,
            opts.emphasis,
        )

    def get_conds_with_caching(
        self, function, required_prompts, steps, caches, extra_network_data, hires_steps=None
    ):
        """function(shared.sd_model, required_prompts, steps, ...) through the first matching
        cache of `caches` ([params, result] lists); a miss fills caches[0] in place."""
        cached_params = self.cached_params(
            required_prompts, steps, extra_network_data, hires_steps, opts.use_old_scheduling
        )
        for cache in caches:
            if cache[0] is not None and cached_params == cache[0]:
                return cache[1]
        cache = caches[0]
        cache[1] = function(
            shared.sd_model, required_prompts, steps, hires_steps, opts.use_old_scheduling
        )
        cache[0] = cached_params
        return cache[1]

    def setup_conds(self):
        # real: prompt_parser.SdConditioning lists and the sampler's total steps
        prompts, negative_prompts = list(self.prompts), list(self.negative_prompts)
        self.firstpass_steps = self.steps
        self.uc = self.get_conds_with_caching(
            learned_conditioning, negative_prompts, self.steps, [self.cached_uc],
            self.extra_network_data,
        )  # fmt: skip
        self.c = self.get_conds_with_caching(
            learned_conditioning, prompts, self.steps, [self.cached_c], self.extra_network_data
        )

    def parse_extra_network_prompts(self):
        self.prompts, self.extra_network_data = extra_networks.parse_prompts(self.prompts)

    def save_samples(self) -> bool:
        """Returns whether generated images need to be written to disk"""
        return (
            opts.samples_save
            and not self.do_not_save_samples
            and (opts.save_incomplete_images or (not state.interrupted and not state.skipped))
        )

    def output_size(self) -> tuple[int, int]:
        """Fake only: the size of the images this processing makes."""
        return self.width, self.height

    def render_inputs(self, index: int) -> list:
        """Fake only: what decides image `index` of the current batch."""
        loras = sorted(
            (name, tuple(params.items))
            for name, params_list in (self.extra_network_data or {}).items()
            for params in params_list
        )
        return [
            self.prompts[index],
            loras,
            self.negative_prompts[index],
            self.sampler_name,
            self.scheduler,
            self.steps,
            self.cfg_scale,
            self.seeds[index],
            self.subseeds[index],
            self.subseed_strength,
            self.output_size(),
        ]


@dataclass(repr=False)
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    enable_hr: bool = False
    denoising_strength: float = 0.75
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str = None
    hr_sampler_name: str = None
    hr_scheduler: str = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    force_task_id: str = None

    cached_hr_uc: ClassVar[list] = [None, None]
    cached_hr_c: ClassVar[list] = [None, None]

    hr_c: tuple | None = field(default=None, init=False)
    hr_uc: tuple | None = field(default=None, init=False)
    all_hr_prompts: list = field(default=None, init=False)
    all_hr_negative_prompts: list = field(default=None, init=False)
    hr_prompts: list = field(default=None, init=False)
    hr_negative_prompts: list = field(default=None, init=False)
    hr_extra_network_data: list = field(default=None, init=False)

    def __post_init__(self):
        super().__post_init__()
        self.cached_hr_uc = StableDiffusionProcessingTxt2Img.cached_hr_uc
        self.cached_hr_c = StableDiffusionProcessingTxt2Img.cached_hr_c

    def close(self):
        super().close()
        self.hr_c = None
        self.hr_uc = None
        if not opts.persistent_cond_cache:
            StableDiffusionProcessingTxt2Img.cached_hr_uc = [None, None]
            StableDiffusionProcessingTxt2Img.cached_hr_c = [None, None]

    def setup_conds(self):
        super().setup_conds()
        self.hr_uc = None
        self.hr_c = None
        if self.enable_hr:  # real: calculate_hr_conds(), the first pass's caches as fallback
            steps = self.hr_second_pass_steps or self.steps
            self.hr_uc = self.get_conds_with_caching(
                learned_conditioning, list(self.hr_negative_prompts or self.negative_prompts),
                self.firstpass_steps, [self.cached_hr_uc, self.cached_uc],
                self.hr_extra_network_data, steps,
            )  # fmt: skip
            self.hr_c = self.get_conds_with_caching(
                learned_conditioning, list(self.hr_prompts), self.firstpass_steps,
                [self.cached_hr_c, self.cached_c], self.hr_extra_network_data, steps,
            )  # fmt: skip

    def setup_prompts(self):
        super().setup_prompts()
        if not self.enable_hr:
            return
        if self.hr_prompt == "":
            self.hr_prompt = self.prompt
        if self.hr_negative_prompt == "":
            self.hr_negative_prompt = self.negative_prompt
        if isinstance(self.hr_prompt, list):
            self.all_hr_prompts = self.hr_prompt
        else:
            self.all_hr_prompts = self.batch_size * self.n_iter * [self.hr_prompt]
        if isinstance(self.hr_negative_prompt, list):
            self.all_hr_negative_prompts = self.hr_negative_prompt
        else:
            self.all_hr_negative_prompts = self.batch_size * self.n_iter * [self.hr_negative_prompt]

    def parse_extra_network_prompts(self):
        super().parse_extra_network_prompts()
        if self.enable_hr:
            n = self.iteration
            self.hr_prompts = self.all_hr_prompts[n * self.batch_size : (n + 1) * self.batch_size]
            self.hr_prompts, self.hr_extra_network_data = extra_networks.parse_prompts(
                self.hr_prompts
            )

    def output_size(self):
        if not self.enable_hr:
            return self.width, self.height
        if self.hr_resize_x or self.hr_resize_y:
            x = self.hr_resize_x or self.hr_resize_y * self.width // self.height
            y = self.hr_resize_y or self.hr_resize_x * self.height // self.width
            return x, y
        return int(self.width * self.hr_scale), int(self.height * self.hr_scale)

    def render_inputs(self, index):
        inputs = super().render_inputs(index)
        if self.enable_hr:
            hr_loras = sorted(
                (name, tuple(params.items))
                for name, params_list in (self.hr_extra_network_data or {}).items()
                for params in params_list
            )
            inputs += [self.hr_prompts[index], hr_loras, self.denoising_strength]
        return inputs


@dataclass(repr=False)
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    init_images: list = None
    resize_mode: int = 0
    denoising_strength: float = 0.75
    image_cfg_scale: float = None
    mask: Any = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int = None
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float = None
    latent_mask: Image = None
    force_task_id: str = None

    image_mask: Any = field(default=None, init=False)

    def __post_init__(self):
        super().__post_init__()
        self.image_mask = self.mask
        self.mask = None
        self.initial_noise_multiplier = (
            opts.initial_noise_multiplier
            if self.initial_noise_multiplier is None
            else self.initial_noise_multiplier
        )

    def init(self, all_prompts, all_seeds, all_subseeds):
        self.extra_generation_params["Denoising strength"] = self.denoising_strength

    def render_inputs(self, index):
        sources = [hashlib.sha256(im.tobytes()).hexdigest() for im in self.init_images or []]
        return [*super().render_inputs(index), sources, self.denoising_strength]


class Processed:
    def __init__(
        self,
        p: StableDiffusionProcessing,
        images_list,
        seed=-1,
        info="",
        subseed=None,
        all_prompts=None,
        all_negative_prompts=None,
        all_seeds=None,
        all_subseeds=None,
        index_of_first_image=0,
        infotexts=None,
        comments="",
    ):
        self.images = images_list
        self.prompt = p.prompt
        self.negative_prompt = p.negative_prompt
        self.seed = seed
        self.subseed = subseed
        self.subseed_strength = p.subseed_strength
        self.info = info
        self.comments = "".join(f"{comment}\n" for comment in p.comments)
        self.width = p.width
        self.height = p.height
        self.sampler_name = p.sampler_name
        self.cfg_scale = p.cfg_scale
        self.image_cfg_scale = getattr(p, "image_cfg_scale", None)
        self.steps = p.steps
        self.batch_size = p.batch_size
        self.restore_faces = p.restore_faces
        self.face_restoration_model = opts.face_restoration_model if p.restore_faces else None
        self.sd_model_name = p.sd_model_name
        self.sd_model_hash = p.sd_model_hash
        self.sd_vae_name = p.sd_vae_name
        self.sd_vae_hash = p.sd_vae_hash
        self.seed_resize_from_w = p.seed_resize_from_w
        self.seed_resize_from_h = p.seed_resize_from_h
        self.denoising_strength = getattr(p, "denoising_strength", None)
        self.extra_generation_params = p.extra_generation_params
        self.index_of_first_image = index_of_first_image
        self.styles = p.styles
        self.job_timestamp = state.job_timestamp
        self.clip_skip = opts.CLIP_stop_at_last_layers
        self.token_merging_ratio = p.token_merging_ratio
        self.token_merging_ratio_hr = p.token_merging_ratio_hr

        self.eta = p.eta
        self.ddim_discretize = p.ddim_discretize
        self.s_churn = p.s_churn
        self.s_tmin = p.s_tmin
        self.s_tmax = p.s_tmax
        self.s_noise = p.s_noise
        self.s_min_uncond = p.s_min_uncond
        self.sampler_noise_scheduler_override = p.sampler_noise_scheduler_override
        self.prompt = self.prompt if not isinstance(self.prompt, list) else self.prompt[0]
        self.negative_prompt = (
            self.negative_prompt
            if not isinstance(self.negative_prompt, list)
            else self.negative_prompt[0]
        )
        self.seed = (
            int(self.seed if not isinstance(self.seed, list) else self.seed[0])
            if self.seed is not None
            else -1
        )
        self.subseed = (
            int(self.subseed if not isinstance(self.subseed, list) else self.subseed[0])
            if self.subseed is not None
            else -1
        )
        self.is_using_inpainting_conditioning = p.is_using_inpainting_conditioning

        self.all_prompts = all_prompts or p.all_prompts or [self.prompt]
        self.all_negative_prompts = (
            all_negative_prompts or p.all_negative_prompts or [self.negative_prompt]
        )
        self.all_seeds = all_seeds or p.all_seeds or [self.seed]
        self.all_subseeds = all_subseeds or p.all_subseeds or [self.subseed]
        self.infotexts = infotexts or [info] * len(images_list)
        self.version = program_version()

    def js(self):
        obj = {
            "prompt": self.all_prompts[0],
            "all_prompts": self.all_prompts,
            "negative_prompt": self.all_negative_prompts[0],
            "all_negative_prompts": self.all_negative_prompts,
            "seed": self.seed,
            "all_seeds": self.all_seeds,
            "subseed": self.subseed,
            "all_subseeds": self.all_subseeds,
            "subseed_strength": self.subseed_strength,
            "width": self.width,
            "height": self.height,
            "sampler_name": self.sampler_name,
            "cfg_scale": self.cfg_scale,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "restore_faces": self.restore_faces,
            "face_restoration_model": self.face_restoration_model,
            "sd_model_name": self.sd_model_name,
            "sd_model_hash": self.sd_model_hash,
            "sd_vae_name": self.sd_vae_name,
            "sd_vae_hash": self.sd_vae_hash,
            "seed_resize_from_w": self.seed_resize_from_w,
            "seed_resize_from_h": self.seed_resize_from_h,
            "denoising_strength": self.denoising_strength,
            "extra_generation_params": self.extra_generation_params,
            "index_of_first_image": self.index_of_first_image,
            "infotexts": self.infotexts,
            "styles": self.styles,
            "job_timestamp": self.job_timestamp,
            "clip_skip": self.clip_skip,
            "is_using_inpainting_conditioning": self.is_using_inpainting_conditioning,
            "version": self.version,
        }
        return json.dumps(obj, default=lambda o: None)

    def infotext(self, p: StableDiffusionProcessing, index):
        return create_infotext(
            p,
            self.all_prompts,
            self.all_seeds,
            self.all_subseeds,
            comments=[],
            position_in_batch=index % self.batch_size,
            iteration=index // self.batch_size,
        )

    def get_token_merging_ratio(self, for_hr=False):
        return self.token_merging_ratio_hr if for_hr else self.token_merging_ratio


def get_fixed_seed(seed):
    if seed == "" or seed is None:
        seed = -1
    elif isinstance(seed, str):
        try:
            seed = int(seed)
        except Exception:
            seed = -1

    if seed == -1:
        return int(random.randrange(4294967294))

    return seed


def fix_seed(p):
    p.seed = get_fixed_seed(p.seed)
    p.subseed = get_fixed_seed(p.subseed)


def program_version():
    """Real: launch.git_tag(); the fixtures' WebUI is the v1.10.1 tag."""
    return "v1.10.1"


def create_infotext(
    p,
    all_prompts,
    all_seeds,
    all_subseeds,
    comments=None,
    iteration=0,
    position_in_batch=0,
    use_main_prompt=False,
    index=None,
    all_negative_prompts=None,
):
    if use_main_prompt:
        index = 0
    elif index is None:
        index = position_in_batch + iteration * p.batch_size

    if all_negative_prompts is None:
        all_negative_prompts = p.all_negative_prompts

    clip_skip = getattr(p, "clip_skip", opts.CLIP_stop_at_last_layers)
    enable_hr = getattr(p, "enable_hr", False)
    token_merging_ratio = p.get_token_merging_ratio()
    token_merging_ratio_hr = p.get_token_merging_ratio(for_hr=True)

    prompt_text = p.main_prompt if use_main_prompt else all_prompts[index]
    negative_prompt = p.main_negative_prompt if use_main_prompt else all_negative_prompts[index]

    generation_params = {
        "Steps": p.steps,
        "Sampler": p.sampler_name,
        "Schedule type": p.scheduler,
        "CFG scale": p.cfg_scale,
        "Image CFG scale": getattr(p, "image_cfg_scale", None),
        "Seed": p.all_seeds[0] if use_main_prompt else all_seeds[index],
        "Face restoration": opts.face_restoration_model if p.restore_faces else None,
        "Size": f"{p.width}x{p.height}",
        "Model hash": p.sd_model_hash if opts.add_model_hash_to_info else None,
        "Model": p.sd_model_name if opts.add_model_name_to_info else None,
        "VAE hash": p.sd_vae_hash if opts.add_vae_hash_to_info else None,
        "VAE": p.sd_vae_name if opts.add_vae_name_to_info else None,
        "Variation seed": (
            None
            if p.subseed_strength == 0
            else (p.all_subseeds[0] if use_main_prompt else all_subseeds[index])
        ),
        "Variation seed strength": (None if p.subseed_strength == 0 else p.subseed_strength),
        "Seed resize from": (
            None
            if p.seed_resize_from_w <= 0 or p.seed_resize_from_h <= 0
            else f"{p.seed_resize_from_w}x{p.seed_resize_from_h}"
        ),
        "Denoising strength": p.extra_generation_params.get("Denoising strength"),
        "Clip skip": None if clip_skip <= 1 else clip_skip,
        "Token merging ratio": None if token_merging_ratio == 0 else token_merging_ratio,
        "Token merging ratio hr": None
        if not enable_hr or token_merging_ratio_hr == 0
        else token_merging_ratio_hr,
        "Init image hash": getattr(p, "init_img_hash", None),
        "RNG": opts.randn_source if opts.randn_source != "GPU" else None,
        "Tiling": "True" if p.tiling else None,
        **p.extra_generation_params,
        "Version": program_version() if opts.add_version_to_infotext else None,
        "User": p.user if opts.add_user_name_to_info else None,
    }

    for key, value in generation_params.items():
        if isinstance(value, list):
            generation_params[key] = value[index]
        elif callable(value):
            generation_params[key] = value(**locals())

    generation_params_text = ", ".join(
        [
            k if k == v else f"{k}: {infotext_utils.quote(v)}"
            for k, v in generation_params.items()
            if v is not None
        ]
    )

    negative_prompt_text = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""

    return f"{prompt_text}{negative_prompt_text}\n{generation_params_text}".strip()


def process_images(p: StableDiffusionProcessing) -> Processed:
    if p.scripts is not None:
        p.scripts.before_process(p)

    stored_opts = {
        k: opts.data[k] if k in opts.data else opts.get_default(k)
        for k in p.override_settings
        if k in opts.data
    }

    try:
        for k, v in p.override_settings.items():
            opts.set(k, v, is_api=True, run_callbacks=False)

        sd_samplers.fix_p_invalid_sampler_and_scheduler(p)

        res = process_images_inner(p)
    finally:
        if p.override_settings_restore_afterwards:
            for k, v in stored_opts.items():
                setattr(opts, k, v)

    return res


def process_images_inner(p: StableDiffusionProcessing) -> Processed:
    if isinstance(p.prompt, list):
        assert len(p.prompt) > 0
    else:
        assert p.prompt is not None

    seed = get_fixed_seed(p.seed)
    subseed = get_fixed_seed(p.subseed)

    if p.restore_faces is None:
        p.restore_faces = opts.face_restoration

    if p.tiling is None:
        p.tiling = opts.tiling

    p.sd_model_name = shared.sd_model.sd_checkpoint_info.name_for_extra
    p.sd_model_hash = shared.sd_model.sd_model_hash
    p.sd_vae_name = None
    p.sd_vae_hash = None

    p.fill_fields_from_opts()
    p.setup_prompts()

    if isinstance(seed, list):
        p.all_seeds = seed
    else:
        p.all_seeds = [
            int(seed) + (x if p.subseed_strength == 0 else 0) for x in range(len(p.all_prompts))
        ]

    if isinstance(subseed, list):
        p.all_subseeds = subseed
    else:
        p.all_subseeds = [int(subseed) + x for x in range(len(p.all_prompts))]

    if p.scripts is not None:
        p.scripts.process(p)

    calls.append(
        {
            "prompt": p.prompt,
            "hr_prompt": getattr(p, "hr_prompt", None),
            "negative_prompt": p.negative_prompt,
            "seed": p.all_seeds[0],
            "subseed": p.all_subseeds[0],
            "sampler_name": p.sampler_name,
            "scheduler": p.scheduler,
            "steps": p.steps,
            "cfg_scale": p.cfg_scale,
            "width": p.width,
            "height": p.height,
            "n_iter": p.n_iter,
            "batch_size": p.batch_size,
        }
    )

    infotexts = []
    output_images = []
    p.init(p.all_prompts, p.all_seeds, p.all_subseeds)

    if state.job_count == -1:
        state.job_count = p.n_iter

    for n in range(p.n_iter):
        p.iteration = n

        if state.skipped:
            state.skipped = False

        if state.interrupted or state.stopping_generation:
            break

        p.prompts = p.all_prompts[n * p.batch_size : (n + 1) * p.batch_size]
        p.negative_prompts = p.all_negative_prompts[n * p.batch_size : (n + 1) * p.batch_size]
        p.seeds = p.all_seeds[n * p.batch_size : (n + 1) * p.batch_size]
        p.subseeds = p.all_subseeds[n * p.batch_size : (n + 1) * p.batch_size]

        if len(p.prompts) == 0:
            break

        p.parse_extra_network_prompts()

        if not p.disable_extra_networks:
            extra_networks.activate(p, p.extra_network_data)

        p.setup_conds()

        if p.n_iter > 1:
            shared.state.job = f"Batch {n + 1} out of {p.n_iter}"

        batch = _sample(p)

        state.nextjob()

        if p.scripts is not None:
            p.prompts = p.all_prompts[n * p.batch_size : (n + 1) * p.batch_size]
            p.negative_prompts = p.all_negative_prompts[n * p.batch_size : (n + 1) * p.batch_size]

        def infotext(index=0, use_main_prompt=False):
            return create_infotext(
                p,
                p.prompts,
                p.seeds,
                p.subseeds,
                use_main_prompt=use_main_prompt,
                index=index,
                all_negative_prompts=p.negative_prompts,
            )

        save_samples = p.save_samples()

        for i, image in enumerate(batch):
            p.batch_index = i
            if save_samples:
                images.save_image(
                    image,
                    p.outpath_samples,
                    "",
                    p.seeds[i],
                    p.prompts[i],
                    opts.samples_format,
                    info=infotext(i),
                    p=p,
                )

            text = infotext(i)
            infotexts.append(text)
            if opts.enable_pnginfo:
                image.info["parameters"] = text
            output_images.append(image)

    if not infotexts:
        infotexts.append(Processed(p, []).infotext(p, 0))

    index_of_first_image = 0
    unwanted_grid_because_of_img_count = len(output_images) < 2 and opts.grid_only_if_multiple
    if (
        (opts.return_grid or opts.grid_save)
        and not p.do_not_save_grid
        and not unwanted_grid_because_of_img_count
    ):
        grid = images.image_grid(output_images, p.batch_size)

        if opts.return_grid:
            text = infotext(use_main_prompt=True)
            infotexts.insert(0, text)
            if opts.enable_pnginfo:
                grid.info["parameters"] = text
            output_images.insert(0, grid)
            index_of_first_image = 1
        if opts.grid_save:
            images.save_image(
                grid,
                p.outpath_grids,
                "grid",
                p.all_seeds[0],
                p.all_prompts[0],
                opts.grid_format,
                info=infotext(use_main_prompt=True),
                short_filename=not opts.grid_extended_filename,
                p=p,
                grid=True,
            )

    if not p.disable_extra_networks and p.extra_network_data:
        extra_networks.deactivate(p, p.extra_network_data)

    res = Processed(
        p,
        images_list=output_images,
        seed=p.all_seeds[0],
        info=infotexts[0],
        subseed=p.all_subseeds[0],
        index_of_first_image=index_of_first_image,
        infotexts=infotexts,
    )

    if p.scripts is not None:
        p.scripts.postprocess(p, res)

    return res


def learned_conditioning(sd_model, prompts, steps, hires_steps=None, use_old_scheduling=False):
    """Stands in for prompt_parser.get_learned_conditioning: records the text-encoder run."""
    cond_calls.append(tuple(prompts))
    return ("cond", tuple(prompts), steps)


def _sample(p: StableDiffusionProcessing) -> list[Image.Image]:
    """Stands in for p.sample() + VAE decoding: one flat-coloured image per prompt."""
    if on_sample is not None:
        on_sample(p)
    cut_short = state.interrupted or state.skipped
    batch = []
    for i in range(len(p.prompts)):
        digest = hashlib.sha256(json.dumps(p.render_inputs(i), default=str).encode()).digest()
        colour = tuple(digest[:3])
        if cut_short:
            colour = tuple(c // 4 for c in colour)
        batch.append(Image.new("RGB", p.output_size(), colour))
    return batch
