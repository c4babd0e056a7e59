"""The tab's Run panel: Train / Stop / Stop-and-save, progress, loss chart, samples, result."""

from __future__ import annotations

import html
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..train.progress import extras_text
from .estimate import format_duration
from .request import PreparedRun, prepare_run
from .run_status import DONE, FAILED, IDLE, STOPPED, RunStatus
from .runner import RUNNER, Busy
from .tab_training import FormControls

PENDING: dict[str, PreparedRun] = {}  # checked requests waiting for their GPU turn, by token
LOG_LINES = 60


@dataclass
class RunSection:
    train: Any
    stop_save: Any
    stop: Any
    check: Any
    estimate: Any
    status: Any
    progress: Any
    loss: Any
    gallery: Any
    log: Any
    prompt: Any
    send: Any
    grid: Any
    task_id: Any
    token: Any
    refresh: Any


def build_run_section() -> RunSection:
    import gradio as gr

    with gr.Row():
        train = gr.Button("Train", variant="primary", elem_id="lora_trainer_train")
        stop_save = gr.Button("Stop and save", elem_id="lora_trainer_stop_save", interactive=False)
        stop = gr.Button("Stop", elem_id="lora_trainer_stop", interactive=False)
    check = gr.Button("Check settings", elem_id="lora_trainer_check")
    estimate = gr.Textbox(
        label="Before you start", lines=4, interactive=False, elem_id="lora_trainer_estimate"
    )
    status = gr.HTML(status_html(RUNNER.board.snapshot()), elem_id="lora_trainer_status")
    progress = gr.HTML("", elem_id="lora_trainer_progress")
    loss = gr.LinePlot(
        value=None, x="step", y="loss", color="series", title="Loss", label="Loss",
        x_title="step", y_title="loss", elem_id="lora_trainer_loss", height=220,
    )  # fmt: skip
    gallery = gr.Gallery(label="Samples", elem_id="lora_trainer_gallery", columns=4, height=320)
    with gr.Row():
        prompt = gr.Textbox(label="Use it in a prompt", interactive=False, show_copy_button=True,
                            elem_id="lora_trainer_prompt", scale=4)  # fmt: skip
        send = gr.Button("Send to txt2img", elem_id="lora_trainer_send", scale=1)
    grid = gr.Button("Render comparison grid", elem_id="lora_trainer_grid", interactive=False)
    log = gr.Textbox(
        label="Log", lines=8, max_lines=8, interactive=False, elem_id="lora_trainer_log"
    )
    task_id = gr.Textbox(visible=False, elem_id="lora_trainer_task_id")
    token = gr.Textbox(visible=False, elem_id="lora_trainer_token")
    refresh = gr.Button(visible=False, elem_id="lora_trainer_refresh")
    return RunSection(train, stop_save, stop, check, estimate, status, progress, loss, gallery, log,
                      prompt, send, grid, task_id, token, refresh)  # fmt: skip


def estimate_text(prepared: PreparedRun) -> str:
    lines = [
        f"{prepared.total_steps} steps in {prepared.total_epochs} epochs on {prepared.model.title}.",
        f"Output: {prepared.output.lora_file}",
        *prepared.estimate.lines(),
    ]
    lines += [f"Warning: {w}" for w in prepared.warnings]
    return "\n".join(lines)


def check_settings(controls: FormControls, *values: Any) -> tuple[str, str]:
    """(estimate, status) for the current settings, without training."""
    try:
        prepared = prepare_run(controls.values_to_request(list(values)))
    except UserError as exc:
        return "", error_html(exc.message)
    return estimate_text(prepared), message_html("The settings are fine. Press Train to start.")


