"""What a training run reports while it runs, and how it is asked to stop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
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
    # per-step extra metrics under kohya's log names, e.g. "max_norm/keys_scaled"
    extras: dict[str, float] = field(default_factory=dict)

    @property
    def lr(self) -> float:
        """The first part's learning rate (the UNet's when it is trained)."""
        return next(iter(self.lrs.values()))


@dataclass(frozen=True)
class CachesReadyEvent:
    """The caches the options ask for are filled; sent once, before the first step.

    Each count is None when that cache is not used: `latents` counts images whose latents
    are cached, `text_encoder_outputs` the cached text-encoder outputs.
    """

    latents: int | None = None
    text_encoder_outputs: int | None = None

    @property
    def cached(self) -> tuple[str, ...]:
        """Names of the caches in use ("latents", "text_encoder_outputs")."""
        names = ("latents", "text_encoder_outputs")
        return tuple(n for n in names if getattr(self, n) is not None)


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


Event = StepEvent | CachesReadyEvent | SavedEvent | SampleEvent | MessageEvent
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
