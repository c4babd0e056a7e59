"""What a training run is doing, as the tab's progress panel and the HTTP status route show it."""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

IDLE, QUEUED, PREPARING, TRAINING, SAVING = "idle", "queued", "preparing", "training", "saving"
DONE, STOPPED, FAILED = "done", "stopped", "failed"
ACTIVE = frozenset({QUEUED, PREPARING, TRAINING, SAVING})
MAX_MESSAGES = 200
MAX_LOSS_POINTS = 5000  # the chart keeps every point up to this, then every other one


@dataclass
class RunStatus:
    phase: str = IDLE
    name: str | None = None
    source: str | None = None  # "tab" or "api"
    task_id: str | None = None
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    total_epochs: int = 0
    loss: float | None = None
    avg_loss: float | None = None
    lr: float | None = None
    eta_s: float | None = None
    extras: dict[str, float] = field(default_factory=dict)  # per-step metrics (max-norm numbers)
    elapsed_s: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    losses: list[tuple[int, float, float]] = field(default_factory=list)  # step, raw, average
    samples: list[tuple[str, str]] = field(default_factory=list)  # image path, caption
    messages: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str | None = None

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE


class StatusBoard:
    """The one shared status, updated from the training thread and read from request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status = RunStatus()

    def reset(self, **fields: Any) -> None:
        with self._lock:
            self._status = RunStatus(started_at=time.time(), **fields)

    def update(self, **fields: Any) -> None:
        with self._lock:
            for key, value in fields.items():
                setattr(self._status, key, value)

    def add_message(self, text: str) -> None:
        with self._lock:
            self._status.messages.append(text)
            del self._status.messages[:-MAX_MESSAGES]

    def add_loss(self, step: int, loss: float, avg: float) -> None:
        with self._lock:
            points = self._status.losses
            points.append((step, loss, avg))
            if len(points) > MAX_LOSS_POINTS:
                self._status.losses = points[::2]

    def add_samples(self, items: list[tuple[str, str]]) -> None:
        with self._lock:
            self._status.samples.extend(items)

    def snapshot(self) -> RunStatus:
        with self._lock:
            return copy.deepcopy(self._status)

    def claim(self, **fields: Any) -> bool:
        """Mark a new run as queued unless one is active; False when one is."""
        with self._lock:
            if self._status.active:
                return False
            self._status = RunStatus(phase=QUEUED, started_at=time.time(), **fields)
            return True


def status_json(status: RunStatus) -> dict[str, Any]:
    """The status as the HTTP API returns it (the loss history thinned to at most 500 points)."""
    data = asdict(status)
    losses = status.losses
    stride = max(1, len(losses) // 500)
    data["losses"] = [list(p) for p in losses[::stride]]
    data["samples"] = [{"path": p, "caption": c} for p, c in status.samples]
    data["last_sample"] = status.samples[-1][0] if status.samples else None
    data["active"] = status.active
    return data