def validate_for_training(controls: FormControls, *values: Any) -> tuple[str, str, str]:
    """(token, estimate, status): every check before the GPU queue; an empty token stops the chain."""
    if RUNNER.active:
        return (
            "",
            "",
            error_html("A LoRA is already being trained. Stop it or wait for it to finish."),
        )
    try:
        prepared = prepare_run(controls.values_to_request(list(values)))
    except UserError as exc:
        return "", "", error_html(exc.message)
    token = secrets.token_hex(8)
    PENDING.clear()  # only the latest click counts
    PENDING[token] = prepared
    return token, estimate_text(prepared), message_html("Waiting for the GPU...")


def start_training(task_id: str, token: str) -> tuple[str]:
    """Claim the training slot and run under the WebUI's GPU queue (wrap_gradio_gpu_call)."""
    prepared = PENDING.pop(token or "", None)
    if prepared is None:
        return ("",)  # the checks failed: nothing to run, the queue is not taken
    try:
        RUNNER.claim(prepared, "tab", task_id)
    except Busy:
        _finish_task(task_id)
        return (error_html("A LoRA is already being trained. Stop it or wait for it to finish."),)
    return _gpu_train()(task_id, prepared)


def _finish_task(task_id: str) -> None:
    """Tell the WebUI's progress poller this task is over (it never started)."""
    from modules import progress

    if task_id:
        progress.finish_task(task_id)


_GPU_TRAIN = None


def _gpu_train():
    global _GPU_TRAIN
    if _GPU_TRAIN is None:
        from modules.call_queue import wrap_gradio_gpu_call

        _GPU_TRAIN = wrap_gradio_gpu_call(_train_locked, extra_outputs=[])
    return _GPU_TRAIN


def _train_locked(task_id: str, prepared: PreparedRun) -> tuple[str]:
    RUNNER.execute(prepared)
    return (status_html(RUNNER.board.snapshot()),)


def request_stop(save: bool) -> str:
    if RUNNER.request_stop(save=save):
        text = (
            "Stopping after this step and saving."
            if save
            else "Stopping after this step; nothing is saved."
        )
        return message_html(text)
    return message_html("Nothing is training.")


def refresh_view() -> list[Any]:
    """[loss, gallery, log, status, prompt, train, stop_save, stop, grid] from the run's status."""
    import gradio as gr

    status = RUNNER.board.snapshot()
    result = status.result or {}
    done = status.phase in (DONE, STOPPED) and bool(result.get("saved"))
    return [
        gr.update(value=loss_frame(status.losses) if status.losses else None),
        gr.update(value=[(path, caption) for path, caption in status.samples] or None),
        gr.update(value="\n".join(status.messages[-LOG_LINES:])),
        status_html(status),
        gr.update(value=result.get("prompt", "")),
        gr.update(interactive=not status.active),
        gr.update(interactive=status.active),
        gr.update(interactive=status.active),
        gr.update(interactive=done and not status.active),
    ]


def loss_frame(points: list[tuple[int, float, float]]):
    """The chart's data: raw loss and its moving average per step."""
    import pandas as pd

    rows = [(s, raw, "loss") for s, raw, _ in points] + [
        (s, avg, "moving average") for s, _, avg in points
    ]
    return pd.DataFrame(rows, columns=["step", "loss", "series"])


def status_html(status: RunStatus) -> str:
    """The run's state in one short block."""
    if status.phase == IDLE:
        return message_html("Ready. Set up the dataset and the options, then press Train.")
    if status.phase == FAILED:
        return error_html(status.error or "Training failed.")
    if status.active:
        if status.step:
            eta = format_duration(status.eta_s or 0)
            text = (f"Training '{status.name}': step {status.step}/{status.total_steps}, epoch "
                    f"{status.epoch}/{status.total_epochs}, loss {status.avg_loss:.4f}, {eta} left.")  # fmt: skip
            if status.extras:
                text += f" {extras_text(status.extras).capitalize()}."
        else:
            text = f"'{status.name}': {status.phase}..."
        return message_html(text)
    result = status.result or {}
    if not result.get("saved"):
        return message_html(
            f"Stopped '{status.name}' after {result.get('steps', status.step)} steps; nothing was saved."
        )
    verb = "Stopped early and saved" if status.phase == STOPPED else "Done: saved"
    return message_html(
        f"{verb} {result.get('lora_file')}. It is in the Lora list now: {result.get('prompt')}"
    )


