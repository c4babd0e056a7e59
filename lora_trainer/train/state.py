"""Training state folders (kohya's save_state / resume): weights, optimizer, schedule, RNG, position."""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..config import TrainConfig
from ..errors import ConfigError
from .events import EventSink, MessageEvent

if TYPE_CHECKING:
    from .loop import TrainLoop

STATE_FORMAT = "lora_trainer-state"
STATE_VERSION = 1
TRAIN_STATE = "train_state.json"  # kohya's name for the step counter file; ours holds more
WEIGHTS = "lora.safetensors"
OPTIMIZER = "optimizer.pt"
SCHEDULER = "scheduler.pt"
GRAD_SCALER = "grad_scaler.pt"
RNG = "rng.pt"
DATASET = "dataset.pt"

# files accelerate's save_state writes: a kohya state folder, which we cannot continue from
_ACCELERATE_FILES = ("optimizer.bin", "random_states_0.pkl", "scheduler.bin")
_FIX_FOLDER = "give a folder written by save_state or save_state_on_train_end (<name>-state)"


@dataclass
class DataCursor:
    """Where a run is in its data: the epoch, that epoch's batch order, and the batches used."""

    epoch: int = 0  # 0 before the first epoch
    order: list[list[int]] | None = None
    used: int = 0
    epoch_done: bool = False  # the epoch's end work (epoch file, samples) has run

    @property
    def first_epoch(self) -> int:
        """The epoch a run (or a resumed run) starts in."""
        return self.epoch + 1 if self.epoch == 0 or self.epoch_done else self.epoch

    def start_epoch(self, epoch: int) -> None:
        """Enter `epoch`; a resumed epoch keeps its saved order and position."""
        if epoch != self.epoch:
            self.epoch, self.order, self.used, self.epoch_done = epoch, None, 0, False

    def pending(self, make_order: Callable[[], list[list[int]]]) -> list[list[int]]:
        """The epoch's batches not used yet; the order is drawn on first use.

        The loop adds to `used` as it trains each batch (a loader may read ahead), so a
        state saved mid-epoch records what was trained, not what was loaded.
        """
        if self.order is None:
            self.order, self.used = [list(map(int, b)) for b in make_order()], 0
        return self.order[self.used :]

    @property
    def finished(self) -> bool:
        return self.order is not None and self.used >= len(self.order)


@dataclass
class ResumeInfo:
    """What a state folder says about itself (read before any model is loaded)."""

    folder: Path
    step: int
    epoch: int
    seed: int
    facts: dict[str, Any] = field(default_factory=dict)


