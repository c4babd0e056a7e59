"""The training loop: noise a latent, predict it back, step the LoRA weights."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..config import TrainConfig
from ..lora.network import LoraNetwork
from ..models.bundle import ModelBundle
from .batch import make_batch
from .conditioning import encode_conditioning
from .events import EventSink, SavedEvent, StepEvent, StopSignal
from .losses import DenoisingLoss
from .noise import NoiseSchedule
from .optim import build_optimizer, build_scheduler
from .plan import StepPlan

# save(epoch, step, final) -> path of the written file
SaveFn = Callable[[int, int, bool], Path]

LOSS_WINDOW = 100


@dataclass
class LoopResult:
    steps: int
    epoch: int
    stopped: bool
    final_path: Path | None
    losses: list[float]


class TrainLoop:
    """Runs the optimizer steps of one plan; the caller owns model loading and saving."""

    def __init__(
        self,
        bundle: ModelBundle,
        network: LoraNetwork,
        dataset: Dataset,
        config: TrainConfig,
        plan: StepPlan,
        device: torch.device,
        emit: EventSink,
        stop: StopSignal,
        save: SaveFn,
    ) -> None:
        self.bundle, self.network, self.dataset = bundle, network, dataset
        self.config, self.plan, self.device = config, plan, device
        self.emit, self.stop, self.save = emit, stop, save
        self.noise = NoiseSchedule(bundle.scheduler_config, bundle.prediction_type)
        self.loss_fn = DenoisingLoss(config, self.noise)
        self.optimizer = build_optimizer(network, config)
        self.scheduler = build_scheduler(self.optimizer, config, plan.total_steps)
        self.train_te = any(p.startswith("te") for p in network.part_names)
        self.autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
            config.mixed_precision
        )
        self.grad_scaler = (
            torch.amp.GradScaler("cuda") if config.mixed_precision == "fp16" else None
        )
        seed = config.seed or 0
        # one generator for data order, one for latents/noise/timesteps: the order of
        # batches does not depend on how many random numbers a step draws
        self.data_gen = torch.Generator().manual_seed(seed)
        self.noise_gen = torch.Generator().manual_seed(seed + 1)

    def run(self) -> LoopResult:
        losses: list[float] = []
        window: deque[float] = deque(maxlen=LOSS_WINDOW)
        step, epoch, started = 0, 0, time.monotonic()
        final_path = None
        self._set_train_mode(True)
        try:
            for epoch in range(1, self.plan.total_epochs + 1):
                for loss, lrs in self._epoch_steps():
                    step += 1
                    losses.append(loss)
                    window.append(loss)
                    self._emit_step(step, epoch, loss, sum(window) / len(window), lrs, started)
                    if step >= self.plan.total_steps or self.stop.requested:
                        break
                if step >= self.plan.total_steps or self.stop.requested:
                    break
                self._after_epoch(epoch, step)
        finally:
            self._set_train_mode(False)
        stopped = self.stop.requested and step < self.plan.total_steps
        if not stopped or self.stop.save:
            final_path = self._save(epoch, step, final=True)
        return LoopResult(step, epoch, stopped, final_path, losses)

    def _after_epoch(self, epoch: int, step: int) -> None:
        """Work between two epochs (not after the last one, whose file is the final save)."""
        every = self.config.save_every_n_epochs
        if every and epoch % every == 0:
            self._save(epoch, step, final=False)

    def _epoch_steps(self) -> Iterator[tuple[float, dict[str, float]]]:
        """Yields the loss and the learning rates of each optimizer step of one epoch."""
        accum = self.config.gradient_accumulation_steps
        micro_losses: list[float] = []
        for i, batch in enumerate(self._batches()):
            micro_losses.append(self._backward(batch, scale=1.0 / accum))
            last = i == self.plan.batches_per_epoch - 1
            if len(micro_losses) == accum or last:
                lrs = self._optimizer_step()
                yield sum(micro_losses) / len(micro_losses), lrs
                micro_losses = []
                if self.stop.requested:
                    return

    def _batches(self) -> Iterator[list[dict]]:
        size = self.config.train_batch_size
        for indices in self.dataset.epoch_batches(size, self.data_gen):
            yield [self.dataset[i] for i in indices]

    def _backward(self, samples: list[dict], scale: float) -> float:
        batch = make_batch(samples, self.bundle, self.noise_gen, self.device)
        latents = batch.latents
        noise = torch.randn(latents.shape, generator=self.noise_gen).to(self.device)
        timesteps = self.noise.sample_timesteps(len(samples), self.noise_gen, self.device)
        noisy = self.noise.add_noise(latents, noise, timesteps)
        with self._autocast():
            text_grad = torch.enable_grad() if self.train_te else torch.no_grad()
            with text_grad:
                cond = encode_conditioning(self.bundle, batch.captions, batch.extra, self.device)
            pred = self.bundle.unet(
                noisy, timesteps, cond.context, added_cond_kwargs=cond.added_cond_kwargs
            ).sample
        target = self.noise.target(latents, noise, timesteps)
        loss = self.loss_fn(pred, target, timesteps, batch.loss_weights)
        scaled = loss * scale
        if self.grad_scaler is not None:
            scaled = self.grad_scaler.scale(scaled)
        scaled.backward()
        return loss.item()

    def _optimizer_step(self) -> dict[str, float]:
        """One update; returns the learning rate each part was stepped with."""
        lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
        params = self.network.parameters()
        if self.grad_scaler is not None:
            self.grad_scaler.unscale_(self.optimizer)
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return lrs

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _set_train_mode(self, training: bool) -> None:
        # train mode only matters for LoRA dropout and gradient checkpointing; the base
        # modules have no dropout of their own at SD's settings
        for part in self.network.parts:
            part.model.train(training)

    def _emit_step(
        self, step: int, epoch: int, loss: float, avg: float, lrs: dict[str, float], started: float
    ) -> None:
        elapsed = time.monotonic() - started
        eta = elapsed / step * (self.plan.total_steps - step)
        plan = self.plan
        self.emit(
            StepEvent(
                step, plan.total_steps, epoch, plan.total_epochs, loss, avg, lrs, elapsed, eta
            )
        )

    def _save(self, epoch: int, step: int, final: bool) -> Path:
        path = self.save(epoch, step, final)
        self.emit(SavedEvent(path, step, epoch, final))
        return path
