"""A whole training job: check inputs, load the model, train, write the kohya file."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import TrainConfig
from ..dataset.folders import DatasetScan, scan_image_folder
from ..dataset.image_dataset import ImageCaptionDataset
from ..dataset.images import read_image_size
from ..errors import ConfigError
from ..lora.kohya_file import cast_for_save, load_kohya_lora, save_kohya_lora
from ..lora.metadata import TrainingFacts, build_metadata
from ..lora.network import LoraNetwork, NetworkSpec
from ..lora.targets import text_encoder_targets, unet_targets
from ..models.bundle import ModelBundle
from ..models.loading import load_bundle
from .events import EventSink, MessageEvent, StopSignal, ignore_events
from .loop import LoopResult, TrainLoop
from .plan import StepPlan, plan_steps


@dataclass
class TrainResult:
    output_path: Path | None
    steps: int
    epochs: int
    stopped: bool
    losses: list[float]
    seed: int


@dataclass
class PreparedJob:
    """Everything checked before any model is loaded."""

    config: TrainConfig
    scan: DatasetScan
    dataset: ImageCaptionDataset
    plan: StepPlan
    output_dir: Path
    seed: int
    session_id: int


def output_file(output_dir: Path, name: str, epoch: int | None = None) -> Path:
    """kohya's names: `name.safetensors`, and `name-000001.safetensors` per saved epoch."""
    stem = name if epoch is None else f"{name}-{epoch:06d}"
    return output_dir / f"{stem}.safetensors"


def prepare(config: TrainConfig, emit: EventSink = ignore_events) -> PreparedJob:
    """Check the dataset, the output place and the plan; cheap, and before any heavy work."""
    if not config.train_data_dir:
        raise ConfigError(
            "train_data_dir is not set", fix="point it at a folder of N_token sub-folders"
        )
    if not config.output_dir:
        raise ConfigError("output_dir is not set", fix="give the folder where the LoRA file goes")
    output_dir = Path(config.output_dir).expanduser()
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError("output_dir is a file, not a folder", where=str(output_dir))
    scan = scan_image_folder(config.train_data_dir, caption_extension=config.caption_extension)
    for line in scan.summary_lines():
        emit(MessageEvent(line))
    for warning in scan.warnings:
        emit(MessageEvent(warning, level="warning"))
    dataset = ImageCaptionDataset(scan, config.resolution_wh, config.caption_extension)
    dataset.check_images()
    plan = plan_steps(len(dataset), dataset.num_batches(config.train_batch_size), config)
    _refuse_overwrite(config, output_dir, plan)
    seed = config.seed if config.seed is not None else random.randint(0, 2**32 - 1)
    return PreparedJob(config, scan, dataset, plan, output_dir, seed, random.randint(0, 2**32 - 1))


def _refuse_overwrite(config: TrainConfig, output_dir: Path, plan: StepPlan) -> None:
    if config.overwrite:
        return
    planned = [output_file(output_dir, config.output_name)]
    if config.save_every_n_epochs:
        every = config.save_every_n_epochs
        planned += [
            output_file(output_dir, config.output_name, e)
            for e in range(every, plan.total_epochs, every)
        ]
    existing = [p for p in planned if p.exists()]
    if existing:
        raise ConfigError(
            "the output file already exists",
            where=str(existing[0]),
            fix="choose another output_name, or pass --overwrite to replace it",
        )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"device {name!r} is not valid", fix='use "auto", "cpu" or "cuda"'
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device is cuda but no CUDA GPU is available", fix='use device = "cpu"')
    return device


def inject_network(bundle: ModelBundle, config: TrainConfig, seed: int) -> LoraNetwork:
    """kohya's targets with kaiming-uniform init drawn from `seed`."""
    models = {}
    if not config.network_train_text_encoder_only:
        models["unet"] = (bundle.unet, unet_targets(bundle.unet))
    if not config.network_train_unet_only:
        for prefix, te in zip(bundle.text_encoder_prefixes, bundle.text_encoders):
            models[prefix.removeprefix("lora_")] = (te, text_encoder_targets(te, prefix))
    torch.manual_seed(seed)
    return LoraNetwork.inject(models, NetworkSpec(config.network_dim, config.network_alpha))