def read_state_info(path: str | Path) -> ResumeInfo:
    """Check that `path` is one of our state folders and read its position."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ConfigError("the resume folder does not exist", where=str(folder), fix=_FIX_FOLDER)
    if not folder.is_dir():
        raise ConfigError("resume must be a folder, not a file", where=str(folder), fix=_FIX_FOLDER)
    info_file = folder / TRAIN_STATE
    if not (folder / WEIGHTS).is_file():
        if any((folder / name).exists() for name in _ACCELERATE_FILES):
            raise ConfigError(
                "this is a kohya (accelerate) state folder; its optimizer state cannot be read here",
                where=str(folder),
                fix="continue from its weights instead: network_weights = <the LoRA file saved with it>",
            )
        raise ConfigError("this is not a training state folder", where=str(folder), fix=_FIX_FOLDER)
    try:
        facts = json.loads(info_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"the state folder is damaged: {exc}", where=str(info_file)) from None
    if not isinstance(facts, dict) or facts.get("format") != STATE_FORMAT:
        raise ConfigError("this is not a training state folder", where=str(folder), fix=_FIX_FOLDER)
    if facts.get("version") != STATE_VERSION:
        raise ConfigError(
            f"the state folder has format version {facts.get('version')}, this version reads {STATE_VERSION}",
            where=str(folder),
            fix="resume it with the version of the trainer that wrote it",
        )
    return ResumeInfo(folder, int(facts["step"]), int(facts["epoch"]), int(facts["seed"]), facts)


# options that fix the shape of the run: a state can only continue a run with the same values
_SAME_OPTIONS = ("network_dim", "network_alpha", "train_batch_size", "gradient_accumulation_steps")


def check_resume(info: ResumeInfo, config: TrainConfig, num_samples: int, total_steps: int) -> None:
    """Refuse, before loading the model, a state that cannot continue this configuration."""
    saved = info.facts.get("options", {})
    for name in _SAME_OPTIONS:
        if name in saved and saved[name] != getattr(config, name):
            raise ConfigError(
                f"the state was saved with {name} = {saved[name]}, this run has {getattr(config, name)}",
                where=str(info.folder),
                fix=f"set {name} = {saved[name]} to resume, or start a new run",
            )
    if saved.get("optimizer_type", "").lower() != config.optimizer_type.lower():
        raise ConfigError(
            f"the state was saved with optimizer_type {saved.get('optimizer_type')}, this run has {config.optimizer_type}",
            where=str(info.folder),
            fix="use the same optimizer to resume",
        )
    if info.facts.get("num_samples") != num_samples:
        raise ConfigError(
            f"the dataset changed: the state was saved with {info.facts.get('num_samples')} samples "
            f"(images x repeats), this run has {num_samples}",
            where=str(info.folder),
            fix="resume with the same dataset, or start a new run",
        )
    if info.step >= total_steps:
        raise ConfigError(
            f"nothing left to train: the state is at step {info.step} and this run has {total_steps} steps",
            where=str(info.folder),
            fix="raise max_train_steps or max_train_epochs to train further",
        )


def save_state(
    loop: TrainLoop, folder: Path, step: int, extra: dict[str, Any] | None = None
) -> Path:
    """Write everything needed to continue bit for bit; a crash never leaves half a folder."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        weights = {k: v.contiguous() for k, v in loop.network.kohya_state_dict().items()}
        save_file(weights, str(tmp / WEIGHTS))
        torch.save(loop.optimizer.state_dict(), tmp / OPTIMIZER)
        torch.save(loop.scheduler.state_dict(), tmp / SCHEDULER)
        if loop.grad_scaler is not None:
            torch.save(loop.grad_scaler.state_dict(), tmp / GRAD_SCALER)
        torch.save(_torch_rng(loop), tmp / RNG)
        dataset_state = getattr(loop.dataset, "state_dict", None)
        if callable(dataset_state):
            torch.save(dataset_state(), tmp / DATASET)
        facts = _facts(loop, step, extra or {})
        (tmp / TRAIN_STATE).write_text(json.dumps(facts), encoding="utf-8")
        _replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _facts(loop: TrainLoop, step: int, extra: dict[str, Any]) -> dict[str, Any]:
    cursor, config = loop.cursor, loop.config
    return {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        # kohya's train_state.json keys, so its tools can read the position
        "current_epoch": cursor.epoch,
        "current_step": step,
        "step": step,
        "epoch": cursor.epoch,
        "epoch_done": cursor.epoch_done,
        "batches_used": cursor.used,
        "epoch_order": cursor.order,
        "num_samples": len(loop.dataset),
        "parts": loop.network.part_names,
        "loss_window": list(loop.loss_window),
        "python_random": _python_rng(),
        "numpy_random": _numpy_rng(),
        "options": {name: getattr(config, name) for name in (*_SAME_OPTIONS, "optimizer_type")},
        **extra,
    }


