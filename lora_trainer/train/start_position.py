"""kohya's initial_epoch / initial_step / skip_until_initial_step: a run that starts part way.

Semantics of kohya's train_network.py (sd-scripts 48d368fa), without a state:
- initial_step (or (initial_epoch - 1) x steps per epoch) must be below max_train_steps;
- the run starts in epoch initial_step // steps_per_epoch + 1: epoch numbers, epoch file
  names and caption-dropout epochs count from there;
- without skip_until_initial_step the step counter starts at 0 and every started epoch
  trains all its batches ("only the epoch number is skipped"), so the run ends when the
  epochs run out;
- with skip_until_initial_step the batches before initial_step are not trained and the
  step counter starts at initial_step (step file names, sampling and token warmup
  follow it), so the run ends at max_train_steps;
- the lr scheduler and the noise start from the beginning in both cases.
Two miscounts of that kohya version are not copied: with gradient_accumulation_steps > 1
it skips accumulation-times too many epochs (kohya-ss/sd-scripts#2407), and after skipping
whole epochs it restarts the step counter at the remainder instead of initial_step.
Here the skipped epochs' data orders are drawn too, so the data that follows is what an
unbroken run with the same seed would train next.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import TrainConfig
from ..errors import ConfigError
from .plan import StepPlan
from .state import DataCursor

if TYPE_CHECKING:
    from .loop import TrainLoop


@dataclass(frozen=True)
class StartPosition:
    """Where a run with initial_epoch / initial_step begins."""

    initial_step: int  # kohya's initial_step, in optimizer steps
    epoch: int  # the first epoch trained (1-based)
    step: int  # the step counter before the first step: initial_step, or 0 without skipping
    skip_batches: int  # batches of `epoch` not trained (skip_until_initial_step)
    skip: bool
    last_step: int  # the step counter's value when the run ends

    @property
    def epochs_done(self) -> int:
        return self.epoch - 1

    def describe(self) -> str:
        if self.skip:
            return (
                f"Starting at step {self.initial_step} (epoch {self.epoch}): the data before it "
                "is skipped; the learning-rate schedule starts from the beginning"
            )
        return (
            f"Starting at epoch {self.epoch} (initial step {self.initial_step}): every epoch "
            f"from there is trained in full, {self.last_step} steps counted from 0 "
            "(set skip_until_initial_step to continue the step count instead)"
        )


def start_position(config: TrainConfig, plan: StepPlan) -> StartPosition | None:
    """The start given by initial_step / initial_epoch, or None for a run from the beginning."""
    if config.initial_step is not None:
        initial, name = config.initial_step, f"initial_step {config.initial_step}"
    elif config.initial_epoch is not None:
        initial = (config.initial_epoch - 1) * plan.steps_per_epoch
        name = f"initial_epoch {config.initial_epoch} (step {initial})"
    else:
        return None
    if initial == 0:  # kohya: the same as not giving it
        return None
    if initial >= plan.total_steps:
        raise ConfigError(
            f"{name} is not before the end of training ({plan.total_steps} steps)",
            fix="lower it, or raise max_train_steps / max_train_epochs",
        )
    epochs_done = initial // plan.steps_per_epoch
    if config.skip_until_initial_step:
        within = initial - epochs_done * plan.steps_per_epoch
        skip_batches = within * config.gradient_accumulation_steps
        return StartPosition(
            initial, epochs_done + 1, initial, skip_batches, True, plan.total_steps
        )
    trained = (plan.total_epochs - epochs_done) * plan.steps_per_epoch
    return StartPosition(initial, epochs_done + 1, 0, 0, False, min(trained, plan.total_steps))


def apply_start_position(loop: TrainLoop, position: StartPosition) -> None:
    """Put the loop at `position`: its data cursor, step counter and last step."""
    if position.skip:
        size, dataset = loop.config.train_batch_size, loop.dataset
        # the epochs before are drawn and dropped: the same orders an unbroken run draws
        for _ in range(position.epochs_done):
            dataset.epoch_batches(size, loop.data_gen)
        order = [list(map(int, b)) for b in dataset.epoch_batches(size, loop.data_gen)]
        loop.cursor = DataCursor(position.epoch, order, position.skip_batches, False)
    else:
        loop.cursor = DataCursor(position.epochs_done, None, 0, True)
    loop.start_step = position.step
    # progress and ETA count to where this run really ends
    loop.plan = dataclasses.replace(loop.plan, total_steps=position.last_step)
