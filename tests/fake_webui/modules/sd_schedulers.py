"""Fake of modules/sd_schedulers.py (A1111 v1.10.1): the "Schedule type" list.

Real: `Scheduler(name, label, function, default_rho=-1, need_inner_model=False,
aliases=None)`, `schedulers` (12, in this order: shared/fixtures/a1111_tiny_sd1_state_dict.json
facts.schedulers lists the same names, labels and aliases from a running v1.10.1) and
`schedulers_map` (by name and by label). The sigma functions are left out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass
class Scheduler:
    name: str
    label: str
    function: Callable | None = None
    default_rho: float = -1
    need_inner_model: bool = False
    aliases: list | None = None


schedulers = [
    Scheduler("automatic", "Automatic", None),
    Scheduler("uniform", "Uniform", None, need_inner_model=True),
    Scheduler("karras", "Karras", None, default_rho=7.0),
    Scheduler("exponential", "Exponential", None),
    Scheduler("polyexponential", "Polyexponential", None, default_rho=1.0),
    Scheduler("sgm_uniform", "SGM Uniform", None, need_inner_model=True, aliases=["SGMUniform"]),
    Scheduler("kl_optimal", "KL Optimal", None),
    Scheduler("align_your_steps", "Align Your Steps", None),
    Scheduler("simple", "Simple", None, need_inner_model=True),
    Scheduler("normal", "Normal", None, need_inner_model=True),
    Scheduler("ddim", "DDIM", None, need_inner_model=True),
    Scheduler("beta", "Beta", None, need_inner_model=True),
]

schedulers_map = {**{x.name: x for x in schedulers}, **{x.label: x for x in schedulers}}
