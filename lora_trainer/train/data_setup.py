"""Dataset work that needs the model: kohya's bucket-step rule, the latent cache, the text-encoder cache."""

from __future__ import annotations

import time

import torch

from ..config import TrainConfig
from ..dataset.group import DatasetGroup
from ..dataset.latent_cache import cache_latents, vae_fingerprint, vae_posterior
from ..dataset.text_cache import cache_text_encoder_outputs
from ..errors import ConfigError
from ..models.bundle import ModelBundle
from .batch import collate_extras
from .conditioning import PromptOptions, encode_conditioning
from .events import CachesReadyEvent, EventSink, MessageEvent
from .precision import Precision

# kohya's verify_bucket_reso_steps: SD1/SD2 (train_network.py) and SDXL (sdxl_train_network.py)
BUCKET_STEP_MULTIPLE = {"sd1": 64, "sd2": 64, "sdxl": 32}
_PROGRESS_EVERY_S = 5.0


def check_bucket_steps(data: DatasetGroup, bundle: ModelBundle) -> None:
    """Refuse bucket_reso_steps the model family cannot take (kohya asserts the same)."""
    multiple = BUCKET_STEP_MULTIPLE.get(bundle.arch, 64)
    for dataset in data.datasets:
        buckets = dataset.spec.buckets
        if buckets.enable and buckets.reso_steps % multiple:
            raise ConfigError(
                f"bucket_reso_steps {buckets.reso_steps} does not suit this {bundle.arch} model: "
                f"it must be a multiple of {multiple}",
                fix=f"set bucket_reso_steps = {multiple}",
            )


def prepare_caches(
    data: DatasetGroup,
    bundle: ModelBundle,
    config: TrainConfig,
    device: torch.device,
    emit: EventSink,
) -> CachesReadyEvent:
    """Fill the latent cache and the text-encoder cache the options ask for (modules already on `device`)."""
    latents = texts = None
    if config.cache_latents or config.cache_latents_to_disk:
        latents = _cache_latents(data, bundle, config, emit)
    if config.cache_text_encoder_outputs:
        texts = _cache_text(data, bundle, config, device, emit)
    return CachesReadyEvent(latents=latents, text_encoder_outputs=texts)


def _cache_latents(
    data: DatasetGroup, bundle: ModelBundle, config: TrainConfig, emit: EventSink
) -> int:
    """Returns how many images have their latents cached."""
    cached = 0
    encode, fingerprint = vae_posterior(bundle.vae), vae_fingerprint(bundle.vae)
    where = "to disk" if config.cache_latents_to_disk else "in memory"
    emit(MessageEvent(f"Caching latents {where}"))
    for dataset in data.datasets:
        report = cache_latents(
            dataset,
            encode,
            fingerprint,
            to_disk=config.cache_latents_to_disk,
            batch_size=config.vae_batch_size,
            progress=_progress("Caching latents", emit),
        )
        for warning in report.warnings:
            emit(MessageEvent(warning, level="warning"))
        line = f"Latents: {report.encoded} images encoded"
        if config.cache_latents_to_disk:
            line += f", {report.reused} read from the disk cache, {report.written} files written"
        emit(MessageEvent(line))
        cached += report.encoded + report.reused
    return cached


def _cache_text(
    data: DatasetGroup,
    bundle: ModelBundle,
    config: TrainConfig,
    device: torch.device,
    emit: EventSink,
) -> int:
    """Returns how many text-encoder outputs were cached."""
    precision, options = Precision.from_config(config), PromptOptions.from_config(config)

    def encode(captions: list[str], extras: list[dict]) -> object:
        # the same call, options and precision as an uncached step
        with torch.no_grad(), precision.autocast(device):
            extra = collate_extras(extras, device)
            return encode_conditioning(bundle, captions, extra, device, options)

    emit(MessageEvent("Caching text encoder outputs"))
    # SDXL conditions on image sizes too, so its entries are per caption and sizes
    cache = cache_text_encoder_outputs(
        data.datasets, encode, bundle.is_sdxl, _progress("Caching captions", emit)
    )
    emit(MessageEvent(f"Text encoder outputs: {len(cache)} cached"))
    return len(cache)


def _progress(label: str, emit: EventSink):
    last = [time.monotonic()]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= _PROGRESS_EVERY_S:
            last[0] = now
            emit(MessageEvent(f"{label}: {done} of {total}"))

    return report
