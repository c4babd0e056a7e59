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
from ..dataset.loading import BatchRequest
from ..dataset.prefetch import BatchFeed, open_feed
from ..lora.max_norm import MaxNormStats, apply_max_norm
from ..lora.network import LoraNetwork
from ..models.bundle import ModelBundle
from .batch import make_batch
from .checkpoints import CheckpointPlan, remove_outputs
from .conditioning import PromptOptions, encode_conditioning
from .events import EventSink, MessageEvent, SavedEvent, StepEvent, StopSignal
from .losses import DenoisingLoss
from .noise import noise_warnings, training_noise_schedule
from .noise_options import NoiseOptions, NoiseSampler
from .optimizers import build_optimizer, current_lrs, evaluation_weights
from .plan import StepPlan
from .precision import Precision, make_grad_scaler
from .sampling import ImageSampler
from .schedulers import build_scheduler
from .state import DataCursor, save_state

# save(epoch, step, final, path=None) -> path of the written file (path: a step file's name)
SaveFn = Callable[..., Path]

LOSS_WINDOW = 100


@dataclass
class LoopResult:
    steps: int
    epoch: int
    stopped: bool
    final_path: Path | None
    losses: list[float]


def max_norm_logs(stats: MaxNormStats) -> dict[str, float]:
    """scale_weight_norms' numbers under kohya's step-log names (train_network.py generate_step_logs)."""
    return {
        "max_norm/keys_scaled": float(stats.keys_scaled),
        "norm/avg_key_norm": stats.mean_norm,
        "max_norm/max_key_norm": stats.max_norm,
    }


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
        sampler: ImageSampler | None = None,
    ) -> None:
        self.bundle, self.network, self.dataset = bundle, network, dataset
        self.config, self.plan, self.device = config, plan, device
        self.emit, self.stop, self.save = emit, stop, save
        self.sampler = sampler
        output_dir = Path(config.output_dir or ".").expanduser()
        self.checkpoints = CheckpointPlan(config, output_dir, plan.total_epochs)
        # position and moving-average loss; a resumed run (train.state.load_state) sets them
        self.cursor = DataCursor()
        self.start_step = 0
        self.loss_window: deque[float] = deque(maxlen=LOSS_WINDOW)
        self.state_facts: dict = {}  # written into state folders (the job's seed...)
        self.noise = training_noise_schedule(bundle, config)
        self.loss_fn = DenoisingLoss(config, self.noise)
        self.optim = build_optimizer(network, config)
        self.optimizer = self.optim.optimizer
        self.scheduler = build_scheduler(self.optimizer, config, plan.total_steps, self.optim.plan)
        for warning in self.optim.plan.warnings + noise_warnings(config, self.noise):
            emit(MessageEvent(warning, level="warning"))
        self.train_te = any(p.startswith("te") for p in network.part_names)
        self.precision = Precision.from_config(config)
        self.grad_scaler = make_grad_scaler(self.precision, device)
        seed = config.seed or 0
        # one generator for data order, one for latents/noise/timesteps: the order of
        # batches does not depend on how many random numbers a step draws
        self.data_gen = torch.Generator().manual_seed(seed)
        self.noise_gen = torch.Generator().manual_seed(seed + 1)
        self.noise_sampler = NoiseSampler(NoiseOptions.from_config(config), self.noise_gen)
        self.max_norm_stats: MaxNormStats | None = None  # kohya's scale_weight_norms report

    def run(self) -> LoopResult:
        losses: list[float] = []
        window = self.loss_window
        step, epoch, started = self.start_step, self.cursor.epoch, time.monotonic()
        final_path = None
        self._set_train_mode(True)
        self.feed = self._open_feed()
        try:
            if step == 0 and self.sampler and self.sampler.schedule.at_first:
                self._sample(0, 0)  # kohya's sample_at_first: epoch 0 in the file names
            for epoch in range(self.cursor.first_epoch, self.plan.total_epochs + 1):
                self.cursor.start_epoch(epoch)
                for loss, lrs in self._epoch_steps(epoch, step):
                    step += 1
                    losses.append(loss)
                    window.append(loss)
                    self._emit_step(step, epoch, loss, sum(window) / len(window), lrs, started)
                    self._after_step(epoch, step)
                    if step >= self.plan.total_steps or self.stop.requested:
                        break
                if self.stop.requested:
                    break
                self._after_epoch(epoch, step)
                if step >= self.plan.total_steps:
                    break
        finally:
            self.feed.close()  # no loader thread outlives the run (stop, error or end)
            self._set_train_mode(False)
        stopped = self.stop.requested and step < self.plan.total_steps
        if not stopped or self.stop.save:
            final_path = self._save(epoch, step, final=True)
            if self.checkpoints.state_at_end:
                self._save_state(self.checkpoints.final_state(), step)
        return LoopResult(step, epoch, stopped, final_path, losses)

    def _after_step(self, epoch: int, step: int) -> None:
        """Work due after an optimizer step: kohya's sample_every_n_steps and save_every_n_steps."""
        if self.sampler and self.sampler.schedule.after_step(step):
            self._sample(None, step)
        plan = self.checkpoints
        if plan.saves_after_step(step):
            self._save(epoch, step, final=False, path=plan.step_file(step))
            if self.config.save_state:
                self._save_state(plan.step_state(step), step)
            self._remove(plan.old_step_outputs(step))

    def _after_epoch(self, epoch: int, step: int) -> None:
        """Epoch files (not after the last epoch, whose file is the final save), then samples."""
        plan = self.checkpoints
        self.cursor.epoch_done = True  # a state saved from here resumes in the next epoch
        if plan.saves_after_epoch(epoch):
            self._save(epoch, step, final=False)
            if self.config.save_state:
                self._save_state(plan.epoch_state(epoch), step)
            self._remove(plan.old_epoch_outputs(epoch))
        if self.sampler and self.sampler.schedule.after_epoch(epoch):
            self._sample(epoch, step)

    def _sample(self, epoch: int | None, step: int) -> None:
        keep = (self.data_gen, self.noise_gen)
        with evaluation_weights(self.optim):
            self.sampler.generate(epoch, step, autocast=self._autocast, keep=keep)

    def _save_state(self, folder: Path, step: int) -> None:
        save_state(self, folder, step, self.state_facts)
        self.emit(MessageEvent(f"Saved training state: {folder}"))

    def _remove(self, paths: list[Path]) -> None:
        for path in remove_outputs(paths):
            self.emit(MessageEvent(f"Removed old {path.name}"))

    def _epoch_steps(self, epoch: int, step: int) -> Iterator[tuple[float, dict[str, float]]]:
        """Yields the loss and the learning rates of each optimizer step of one epoch."""
        accum = self.config.gradient_accumulation_steps
        micro_losses: list[float] = []
        for batch in self._batches(epoch, step):
            micro_losses.append(self._backward(batch, scale=1.0 / accum))
            if len(micro_losses) == accum or self.cursor.finished:
                lrs = self._optimizer_step()
                yield sum(micro_losses) / len(micro_losses), lrs
                micro_losses = []
                if self.stop.requested:
                    return

    def _batches(self, epoch: int, step: int) -> Iterator[list[dict]]:
        """The epoch's remaining batches, loaded ahead by the feed while earlier ones train."""
        size, accum = self.config.train_batch_size, self.config.gradient_accumulation_steps
        # the cursor keeps the epoch's order and position, so a state can resume mid-epoch;
        # it counts batches as they are trained, not as they are loaded
        pending = self.cursor.pending(lambda: self.dataset.epoch_batches(size, self.data_gen))
        pending = pending[: (self.plan.total_steps - step) * accum]  # none loaded past the end
        # each batch carries the clock it would see if loaded just in time: the epoch, and
        # the optimizer steps done before it (caption dropout and token warmup read them)
        requests = [BatchRequest(b, epoch, step + k // accum) for k, b in enumerate(pending)]
        with contextlib.closing(self.feed.batches(requests)) as batches:
            for samples in batches:
                self.cursor.used += 1
                yield samples

    def _open_feed(self) -> BatchFeed:
        config = self.config
        return open_feed(
            self.dataset, config.max_data_loader_n_workers, config.persistent_data_loader_workers
        )

    def _backward(self, samples: list[dict], scale: float) -> float:
        batch = make_batch(samples, self.bundle, self.noise_gen, self.device)
        latents = batch.latents.float()  # noise maths in fp32 whatever the VAE's dtype
        noise = self.noise_sampler.sample(latents)  # offset / multires / ip noise options
        timesteps = self.noise.sample_timesteps(len(samples), self.noise_gen, self.device)
        noisy = self.noise.add_noise(latents, noise.input_noise, timesteps)
        with self._autocast():
            text_grad = torch.enable_grad() if self.train_te else torch.no_grad()
            cond = batch.conditioning  # cached text-encoder outputs, when there are
            if cond is None:
                with text_grad:
                    cond = encode_conditioning(
                        self.bundle, batch.captions, batch.extra, self.device,
                        PromptOptions.from_config(self.config),  # clip_skip, max_token_length
                    )  # fmt: skip
            pred = self.bundle.unet(
                noisy, timesteps, cond.context, added_cond_kwargs=cond.added_cond_kwargs
            ).sample
        target = self.noise.target(latents, noise.noise, timesteps)
        loss = self.loss_fn(pred, target, timesteps, batch.loss_weights)
        scaled = loss * scale
        if self.grad_scaler is not None:
            scaled = self.grad_scaler.scale(scaled)
        scaled.backward()
        return loss.item()

    def _optimizer_step(self) -> dict[str, float]:
        """One update; returns the learning rate each part was stepped with."""
        lrs = current_lrs(self.optimizer)
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
        if self.config.scale_weight_norms:
            self._apply_max_norm(self.config.scale_weight_norms)
        return lrs

    def _apply_max_norm(self, max_norm: float) -> None:
        """kohya's scale_weight_norms after each update; says when it starts or stops scaling."""
        before = self.max_norm_stats
        stats = self.max_norm_stats = apply_max_norm(self.network, max_norm)
        if bool(stats.keys_scaled) != bool(before and before.keys_scaled):
            self.emit(MessageEvent(
                f"scale_weight_norms: {stats.keys_scaled} modules scaled down to norm {max_norm:g} "
                f"(average key norm {stats.mean_norm:.4f}, max {stats.max_norm:.4f})"
            ))  # fmt: skip

    def _autocast(self) -> contextlib.AbstractContextManager:
        return self.precision.autocast(self.device)

    def _set_train_mode(self, training: bool) -> None:
        # train mode only matters for LoRA dropout and gradient checkpointing; the base
        # modules have no dropout of their own at SD's settings
        for part in self.network.parts:
            part.model.train(training)

    def _emit_step(
        self, step: int, epoch: int, loss: float, avg: float, lrs: dict[str, float], started: float
    ) -> None:
        elapsed = time.monotonic() - started
        eta = elapsed / (step - self.start_step) * (self.plan.total_steps - step)
        plan = self.plan
        stats = self.max_norm_stats if self.config.scale_weight_norms else None
        extras = max_norm_logs(stats) if stats is not None else {}
        event = StepEvent(
            step, plan.total_steps, epoch, plan.total_epochs, loss, avg, lrs, elapsed, eta,
            extras=extras,
        )  # fmt: skip
        self.emit(event)

    def _save(self, epoch: int, step: int, final: bool, path: Path | None = None) -> Path:
        with evaluation_weights(self.optim):  # schedule-free: save the averaged weights
            path = self.save(epoch, step, final, path=path)
        self.emit(SavedEvent(path, step, epoch, final))
        return path
