"""Fake of modules/sd_samplers.py (A1111 v1.10.1): the sampler list and name lookups.

Real: `all_samplers` = k-diffusion samplers (sd_samplers_kdiffusion.samplers_k_diffusion),
then DDIM, DDIM CFG++, PLMS, UniPC (sd_samplers_timesteps) and LCM (sd_samplers_lcm): the
same 20 names and aliases as shared/fixtures/a1111_tiny_sd1_state_dict.json
facts.samplers, with the real `options` dicts (scheduler, uses_ensd for ancestral
samplers, brownian_noise for SDE samplers, second_order...). `all_samplers_map` by name;
`samplers_map` (filled by `set_samplers()`) maps lower-case names and aliases to names;
`find_sampler_config(name)`; `visible_sampler_names()` skips opts.hide_samplers;
`get_sampler_and_scheduler(sampler_name, scheduler_name, *, convert_automatic=True)` splits
"DPM++ 2M Karras" into ("DPM++ 2M", "Karras"); `fix_p_invalid_sampler_and_scheduler(p)`.
The constructors (which build the real samplers) are left out (None).
"""

from __future__ import annotations

import functools
import logging

from modules import sd_samplers_common, sd_schedulers, shared

_k_diffusion = [
    ("DPM++ 2M", ["k_dpmpp_2m"], {"scheduler": "karras"}),
    ("DPM++ SDE", ["k_dpmpp_sde"], {"scheduler": "karras", "second_order": True, "brownian_noise": True}),
    ("DPM++ 2M SDE", ["k_dpmpp_2m_sde"], {"scheduler": "exponential", "brownian_noise": True}),
    ("DPM++ 2M SDE Heun", ["k_dpmpp_2m_sde_heun"], {"scheduler": "exponential", "brownian_noise": True, "solver_type": "heun"}),
    ("DPM++ 2S a", ["k_dpmpp_2s_a"], {"scheduler": "karras", "uses_ensd": True, "second_order": True}),
    ("DPM++ 3M SDE", ["k_dpmpp_3m_sde"], {"scheduler": "exponential", "discard_next_to_last_sigma": True, "brownian_noise": True}),
    ("Euler a", ["k_euler_a", "k_euler_ancestral"], {"uses_ensd": True}),
    ("Euler", ["k_euler"], {}),
    ("LMS", ["k_lms"], {}),
    ("Heun", ["k_heun"], {"second_order": True}),
    ("DPM2", ["k_dpm_2"], {"scheduler": "karras", "discard_next_to_last_sigma": True, "second_order": True}),
    ("DPM2 a", ["k_dpm_2_a"], {"scheduler": "karras", "discard_next_to_last_sigma": True, "uses_ensd": True, "second_order": True}),
    ("DPM fast", ["k_dpm_fast"], {"uses_ensd": True}),
    ("DPM adaptive", ["k_dpm_ad"], {"uses_ensd": True}),
    ("Restart", ["restart"], {"scheduler": "karras", "second_order": True}),
]  # fmt: skip
_timesteps = [
    ("DDIM", ["ddim"], {}),
    ("DDIM CFG++", ["ddim_cfgpp"], {}),
    ("PLMS", ["plms"], {}),
    ("UniPC", ["unipc"], {}),
]
_lcm = [("LCM", ["k_lcm"], {})]

all_samplers = [
    sd_samplers_common.SamplerData(name, None, aliases, options)
    for name, aliases, options in [*_k_diffusion, *_timesteps, *_lcm]
]
all_samplers_map = {x.name: x for x in all_samplers}

samplers: list = []
samplers_for_img2img: list = []
samplers_map: dict = {}
samplers_hidden: set = set()


def find_sampler_config(name):
    if name is not None:
        config = all_samplers_map.get(name)
    else:
        config = all_samplers[0]
    return config


def set_samplers():
    global samplers, samplers_for_img2img, samplers_hidden

    samplers_hidden = set(getattr(shared.opts, "hide_samplers", []) or [])
    samplers = all_samplers
    samplers_for_img2img = all_samplers

    samplers_map.clear()
    for sampler in all_samplers:
        samplers_map[sampler.name.lower()] = sampler.name
        for alias in sampler.aliases:
            samplers_map[alias.lower()] = sampler.name


def visible_sampler_names():
    return [x.name for x in samplers if x.name not in samplers_hidden]


def visible_samplers():
    return [x for x in samplers if x.name not in samplers_hidden]


@functools.cache
def get_sampler_and_scheduler(sampler_name, scheduler_name, *, convert_automatic=True):
    default_sampler = samplers[0]
    found_scheduler = sd_schedulers.schedulers_map.get(scheduler_name, sd_schedulers.schedulers[0])

    name = sampler_name or default_sampler.name

    for scheduler in sd_schedulers.schedulers:
        name_options = [scheduler.label, scheduler.name, *(scheduler.aliases or [])]

        for name_option in name_options:
            if name.endswith(" " + name_option):
                found_scheduler = scheduler
                name = name[0 : -(len(name_option) + 1)]
                break

    sampler = all_samplers_map.get(name, default_sampler)

    if convert_automatic and sampler.options.get("scheduler", None) == found_scheduler.name:
        found_scheduler = sd_schedulers.schedulers[0]

    return sampler.name, found_scheduler.label


def fix_p_invalid_sampler_and_scheduler(p):
    i_sampler_name, i_scheduler = p.sampler_name, p.scheduler
    p.sampler_name, p.scheduler = get_sampler_and_scheduler(
        p.sampler_name, p.scheduler, convert_automatic=False
    )
    if p.sampler_name != i_sampler_name or i_scheduler != p.scheduler:
        logging.warning(
            f'Sampler Scheduler autocorrection: "{i_sampler_name}" -> "{p.sampler_name}", '
            f'"{i_scheduler}" -> "{p.scheduler}"'
        )


set_samplers()
