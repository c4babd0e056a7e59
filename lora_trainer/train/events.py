"""What a training run reports while it runs, and how it is asked to stop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StepEvent:
    """One optimizer step done."""

    step: int
    total_steps: int
    epoch: int
    total_epochs: int
    loss: float
    avg_loss: float
    lrs: dict[str, float]  # learning rate per part ("unet", "te"...) used for this step
    elapsed_s: float
    eta_s: float

    @property
    def lr(self) -> float:
        """The first part's learning rate (the UNet's when it is trained)."""
        return next(iter(self.lrs.values()))


@dataclass(frozen=True)
class SavedEvent:
    """A LoRA file was written."""

    path: Path
    step: int
    epoch: int
    final: bool


@dataclass(frozen=True)
class SampleEvent:
    """Sample images were made (kohya's sample_prompts); the WebUI shows them in a gallery."""

    paths: tuple[Path, ...]  # one PNG per prompt, in prompt order
    step: int
    epoch: int | None  # set when sampled at an epoch's end, None when by step (kohya's naming)
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class MessageEvent:
    """A line for the user (dataset summary, warnings, phases)."""

    text: str
    level: str = "info"


Event = StepEvent | SavedEvent | SampleEvent | MessageEvent
EventSink = Callable[[Event], None]


def ignore_events(event: Event) -> None:
    """The default sink."""


class StopSignal:
    """Cooperative stop: the loop checks it after every step."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.save = True

    def request(self, save: bool = True) -> None:
        """Ask the run to stop after the current step; `save` keeps what was trained so far."""
        self.save = save
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()
