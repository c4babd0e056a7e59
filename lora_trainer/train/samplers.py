"""Sampler names (kohya's and the WebUI's) and the diffusers schedulers they stand for."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class SamplerSpec:
    """A diffusers scheduler class and the settings that make it a given sampler."""

    scheduler: str  # class name in diffusers
    options: dict[str, Any] = field(default_factory=dict)


_DPMPP_2M = {"algorithm_type": "dpmsolver++", "solver_order": 2}
_KARRAS = {"use_karras_sigmas": True}

# canonical name -> scheduler; the first names are kohya's sample_sampler choices
SAMPLERS: dict[str, SamplerSpec] = {
    "ddim": SamplerSpec("DDIMScheduler"),
    # PLMS, as SD's own PNDM config sets it (kohya leaves the Runge-Kutta warm-up on, which
    # fails below ~8 steps)
    "pndm": SamplerSpec("PNDMScheduler", {"skip_prk_steps": True}),
    "lms": SamplerSpec("LMSDiscreteScheduler"),
    "euler": SamplerSpec("EulerDiscreteScheduler"),
    "euler_a": SamplerSpec("EulerAncestralDiscreteScheduler"),
    "heun": SamplerSpec("HeunDiscreteScheduler"),
    "dpm_2": SamplerSpec("KDPM2DiscreteScheduler"),
    "dpm_2_a": SamplerSpec("KDPM2AncestralDiscreteScheduler"),
    "dpmsolver": SamplerSpec("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver"}),
    "dpmsolver++": SamplerSpec("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpmsingle": SamplerSpec("DPMSolverSinglestepScheduler"),
    # beyond kohya: the WebUI's most used samplers
    "dpm++_2m": SamplerSpec("DPMSolverMultistepScheduler", _DPMPP_2M),
    "dpm++_2m_karras": SamplerSpec("DPMSolverMultistepScheduler", {**_DPMPP_2M, **_KARRAS}),
    "dpm++_2m_sde": SamplerSpec(
        "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}
    ),
    "dpm++_2m_sde_karras": SamplerSpec(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, **_KARRAS},
    ),
    "euler_karras": SamplerSpec("EulerDiscreteScheduler", _KARRAS),
    "heun_karras": SamplerSpec("HeunDiscreteScheduler", _KARRAS),
    "dpm_2_karras": SamplerSpec("KDPM2DiscreteScheduler", _KARRAS),
    "dpm_2_a_karras": SamplerSpec("KDPM2AncestralDiscreteScheduler", _KARRAS),
    "unipc": SamplerSpec("UniPCMultistepScheduler"),
}

# other spellings -> canonical name (looked up after lower-casing and spaces to "_")
ALIASES: dict[str, str] = {
    "k_lms": "lms",
    "k_euler": "euler",
    "k_euler_a": "euler_a",
    "k_dpm_2": "dpm_2",
    "k_dpm_2_a": "dpm_2_a",
    "plms": "pndm",
    "dpm2": "dpm_2",
    "dpm2_a": "dpm_2_a",
    "dpm2_karras": "dpm_2_karras",
    "dpm2_a_karras": "dpm_2_a_karras",
    "dpmpp_2m": "dpm++_2m",
    "dpmpp_2m_karras": "dpm++_2m_karras",
    "dpmpp_2m_sde": "dpm++_2m_sde",
    "dpmpp_2m_sde_karras": "dpm++_2m_sde_karras",
    "k_dpmpp_2m": "dpm++_2m",
    "k_dpmpp_2m_karras": "dpm++_2m_karras",
}

KOHYA_DEFAULT_SAMPLER = "ddim"


def canonical_sampler(name: str, where: str = "sample_sampler") -> str:
    """The canonical name for a kohya or WebUI sampler name; a clear error for an unknown one."""
    key = "_".join(str(name).strip().lower().split())
    key = ALIASES.get(key, key)
    if key not in SAMPLERS:
        raise ConfigError(
            f"sampler {name!r} is not known",
            where=where,
            fix="use one of: "
            + ", ".join([*SAMPLERS, "or the WebUI names like 'DPM++ 2M Karras'"]),
        )
    return key


def build_scheduler(
    name: str,
    scheduler_config: dict[str, Any],
    prediction_type: str = "epsilon",
    zero_terminal_snr: bool = False,
) -> Any:
    """A fresh diffusers scheduler for sampler `name`, from the model's own noise schedule."""
    import diffusers  # here, so that checking a sampler name stays light

    spec = SAMPLERS[canonical_sampler(name)]
    cls = getattr(diffusers, spec.scheduler)
    options = {**spec.options, "prediction_type": prediction_type}
    accepted = inspect.signature(cls.__init__).parameters
    if zero_terminal_snr and "rescale_betas_zero_snr" in accepted:
        # a model trained to zero terminal SNR must start sampling from the last timestep
        options.update(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    return cls.from_config(scheduler_config, **options)
