"""A console progress bar fed by training events."""

from __future__ import annotations

import sys

from tqdm import tqdm

from .events import Event, MessageEvent, SavedEvent, StepEvent

# short labels for the extra step metrics (kohya's log names), in display order
EXTRA_LABELS = {
    "max_norm/keys_scaled": "keys scaled",
    "norm/avg_key_norm": "avg key norm",
    "max_norm/max_key_norm": "max key norm",
}


def extras_text(extras: dict[str, float]) -> str:
    """The extra step metrics in one compact line, e.g. "keys scaled 3, avg key norm 0.0123, max key norm 0.5"."""
    known = [k for k in EXTRA_LABELS if k in extras]
    names = known + sorted(k for k in extras if k not in EXTRA_LABELS)
    return ", ".join(f"{EXTRA_LABELS.get(k, k)} {_number(extras[k])}" for k in names)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


class ConsoleProgress:
    """Prints messages and a tqdm bar with loss, moving-average loss and learning rate."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.bar: tqdm | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepEvent):
            self._step(event)
        elif isinstance(event, SavedEvent):
            if event.final:
                kind = "final LoRA"
            elif "-step" in event.path.name:  # save_every_n_steps files: <name>-step00000500
                kind = f"step {event.step} LoRA"
            else:
                kind = f"epoch {event.epoch} LoRA"
            self.note(f"Saved {kind}: {event.path}")
        elif isinstance(event, MessageEvent):
            prefix = "warning: " if event.level == "warning" else ""
            self.note(prefix + event.text)

    def _step(self, event: StepEvent) -> None:
        if self.bar is None:
            self.bar = tqdm(
                total=event.total_steps, desc="steps", file=self.stream, dynamic_ncols=True
            )
        extras = {EXTRA_LABELS.get(k, k): _number(v) for k, v in event.extras.items()}
        self.bar.set_postfix(
            epoch=f"{event.epoch}/{event.total_epochs}",
            loss=f"{event.loss:.4f}",
            avg=f"{event.avg_loss:.4f}",
            lr=f"{event.lr:.2e}",
            **extras,
            refresh=False,
        )
        self.bar.update(event.step - self.bar.n)

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
