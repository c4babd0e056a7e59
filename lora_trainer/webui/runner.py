"""Runs one training job at a time on the WebUI's loaded model, from the tab or the HTTP API.

The caller holds the WebUI's GPU queue lock while `execute` runs (the tab through
wrap_gradio_gpu_call, the API through call_queue.queue_lock in `start_in_thread`), so a
txt2img request waits instead of racing. Whatever happens, the live model is left as it
was (LiveModelGuard) and the memory the run used is given back.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any

import torch

from ..errors import UserError
from ..train.events import StopSignal
from ..train.job import run_training
from .builtin_lora import restore_merged_weights
from .estimate import advice
from .finish import RunFiles, announce_new_lora, place_outputs, prompt_tag
from .live_guard import LiveModelGuard, free_memory
from .live_model import build_live_bundle, check_trainable, describe_loaded_model, loaded_model
from .offload import CachedPartsOffload
from .output import CardData
from .progress_bridge import ProgressBridge
from .request import PreparedRun, remove_if_empty, run_shape
from .run_status import DONE, FAILED, PREPARING, SAVING, STOPPED, StatusBoard
from .settings import current_settings

log = logging.getLogger(__name__)
JOB_NAME = "lora-trainer"


class Busy(Exception):
    """A run is already queued or active."""


class TrainingRunner:
    """The extension's single training slot."""

    def __init__(self) -> None:
        self.board = StatusBoard()
        self.stop = StopSignal()
        self.thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self.board.snapshot().active

    def claim(self, prepared: PreparedRun, source: str, task_id: str | None = None) -> None:
        """Reserve the slot for this run (Busy when taken); the run itself starts with execute()."""
        fields = {"name": prepared.output.name, "source": source, "task_id": task_id}
        if not self.board.claim(total_steps=prepared.total_steps, **fields):
            raise Busy("a LoRA is already being trained")
        self.stop = StopSignal()

    def request_stop(self, save: bool = True) -> bool:
        """Stop after the current step, saving what was trained or not; False when nothing runs."""
        status = self.board.snapshot()
        if not status.active:
            return False
        self.stop.request(save=save)
        self.board.add_message("Stop requested" + (", saving what was trained" if save else ""))
        return True

    def execute(self, prepared: PreparedRun) -> dict[str, Any]:
        """Train, place the files and report; never raises for the user's or the GPU's errors."""
        if self.stop.requested:  # stopped while waiting for the GPU
            self.board.update(phase=STOPPED, finished_at=time.time())
            return {"stopped": True, "saved": False}
        from modules import shared

        shared.state.job = JOB_NAME
        self.board.update(phase=PREPARING, started_at=time.time())
        try:
            outcome = self._train_and_place(prepared)
        except UserError as exc:
            outcome = self._fail(exc.message)
        except torch.cuda.OutOfMemoryError:
            tips = " ".join(
                advice(run_shape(prepared.config, prepared.model, prepared.total_steps))
            )
            outcome = self._fail(f"The GPU ran out of memory. {tips}".strip())
        except Exception as exc:  # a bug or an unexpected library error: keep the WebUI alive
            log.error("LoRA trainer failed:\n%s", traceback.format_exc())
            outcome = self._fail(f"{type(exc).__name__}: {exc} (details in the WebUI's console)")
        finally:
            remove_if_empty(prepared.output.work_dir)
        free_memory()  # again: the error's traceback no longer holds the run's tensors
        return outcome

    def _train_and_place(self, prepared: PreparedRun) -> dict[str, Any]:
        model = loaded_model()
        check_trainable(model)
        _check_same_model(prepared)
        restore_merged_weights(model)
        guard = LiveModelGuard(model)
        bridge = ProgressBridge(self.board, self.stop, prepared.total_steps)
        offloaded = None
        try:
            bridge.message(f"Converting {prepared.model.title} for training")
            bundle = build_live_bundle(model)
            config = prepared.with_prompts_in(prepared.output.work_dir)
            bridge.when_cached = offloaded = _offloader(config, bundle, model)
            result = run_training(config, bundle=bundle, emit=bridge, stop=self.stop)
            del bundle
        finally:
            bridge.when_cached = None
            if offloaded is not None:
                offloaded.put_back()  # expected moves: put back before the guard looks
            fixes = guard.restore()
            free_memory()
            for fix in fixes:
                log.warning("LoRA trainer put the WebUI's model back: %s", fix)
        if result.output_path is None:
            self.board.update(phase=STOPPED, finished_at=time.time())
            return {"stopped": True, "saved": False, "steps": result.steps}
        self.board.update(phase=SAVING)
        files = place_outputs(
            prepared.output,
            result.output_path,
            bridge.last_sample,
            card_for(prepared, result),
            config,
        )
        announce_new_lora()
        return self._done(prepared, files, result.stopped, result.steps)

    def _done(
        self, prepared: PreparedRun, files: RunFiles, stopped: bool, steps: int
    ) -> dict[str, Any]:
        weight = prepared.request.preferred_weight
        outcome = {
            "stopped": stopped,
            "saved": True,
            "steps": steps,
            "prompt": prompt_tag(prepared.output.name, weight, prepared.activation_text),
            **files.to_json(),
        }
        self.board.update(
            phase=STOPPED if stopped else DONE, result=outcome, finished_at=time.time()
        )
        self.board.add_message(f"Saved {files.lora_file}")
        return outcome

    def _fail(self, message: str) -> dict[str, Any]:
        self.board.update(phase=FAILED, error=message, finished_at=time.time())
        self.board.add_message("Error: " + message)
        return {"stopped": False, "saved": False, "error": message}

    def start_in_thread(self, prepared: PreparedRun) -> str:
        """The API's way: claim, then train in a thread under the GPU queue; returns the task id."""
        from modules import progress

        task_id = progress.create_task_id("lora_trainer")
        self.claim(prepared, "api", task_id)
        progress.add_task_to_queue(task_id)
        self.thread = threading.Thread(
            target=self._run_queued, args=(prepared, task_id), name="lora-trainer", daemon=True
        )
        self.thread.start()
        return task_id

    def join(self, timeout: float | None = None) -> bool:
        """Wait for an API-started run's thread; True when it has ended."""
        if self.thread is not None:
            self.thread.join(timeout)
            return not self.thread.is_alive()
        return True

    def _run_queued(self, prepared: PreparedRun, task_id: str) -> None:
        from modules import call_queue, progress, shared

        with call_queue.queue_lock:
            shared.state.begin(job=task_id)
            progress.start_task(task_id)
            try:
                self.execute(prepared)
            finally:
                progress.finish_task(task_id)
                shared.state.end()
                # what wrap_gradio_call resets after a UI job, for the next one
                shared.state.interrupted = False
                shared.state.job_count = 0


