"""Fake of modules/sd_samplers_common.py (A1111 v1.10.1): the SamplerData record.

Real: `SamplerDataTuple = namedtuple('SamplerData', ['name', 'constructor', 'aliases',
'options'])` and `SamplerData(SamplerDataTuple)` with `total_steps(steps)` (doubled for
"second_order" samplers); `is_sampler_using_eta_noise_seed_delta(p)`.
"""

from __future__ import annotations

from collections import namedtuple

SamplerDataTuple = namedtuple("SamplerData", ["name", "constructor", "aliases", "options"])


class SamplerData(SamplerDataTuple):
    def total_steps(self, steps):
        if self.options.get("second_order", False):
            steps = steps * 2
        return steps


def is_sampler_using_eta_noise_seed_delta(p):
    """Real: the sampler uses ENSD when its options say `uses_ensd` (eta 0 turns it off)."""
    from modules import sd_samplers

    sampler_config = sd_samplers.find_sampler_config(p.sampler_name)
    eta = p.eta
    if eta is None and p.sampler is not None:
        eta = p.sampler.eta
    if eta is None and sampler_config is not None:
        eta = 0 if sampler_config.options.get("default_eta_is_0", False) else 1.0
    if eta == 0:
        return False
    return sampler_config.options.get("uses_ensd", False)
