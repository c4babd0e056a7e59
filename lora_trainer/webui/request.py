"""A training request from the tab or the HTTP API, checked in full before the GPU queue is taken."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import TrainConfig, config_from_dict, parse_resolution
from ..errors import ConfigError
from ..train.job import prepare
from ..train.sampling import check_sample_setup
from . import host
from .estimate import Estimate, RunShape, estimate, free_gpu_gib
from .live_model import LiveModelInfo, check_trainable, describe_loaded_model, loaded_model
from .output import OutputPlan, check_overwrite, plan_output
from .settings import current_settings

PROMPTS_FILE = "sample_prompts.txt"
# options the tab sets itself from the loaded model and the output plan
MANAGED = ("output_dir", "device", "pretrained_model_name_or_path", "overwrite")


@dataclass
class TrainRequest:
    """kohya options plus what the tab adds: sample prompt text, card data, consent to replace."""

    options: dict[str, Any]
    sample_prompt: str = ""
    activation_text: str = ""  # empty: the dataset's class tokens
    preferred_weight: float = 0.8
    overwrite: bool = False
    subfolder: str | None = None  # None: the Settings page's default


SAMPLE_KEYS = ("sample_every_n_epochs", "sample_every_n_steps", "sample_at_first")


@dataclass
class PreparedRun:
    """A request that passed every check: the engine config, where files go, what to expect."""

    request: TrainRequest
    config: TrainConfig  # sample_prompts unset: the prompts file is written when the run starts
    output: OutputPlan
    model: LiveModelInfo
    total_steps: int
    total_epochs: int
    activation_text: str
    sample_prompt: str  # the prompts to sample with ("" for none)
    estimate: Estimate
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def with_prompts_in(self, work_dir: Path) -> TrainConfig:
        """The config with the sample prompts written into the run's folder."""
        if not self.sample_prompt:
            return self.config
        path = write_prompts(work_dir, self.sample_prompt)
        return dataclasses.replace(self.config, sample_prompts=str(path))