def run_training(
    config: TrainConfig,
    *,
    bundle: ModelBundle | None = None,
    emit: EventSink = ignore_events,
    stop: StopSignal | None = None,
) -> TrainResult:
    """Train one LoRA as configured; `bundle` is the model when the caller already holds one."""
    job = prepare(config, emit)
    device = resolve_device(config.device)
    _check_precision(config, device)
    if bundle is None:
        emit(MessageEvent(f"Loading {config.pretrained_model_name_or_path}"))
        bundle = load_bundle(config.pretrained_model_name_or_path)
    network = inject_network(bundle, config, job.seed)
    try:
        if config.network_weights:
            lora = load_kohya_lora(Path(config.network_weights))
            network.load_kohya_state_dict(lora.tensors, config.network_weights)
        _place(bundle, device, config)
        started_at = time.time()
        save = _saver(job, bundle, network, started_at)
        loop = TrainLoop(
            bundle, network, job.dataset, config, job.plan, device, emit, stop or StopSignal(), save
        )
        emit(MessageEvent(_plan_line(job)))
        result: LoopResult = loop.run()
    finally:
        network.remove()
    return TrainResult(
        result.final_path, result.steps, result.epoch, result.stopped, result.losses, job.seed
    )


def _check_precision(config: TrainConfig, device: torch.device) -> None:
    if config.mixed_precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            "mixed_precision fp16 needs a CUDA GPU",
            fix='use mixed_precision = "bf16" or "no" on the CPU',
        )


def _place(bundle: ModelBundle, device: torch.device, config: TrainConfig) -> None:
    for module in bundle.modules().values():
        module.to(device)
    if config.gradient_checkpointing:
        bundle.unet.enable_gradient_checkpointing()
        for te in bundle.text_encoders:
            te.gradient_checkpointing_enable()


def _plan_line(job: PreparedJob) -> str:
    p = job.plan
    return (
        f"Training {p.total_steps} steps: {p.num_samples} images x repeats, batch "
        f"{job.config.train_batch_size}, {p.steps_per_epoch} steps per epoch, {p.total_epochs} epochs, "
        f"seed {job.seed}"
    )


def _saver(job: PreparedJob, bundle: ModelBundle, network: LoraNetwork, started_at: float):
    config = job.config

    def save(epoch: int, step: int, final: bool) -> Path:
        path = output_file(job.output_dir, config.output_name, None if final else epoch)
        finished = time.time() if final else None
        facts = training_facts(
            job, bundle, steps=step, epoch=epoch, started_at=started_at, finished_at=finished
        )
        tensors = cast_for_save(network.kohya_state_dict(), config.save_precision)
        job.output_dir.mkdir(parents=True, exist_ok=True)
        save_kohya_lora(path, tensors, build_metadata(facts), overwrite=config.overwrite)
        return path

    return save


def training_facts(
    job: PreparedJob,
    bundle: ModelBundle,
    *,
    steps: int,
    epoch: int,
    started_at: float,
    finished_at: float | None,
) -> TrainingFacts:
    """What this run knows, in the form the kohya metadata writer takes."""
    config, plan = job.config, job.plan
    return TrainingFacts(
        config=config,
        base_model_name=bundle.source.name,
        base_model_legacy_hash=bundle.source.legacy_hash,
        base_model_sha256=bundle.source.sha256,
        base_model_version=bundle.base_model_version,
        v_parameterization=bundle.prediction_type == "v_prediction",
        resolution=config.resolution_wh,
        num_train_images=plan.num_samples,
        num_batches_per_epoch=plan.batches_per_epoch,
        num_epochs=plan.total_epochs,
        batch_size=config.train_batch_size,
        total_batch_size=config.train_batch_size * config.gradient_accumulation_steps,
        max_train_steps=plan.total_steps,
        steps=steps,
        epoch=epoch,
        seed=job.seed,
        training_started_at=started_at,
        training_finished_at=finished_at,
        session_id=job.session_id,
        tag_frequency=job.dataset.tag_frequency(),
        dataset_dirs=job.dataset.dataset_dirs(),
        bucket_info=single_bucket_info(job),
    )


def single_bucket_info(job: PreparedJob) -> dict:
    """kohya's bucket_info without buckets: one bucket at the training resolution."""
    width, height = job.config.resolution_wh
    errors = []
    for item in job.dataset.items:
        w, h = read_image_size(item.image_path)
        errors.append(abs(width / height - w / h))
    mean_error = sum(errors) / len(errors) if errors else 0.0
    return {
        "buckets": {"0": {"resolution": [width, height], "count": job.plan.num_samples}},
        "mean_img_ar_error": mean_error,
    }