def _torch_rng(loop: TrainLoop) -> dict[str, Any]:
    states: dict[str, Any] = {
        "data_gen": loop.data_gen.get_state(),
        "noise_gen": loop.noise_gen.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _python_rng() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _numpy_rng() -> list[Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _replace_folder(new: Path, target: Path) -> None:
    """Swap `new` in for `target` with renames, so a reader sees the old or the new folder."""
    if not target.exists():
        new.rename(target)
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if old.exists():
        shutil.rmtree(old)
    target.rename(old)
    new.rename(target)
    shutil.rmtree(old)


def load_state(loop: TrainLoop, info: ResumeInfo) -> None:
    """Put a state folder back into `loop`: weights, optimizer, schedule, RNG and data position."""
    folder, facts = info.folder, info.facts
    where = str(folder)
    if facts.get("parts") != loop.network.part_names:
        raise ConfigError(
            f"the state trained {facts.get('parts')}, this run trains {loop.network.part_names}",
            where=where,
            fix="use the same network_train_unet_only / network_train_text_encoder_only settings",
        )
    loop.network.load_kohya_state_dict(load_file(str(folder / WEIGHTS)), where)
    try:
        loop.optimizer.load_state_dict(_load(folder / OPTIMIZER))
        loop.scheduler.load_state_dict(_load(folder / SCHEDULER))
    except (ValueError, KeyError) as exc:
        raise ConfigError(
            f"the optimizer state does not fit this run: {exc}", where=where
        ) from None
    if loop.grad_scaler is not None and (folder / GRAD_SCALER).is_file():
        loop.grad_scaler.load_state_dict(_load(folder / GRAD_SCALER))
    dataset_load = getattr(loop.dataset, "load_state_dict", None)
    if callable(dataset_load) and (folder / DATASET).is_file():
        dataset_load(_load(folder / DATASET))
    _restore_rng(loop, _load(folder / RNG), facts)
    order = facts.get("epoch_order")
    if order is not None and any(i >= len(loop.dataset) for batch in order for i in batch):
        raise ConfigError("the state's data order does not fit this dataset", where=where)
    loop.cursor = DataCursor(
        info.epoch, order, int(facts["batches_used"]), bool(facts["epoch_done"])
    )
    loop.start_step = info.step
    loop.loss_window.clear()
    loop.loss_window.extend(float(x) for x in facts.get("loss_window", []))


def _load(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError("the state folder is incomplete", where=str(path), fix=_FIX_FOLDER)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and version errors all mean "cannot use this file"
        raise ConfigError(f"cannot read the state file: {exc}", where=str(path)) from None


def _restore_rng(loop: TrainLoop, states: dict[str, Any], facts: dict[str, Any]) -> None:
    loop.data_gen.set_state(states["data_gen"])
    loop.noise_gen.set_state(states["noise_gen"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        cuda = states["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = facts["python_random"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = facts["numpy_random"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def prepare_resume(
    config: TrainConfig, num_samples: int, total_steps: int, emit: EventSink
) -> ResumeInfo | None:
    """Read and check the `resume` folder before any model loads; None when not resuming."""
    if not config.resume:
        return None
    info = read_state_info(config.resume)
    check_resume(info, config, num_samples, total_steps)
    if config.seed is not None and config.seed != info.seed:
        emit(
            MessageEvent(
                f"seed {config.seed} is ignored: the run continues the random state of seed {info.seed}",
                level="warning",
            )
        )
    emit(MessageEvent(f"Resuming from {info.folder} at step {info.step}, epoch {info.epoch}"))
    return info


def owns_outputs(info: ResumeInfo | None, output_dir: Path, output_name: str) -> bool:
    """True when the state is this run's own (`<output_dir>/<output_name>-...-state`).

    Such a run continues itself, so it may replace the files its earlier part wrote.
    """
    if info is None:
        return False
    folder = info.folder.resolve()
    return folder.parent == output_dir.resolve() and folder.name.startswith(f"{output_name}-")


def resume_position(info: ResumeInfo | None) -> tuple[int, int]:
    """(steps done, epochs whose end work is done) at the resume point; (0, 0) for a new run."""
    if info is None:
        return 0, 0
    done = bool(info.facts.get("epoch_done"))
    return info.step, info.epoch if done else info.epoch - 1
