"""Which LoRA files and state folders a run writes, under kohya's names, and which old ones go."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..config import TrainConfig

SUFFIX = ".safetensors"


@dataclass(frozen=True)
class CheckpointPlan:
    """kohya's save_every_n_* / save_last_n_* rules for one run."""

    config: TrainConfig
    output_dir: Path
    total_epochs: int

    @property
    def name(self) -> str:
        return self.config.output_name

    @property
    def every_n_epochs(self) -> int | None:
        """save_every_n_epochs, or the interval save_n_epoch_ratio asks for (kohya: it wins)."""
        ratio = self.config.save_n_epoch_ratio
        if ratio:
            return math.floor(self.total_epochs / ratio) or 1
        return self.config.save_every_n_epochs or None

    # -- file names --------------------------------------------------------------------------

    def final_file(self) -> Path:
        return self.output_dir / f"{self.name}{SUFFIX}"

    def epoch_file(self, epoch: int) -> Path:
        return self.output_dir / f"{self.name}-{epoch:06d}{SUFFIX}"

    def step_file(self, step: int) -> Path:
        return self.output_dir / f"{self.name}-step{step:08d}{SUFFIX}"

    def final_state(self) -> Path:
        return self.output_dir / f"{self.name}-state"

    def epoch_state(self, epoch: int) -> Path:
        return self.output_dir / f"{self.name}-{epoch:06d}-state"

    def step_state(self, step: int) -> Path:
        return self.output_dir / f"{self.name}-step{step:08d}-state"

    # -- when --------------------------------------------------------------------------------

    def saves_after_epoch(self, epoch: int) -> bool:
        """An epoch file, except after the last epoch (whose file is the final one)."""
        every = self.every_n_epochs
        return bool(every) and epoch % every == 0 and epoch < self.total_epochs

    def saves_after_step(self, step: int) -> bool:
        every = self.config.save_every_n_steps
        return bool(every) and step % every == 0

    @property
    def state_at_end(self) -> bool:
        return self.config.save_state or self.config.save_state_on_train_end

    # -- what to remove (kohya's save_last_n_*) -----------------------------------------------

    def old_epoch_outputs(self, epoch: int) -> list[Path]:
        """The epoch file and state that fall out of the kept window when `epoch` is saved."""
        every, config = self.every_n_epochs or 1, self.config
        old: list[Path] = []
        if config.save_last_n_epochs and epoch - every * config.save_last_n_epochs > 0:
            old.append(self.epoch_file(epoch - every * config.save_last_n_epochs))
        keep_states = config.save_last_n_epochs_state or config.save_last_n_epochs
        if keep_states and config.save_state and epoch - every * keep_states > 0:
            old.append(self.epoch_state(epoch - every * keep_states))
        return old

    def old_step_outputs(self, step: int) -> list[Path]:
        """kohya: keep the files of the last save_last_n_steps steps, remove the one before."""
        config = self.config
        every = config.save_every_n_steps or 1
        old: list[Path] = []
        if config.save_last_n_steps and _older_step(step, config.save_last_n_steps, every) > 0:
            old.append(self.step_file(_older_step(step, config.save_last_n_steps, every)))
        keep_states = config.save_last_n_steps_state or config.save_last_n_steps
        if keep_states and config.save_state and _older_step(step, keep_states, every) > 0:
            old.append(self.step_state(_older_step(step, keep_states, every)))
        return old

    def planned_files(
        self, total_steps: int, after_step: int = 0, after_epoch: int = 0
    ) -> list[Path]:
        """The LoRA files this run will write past a resume point (for the overwrite check)."""
        files = []
        every = self.every_n_epochs
        if every:
            first = (after_epoch // every + 1) * every
            files += [self.epoch_file(e) for e in range(first, self.total_epochs, every)]
        step_every = self.config.save_every_n_steps
        if step_every:
            first = (after_step // step_every + 1) * step_every
            files += [self.step_file(s) for s in range(first, total_steps + 1, step_every)]
        return files


def _older_step(step: int, keep: int, every: int) -> int:
    old = step - keep - 1
    return old - old % every


def remove_outputs(paths: list[Path]) -> list[Path]:
    """Delete old LoRA files and state folders that exist; returns what was removed."""
    removed = []
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(path)
        elif path.is_file():
            path.unlink()
            removed.append(path)
    return removed