def message_html(text: str) -> str:
    return f"<div class='lora-trainer-status'>{html.escape(text)}</div>"


def error_html(text: str) -> str:
    return f"<div class='lora-trainer-status lora-trainer-error'>{html.escape(text)}</div>"


def render_grid() -> tuple[Any, str]:
    """The comparison grid of the last run (epochs x weights), under the GPU queue."""
    return _gpu_grid()()


_GPU_GRID = None


def _gpu_grid():
    global _GPU_GRID
    if _GPU_GRID is None:
        import gradio as gr
        from modules.call_queue import wrap_gradio_gpu_call

        _GPU_GRID = wrap_gradio_gpu_call(_grid_locked, extra_outputs=[gr.update()])
    return _GPU_GRID


def _grid_locked() -> tuple[Any, str]:
    import gradio as gr

    from .grid import GridError, grid_job_for_run, run_grid_job

    result = RUNNER.board.snapshot().result or {}
    if not result.get("saved"):
        return gr.update(), error_html(
            "Train a LoRA first; the grid compares its epochs and weights."
        )
    lora_file = Path(result["lora_file"])
    if not lora_file.is_file():
        return gr.update(), error_html(f"{lora_file} is gone; train it again to render a grid.")
    try:
        job = grid_job_for_run(lora_file, last_run_sample(lora_file))
        processed = run_grid_job(job)
    except GridError as exc:
        return gr.update(), error_html(exc.message)
    images = list(getattr(processed, "images", []) or [])
    return gr.update(value=images or None), message_html(grid_message(lora_file.stem, processed))


def grid_message(name: str, processed: Any) -> str:
    """One line under the grid: what was rendered, then the grid's notes (ancestral sampler...)."""
    grids = int(getattr(processed, "index_of_first_image", 0) or 0)
    cells = len(processed.images) - grids
    if not processed.images:
        text = f"No grid of {name}: it was stopped before the first image."
    else:
        plural = "s" if grids > 1 else ""
        text = f"Grid{plural} of {name}: {cells} images, seed {processed.seed}."
    notes = [line.strip() for line in str(processed.comments or "").splitlines() if line.strip()]
    return " ".join([text, *notes])


def last_run_sample(lora_file: Path) -> dict[str, Any]:
    """The run's first sample prompt with kohya's keys, its sampler and seed (from the card).

    A run without sample prompts gets its activation text at the training size.
    """
    from ..train.sample_prompts import line_to_prompt_dict
    from .output import CARD_KEY, read_card

    card = read_card(lora_file)
    trainer = card.get(CARD_KEY) or {}
    # kohya's prompt file rules: blank lines and lines starting with '#' are skipped
    text = str(trainer.get("sample prompt") or "")
    lines = [x.strip() for x in text.splitlines() if x.strip() and not x.startswith("#")]
    if lines:
        sample = line_to_prompt_dict(lines[0])
    else:
        sample = {"prompt": str(card.get("activation text") or ""), **_training_size(lora_file)}
    sample.setdefault("sample_sampler", trainer.get("sampler"))
    sample.setdefault("seed", trainer.get("seed"))
    return sample


def _training_size(lora_file: Path) -> dict[str, int]:
    """{"width", "height"} from the file's ss_resolution ("(512, 512)"), {} when unreadable."""
    import re

    from safetensors import safe_open

    try:
        with safe_open(str(lora_file), "pt") as f:
            resolution = (f.metadata() or {}).get("ss_resolution", "")
    except Exception:  # a .pt/.ckpt file or a broken header: kohya's default size then
        return {}
    numbers = [int(n) for n in re.findall(r"\d+", resolution)]
    return {"width": numbers[0], "height": numbers[1]} if len(numbers) == 2 else {}
