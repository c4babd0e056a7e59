"""Training events -> the status board and the WebUI's `shared.state` (progress bar, preview, Interrupt)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..train.events import (
    CachesReadyEvent,
    MessageEvent,
    SampleEvent,
    SavedEvent,
    StepEvent,
    StopSignal,
)
from .run_status import TRAINING, StatusBoard

log = logging.getLogger(__name__)


class ProgressBridge:
    """The engine's event sink inside the WebUI."""

    def __init__(
        self,
        board: StatusBoard,
        stop: StopSignal,
        total_steps: int,
        when_cached: Callable[[CachesReadyEvent], None] | None = None,
    ) -> None:
        from modules import shared

        self.board, self.stop, self.state = board, stop, shared.state
        # called once, when the engine says its caches are filled (before the first step)
        self.when_cached = when_cached
        self.saved: list[SavedEvent] = []
        self.last_sample: Path | None = None
        self.stepped = False
        self.state.job_count = total_steps
        self.state.job_no = 0

    def __call__(self, event: Any) -> None:
        if isinstance(event, CachesReadyEvent):
            self._caches_ready(event)
        elif isinstance(event, StepEvent):
            self._step(event)
        elif isinstance(event, SavedEvent):
            self.saved.append(event)
            kind = "final LoRA" if event.final else f"checkpoint at epoch {event.epoch}"
            self.message(f"Saved {kind}: {event.path.name}")
        elif isinstance(event, SampleEvent):
            self._samples(event)
        elif isinstance(event, MessageEvent):
            prefix = "Warning: " if event.level == "warning" else ""
            self.message(prefix + event.text)
        self.poll_interrupt()  # the loop checks the stop signal right after each event

    def _caches_ready(self, event: CachesReadyEvent) -> None:
        callback, self.when_cached = self.when_cached, None
        if callback is not None:
            callback(event)

    def poll_interrupt(self) -> None:
        """The WebUI's Interrupt button: stop after this step and keep what was trained."""
        if self.state.interrupted and not self.stop.requested:
            self.stop.request(save=True)
            self.message("Interrupted: stopping after this step and saving what was trained")

    def message(self, text: str) -> None:
        log.info("LoRA trainer: %s", text)
        self.board.add_message(text)
        if not self.stepped:
            self.state.textinfo = text  # before the first step the bar shows what is going on

    def _step(self, event: StepEvent) -> None:
        self.stepped = True
        self.board.add_loss(event.step, event.loss, event.avg_loss)
        self.board.update(
            phase=TRAINING,
            step=event.step,
            total_steps=event.total_steps,
            epoch=event.epoch,
            total_epochs=event.total_epochs,
            loss=event.loss,
            avg_loss=event.avg_loss,
            lr=event.lr,
            eta_s=event.eta_s,
            elapsed_s=event.elapsed_s,
            extras=dict(event.extras),
        )
        self.state.job_count = event.total_steps
        self.state.job_no = event.step
        self.state.textinfo = step_text(event)

    def _samples(self, event: SampleEvent) -> None:
        items = []
        for path, prompt in zip(event.paths, event.prompts):
            when = f"epoch {event.epoch}" if event.epoch is not None else f"step {event.step}"
            items.append((str(path), f"{when}: {prompt}"))
        self.board.add_samples(items)
        if event.paths:
            self.last_sample = Path(event.paths[-1])
            self._preview(self.last_sample)

    def _preview(self, path: Path) -> None:
        from PIL import Image

        try:
            with Image.open(path) as image:
                self.state.assign_current_image(image.copy())
        except OSError as exc:  # a preview is a nicety; never stop training for it
            log.warning("LoRA trainer: cannot show sample %s: %s", path, exc)


def step_text(event: StepEvent) -> str:
    """One short line for the WebUI's progress bar, which adds its own percentage and ETA."""
    return f"LoRA step {event.step}/{event.total_steps}, loss {event.avg_loss:.4f}"