def _offloader(config: Any, bundle: Any, model: Any) -> CachedPartsOffload | None:
    """The Settings option: VAE / text encoder to RAM once the engine reports their outputs cached."""
    if not current_settings().offload_cached:
        return None
    return CachedPartsOffload(config, bundle, model, torch.device(config.device))


def _check_same_model(prepared: PreparedRun) -> None:
    """The checkpoint may have been switched while the run waited for the GPU."""
    now = describe_loaded_model()
    if now is None or now.title != prepared.model.title or now.arch != prepared.model.arch:
        raise UserError(
            "the loaded checkpoint changed after Train was pressed",
            fix="press Train again to train on the checkpoint loaded now",
        )


def card_for(prepared: PreparedRun, result: Any) -> CardData:
    """The card's description and notes: what the LoRA was trained on and how."""
    c = prepared.config
    width, height = c.resolution_wh
    description = (
        f"Trained on {prepared.model.title} ({prepared.model.label.split(',')[0]}): rank "
        f"{c.network_dim}, alpha {c.network_alpha:g}, {result.steps} steps, {result.epochs} "
        f"epochs, learning rate {c.learning_rate:g}, {width}x{height}."
    )
    notes = "\n".join(
        [
            f"Dataset: {c.train_data_dir or c.dataset_config}",
            f"Optimizer {c.optimizer_type}, scheduler {c.lr_scheduler}, batch {c.train_batch_size}, "
            f"precision {c.mixed_precision}, seed {result.seed}",
        ]
    )
    return CardData(
        arch=prepared.model.arch or "sd1",
        activation_text=prepared.activation_text,
        preferred_weight=prepared.request.preferred_weight,
        description=description,
        notes=notes,
        trainer={
            "seed": result.seed,
            "steps": result.steps,
            "sample prompt": prepared.sample_prompt,
            "sampler": c.sample_sampler,
        },
    )


RUNNER = TrainingRunner()  # one per WebUI process: the GPU trains one LoRA at a time