def write_prompts(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PROMPTS_FILE
    path.write_text(text + "\n", encoding="utf-8")
    return path


def prepare_run(request: TrainRequest) -> PreparedRun:
    """Every check that needs no GPU: model, names, options, dataset, files to be written."""
    model = loaded_model()
    check_trainable(model)
    info = describe_loaded_model()
    settings = current_settings()
    name = str(request.options.get("output_name") or "").strip()
    if not name:
        raise ConfigError("the output name is empty", fix="give the LoRA a name, e.g. my_style")
    subfolder = settings.output_subfolder if request.subfolder is None else request.subfolder
    output = plan_output(
        host.lora_dir(),
        subfolder,
        name,
        host.outputs_dir(),
        epochs_as_cards=settings.epochs_as_cards,
    )
    check_overwrite(output, host.lora_dir(), request.overwrite)
    values = engine_options(request, info, output)
    sampling = {k: values.pop(k) for k in SAMPLE_KEYS if k in values}
    lines: list[str] = []
    warnings: list[str] = []
    job = prepare(
        config_from_dict(values, source="training options"), emit=_collect(lines, warnings)
    )
    activation = request.activation_text.strip() or class_tokens(job)
    prompt = sample_prompt_text(request, sampling, activation, values)
    with tempfile.TemporaryDirectory(prefix="lora-trainer-check-") as scratch:
        if prompt:
            values.update(sampling, sample_prompts=str(write_prompts(Path(scratch), prompt)))
        config = config_from_dict(values, source="training options")
        check_sample_setup(config, _collect(lines, warnings))
    config = dataclasses.replace(config, sample_prompts=None)
    shape = run_shape(config, info, job.plan.total_steps)
    return PreparedRun(
        request,
        config,
        output,
        info,
        job.plan.total_steps,
        job.plan.total_epochs,
        activation,
        prompt,
        estimate(shape, free_gpu_gib(info.device)),
        lines,
        warnings,
    )


def sample_prompt_text(
    request: TrainRequest, sampling: dict[str, Any], activation: str, values: dict[str, Any]
) -> str:
    """The prompts to sample with: the user's, else the trigger words at the training size."""
    text = request.sample_prompt.strip()
    if text and not any(sampling.values()):
        sampling["sample_every_n_epochs"] = 1  # a prompt without a frequency: once per epoch
    if not any(sampling.values()):
        return ""
    if text or not activation:
        return text
    width, height = parse_resolution(values.get("resolution", "512"))
    return f"{activation} --w {width} --h {height}"


def engine_options(
    request: TrainRequest, info: LiveModelInfo, output: OutputPlan
) -> dict[str, Any]:
    """The engine's options: the user's, with what the loaded model and the output plan decide."""
    given = {k: v for k, v in request.options.items() if k not in MANAGED}
    values: dict[str, Any] = {
        "resolution": str(info.default_resolution),
        "mixed_precision": default_precision(info),
        "caption_extension": ".txt",
        **{k: v for k, v in given.items() if v is not None and v != ""},
    }
    _check_model_flags(values, info)
    values.update(
        output_dir=str(output.work_dir),
        output_name=output.name,
        device=str(info.device),
        pretrained_model_name_or_path=str(info.path) if info.path else info.title,
        v_parameterization=info.v_prediction,
    )
    if info.dtype in _half_types() and values["mixed_precision"] == "no":
        raise ConfigError(
            f"the loaded model's weights are {str(info.dtype).removeprefix('torch.')}, "
            "which cannot train without mixed precision",
            fix='set mixed precision to "bf16" or "fp16" (or start the WebUI with --no-half)',
        )
    return values


def _half_types() -> tuple:
    import torch

    return (torch.float16, torch.bfloat16)


def _check_model_flags(values: dict[str, Any], info: LiveModelInfo) -> None:
    """kohya's v2 / sdxl / v_parameterization switches must agree with the loaded model."""
    flags = {"v2": info.arch == "sd2", "sdxl": info.arch == "sdxl"}
    for name, actual in flags.items():
        if name in values and bool(values[name]) != actual:
            raise ConfigError(
                f"option {name} is {bool(values[name])} but the loaded model is {info.label}",
                fix=f"leave {name} out: the model family is taken from the loaded checkpoint",
            )
    if "v_parameterization" in values and bool(values["v_parameterization"]) != info.v_prediction:
        raise ConfigError(
            f"option v_parameterization does not match the loaded model ({info.label})",
            fix="leave it out: it is taken from the loaded checkpoint",
        )


def default_precision(info: LiveModelInfo) -> str:
    """bf16 where the GPU has it, fp16 on older GPUs, none on the CPU."""
    import torch

    if info.device.type != "cuda":
        return "bf16" if info.dtype == torch.bfloat16 else "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def class_tokens(job: Any) -> str:
    """The training folders' class tokens ("sks dog"), the default activation text."""
    tokens: list[str] = []
    for dataset in getattr(job.dataset, "datasets", []):
        for subset in getattr(dataset, "subsets", []) or []:
            spec = getattr(subset, "spec", subset)
            text = getattr(spec, "class_tokens", None)
            if text and not getattr(spec, "is_reg", False) and text not in tokens:
                tokens.append(text)
    return ", ".join(tokens)


def run_shape(config: TrainConfig, info: LiveModelInfo, total_steps: int) -> RunShape:
    width, height = config.resolution_wh
    return RunShape(
        arch=info.arch or "sd1",
        width=width,
        height=height,
        batch_size=config.train_batch_size,
        rank=config.network_dim,
        total_steps=total_steps,
        mixed_precision=config.mixed_precision,
        gradient_checkpointing=config.gradient_checkpointing,
        cache_latents=bool(config.cache_latents or config.cache_latents_to_disk),
        train_text_encoder=not config.network_train_unet_only,
        on_gpu=info.device.type == "cuda",
    )


def _collect(lines: list[str], warnings: list[str]):
    from ..train.events import MessageEvent

    def sink(event: Any) -> None:
        if isinstance(event, MessageEvent):
            (warnings if event.level == "warning" else lines).append(event.text)

    return sink


def remove_if_empty(folder: Path) -> None:
    """Tidy a run folder that got nothing written (a run stopped before its first save)."""
    if folder.is_dir() and not any(
        p.is_file() and p.name != PROMPTS_FILE for p in folder.rglob("*")
    ):
        shutil.rmtree(folder, ignore_errors=True)
