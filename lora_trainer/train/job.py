"""A whole training job: check inputs, load the model, train, write the kohya file."""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import TrainConfig
from ..dataset.build import TrainingData, build_training_data
from ..dataset.group import DatasetGroup
from ..errors import ConfigError
from ..lora.kohya_file import KohyaLora, cast_for_save, load_kohya_lora, save_kohya_lora
from ..lora.metadata import TrainingFacts, build_metadata
from ..lora.network import LoraNetwork
from ..lora.network_args import network_options
from ..lora.network_plan import plan_targets
from ..models.bundle import ModelBundle
from ..models.loading import prepare_model
from .checkpoints import CheckpointPlan
from .data_setup import check_bucket_steps, prepare_caches
from .events import EventSink, MessageEvent, StopSignal, ignore_events
from .loop import LoopResult, TrainLoop
from .optim import metadata_config, recorded_optimizer
from .plan import StepPlan, plan_steps
from .precision import Precision, cast_base_weights
from .sampling import ImageSampler, check_sample_setup
from .start_position import StartPosition, apply_start_position, start_position
from .state import ResumeInfo, load_state, owns_outputs, prepare_resume, resume_position


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
    data: TrainingData
    dataset: DatasetGroup
    plan: StepPlan
    output_dir: Path
    seed: int
    session_id: int
    resume: ResumeInfo | None = None  # the state folder this run continues
    start: StartPosition | None = None  # initial_epoch / initial_step


def output_file(output_dir: Path, name: str, epoch: int | None = None) -> Path:
    """kohya's names: `name.safetensors`, and `name-000001.safetensors` per saved epoch."""
    stem = name if epoch is None else f"{name}-{epoch:06d}"
    return output_dir / f"{stem}.safetensors"


def prepare(config: TrainConfig, emit: EventSink = ignore_events) -> PreparedJob:
    """Check the dataset, the output place and the plan; cheap, and before any heavy work."""
    if not config.output_dir:
        raise ConfigError("output_dir is not set", fix="give the folder where the LoRA file goes")
    output_dir = Path(config.output_dir).expanduser()
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError("output_dir is a file, not a folder", where=str(output_dir))
    if config.cache_latents_to_disk and not config.cache_latents:
        # kohya turns cache_latents on too (and writes it so in ss_cache_latents)
        config = dataclasses.replace(config, cache_latents=True)
    data = build_training_data(config, seed=0)
    for line in data.lines:
        emit(MessageEvent(line))
    for warning in data.warnings:
        emit(MessageEvent(warning, level="warning"))
    dataset = data.group
    plan = plan_steps(len(dataset), dataset.num_batches(config.train_batch_size), config)
    dataset.set_max_train_steps(plan.total_steps)
    check_sample_setup(config, emit)
    resume = prepare_resume(config, len(dataset), plan.total_steps, emit)
    start = start_position(config, plan)
    _refuse_overwrite(config, output_dir, plan, resume, start)
    seed = config.seed if config.seed is not None else random.randint(0, 2**32 - 1)
    seed = resume.seed if resume else seed
    dataset.set_seed(seed)  # flips, crops and caption choices follow the run's seed
    session_id = random.randint(0, 2**32 - 1)
    return PreparedJob(config, data, dataset, plan, output_dir, seed, session_id, resume, start)


def _refuse_overwrite(
    config: TrainConfig,
    output_dir: Path,
    plan: StepPlan,
    resume: ResumeInfo | None = None,
    start: StartPosition | None = None,
) -> None:
    if config.overwrite or owns_outputs(resume, output_dir, config.output_name):
        return
    checkpoints = CheckpointPlan(config, output_dir, plan.total_epochs)
    planned = [output_file(output_dir, config.output_name)]
    if start is not None:
        planned += checkpoints.planned_files(start.last_step, start.step, start.epochs_done)
    else:
        planned += checkpoints.planned_files(plan.total_steps, *resume_position(resume))
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


def inject_network(
    bundle: ModelBundle, config: TrainConfig, seed: int, weights: KohyaLora | None = None
) -> LoraNetwork:
    """kohya's targets (block-wise, or the file's with dim_from_weights), init drawn from `seed`."""
    options = network_options(config)
    if options.from_weights and weights is None:
        weights = load_kohya_lora(Path(str(config.network_weights)))
    unet = None if config.network_train_text_encoder_only else bundle.unet
    encoders = [] if config.network_train_unet_only else bundle.text_encoder_prefixes
    pairs = list(zip(encoders, bundle.text_encoders))
    plan = plan_targets(unet, pairs, options, weights)
    if not any(targets for _, targets in plan.parts.values()):
        raise ConfigError(
            "no module gets a LoRA: every trained block has rank 0 or lr weight 0",
            fix="give some blocks a rank and a learning-rate weight above 0",
        )
    torch.manual_seed(seed)
    network = LoraNetwork.inject(plan.parts, options.spec)
    network.block_plan = plan.block_plan
    network.notes = plan.notes
    return network


def _load_network_weights(network: LoraNetwork, weights: KohyaLora, config: TrainConfig) -> None:
    """Continue from network_weights; with dim_from_weights only the modules that were created."""
    tensors = weights.tensors
    if config.dim_from_weights:
        names = {t.kohya_name for t, _ in network.layers()}
        tensors = {k: v for k, v in tensors.items() if k.split(".", 1)[0] in names}
    network.load_kohya_state_dict(tensors, str(config.network_weights))


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
    precision = Precision.from_config(config)
    loaded_here = bundle is None
    if loaded_here:
        emit(MessageEvent(f"Loading {config.pretrained_model_name_or_path}"))
    model = prepare_model(config, bundle, precision.weight_dtype)  # also v2/vae/clip_skip...
    bundle = model.bundle
    emit(MessageEvent(model.summary))
    for warning in model.warnings:
        emit(MessageEvent(warning, level="warning"))
    if loaded_here:
        cast_base_weights(bundle, precision)  # kohya: frozen weights in the mixed-precision type
    weights = load_kohya_lora(Path(config.network_weights)) if config.network_weights else None
    network = inject_network(bundle, config, job.seed, weights)
    for note in network.notes:
        emit(MessageEvent(note, level="warning"))
    try:
        if weights is not None:
            _load_network_weights(network, weights, config)
        network.set_lora_dtype(precision.lora_dtype)  # fp32, or half with full_fp16/full_bf16
        check_bucket_steps(job.dataset, bundle)
        _place(bundle, device, config)
        emit(prepare_caches(job.dataset, bundle, job.config, device, emit))  # CachesReadyEvent
        started_at = time.time()
        save = _saver(job, bundle, network, started_at)
        sampler = ImageSampler(bundle, config, job.output_dir, device, emit)
        loop = TrainLoop(
            bundle, network, job.dataset, config, job.plan, device, emit, stop or StopSignal(), save,
            sampler=sampler if config.sample_prompts else None,
        )  # fmt: skip
        loop.state_facts = {"seed": job.seed}
        if job.resume:
            load_state(loop, job.resume)
        elif job.start:
            apply_start_position(loop, job.start)
            emit(MessageEvent(job.start.describe()))
        emit(MessageEvent(_plan_line(job)))
        result: LoopResult = loop.run()
    finally:
        network.remove()
        for te in bundle.text_encoders:
            if getattr(te, "_require_grads_hook", None) is not None:
                te.disable_input_require_grads()
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
            if not config.network_train_unet_only:
                # transformers' checkpointing is reentrant: unless its input requires grad,
                # the LoRA layers inside get no gradient (kohya's grad-ckpt workaround)
                te.enable_input_require_grads()


def _plan_line(job: PreparedJob) -> str:
    p = job.plan
    return (
        f"Training {p.total_steps} steps: {p.num_samples} images x repeats, batch "
        f"{job.config.train_batch_size}, {p.steps_per_epoch} steps per epoch, {p.total_epochs} epochs, "
        f"seed {job.seed}"
    )


def _saver(job: PreparedJob, bundle: ModelBundle, network: LoraNetwork, started_at: float):
    config = job.config

    def save(epoch: int, step: int, final: bool, path: Path | None = None) -> Path:
        path = path or output_file(job.output_dir, config.output_name, None if final else epoch)
        finished = time.time() if final else None
        facts = training_facts(
            job, bundle, steps=step, epoch=epoch, started_at=started_at, finished_at=finished
        )
        # kohya: without save_precision the file has the network's dtype (half with full_*16)
        lora_dtype = Precision.from_config(config).lora_dtype
        tensors = cast_for_save(network.kohya_state_dict(), config.save_precision, lora_dtype)
        job.output_dir.mkdir(parents=True, exist_ok=True)
        # a run resumed from its own state replaces what its interrupted part wrote
        replace = config.overwrite or owns_outputs(job.resume, job.output_dir, config.output_name)
        save_kohya_lora(path, tensors, build_metadata(facts), overwrite=replace)
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
    optimizer, optimizer_args = recorded_optimizer(config)
    return TrainingFacts(
        config=metadata_config(config),  # the options as kohya's args hold them
        optimizer=optimizer,
        optimizer_args=optimizer_args,
        base_model_name=bundle.source.name,
        base_model_legacy_hash=bundle.source.legacy_hash,
        base_model_sha256=bundle.source.sha256,
        base_model_version=bundle.base_model_version,
        v2=bundle.v2,
        v_parameterization=bundle.v_parameterization,
        sdxl=bundle.is_sdxl,
        **vae_facts(bundle),
        resolution=config.resolution_wh,
        num_train_images=job.dataset.num_train_images,
        num_reg_images=job.dataset.num_reg_images,
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
        **dataset_facts(job.dataset),
    )


def vae_facts(bundle: ModelBundle) -> dict:
    """kohya's ss_vae_name / ss_vae_hash / ss_new_vae_hash when a VAE file replaced the model's."""
    source = bundle.vae_source
    if source is None:
        return {}
    return {
        "vae_name": source.name,
        "vae_legacy_hash": source.legacy_hash,
        "vae_sha256": source.sha256,
    }


def dataset_facts(data: DatasetGroup) -> dict:
    """kohya's dataset metadata: folders mode has ss_bucket_info and ss_reg_dataset_dirs,
    dataset_config mode has ss_datasets instead."""
    facts = {"tag_frequency": data.tag_frequency(), "dataset_dirs": data.dataset_dirs()}
    if data.from_config_file:
        return {**facts, "datasets": data.datasets_metadata()}
    return {**facts, "reg_dataset_dirs": data.reg_dataset_dirs(), "bucket_info": data.bucket_info()}
