"""Fake of modules/progress.py (A1111 v1.10.1): the task bookkeeping behind /internal/progress.

Real: `current_task`, `pending_tasks` (OrderedDict id -> time queued), `finished_tasks`
(last 16), `recorded_results` (last 2); `start_task`, `finish_task`, `record_results`,
`add_task_to_queue`, `create_task_id(task_type)` -> "task(<type>-XXXXXXX)"; and
`progressapi(req)`, which reports active/queued/completed, progress from
`shared.state.job_no/job_count` (+ sampling steps), an ETA from `state.time_start`, the
live preview and `state.textinfo`. Here `progressapi` takes the request fields as keyword
arguments and returns a dict (the real one returns a pydantic ProgressResponse).
"""

from __future__ import annotations

import random
import string
import time
from collections import OrderedDict

current_task = None
pending_tasks: OrderedDict = OrderedDict()
finished_tasks: list = []
recorded_results: list = []
recorded_results_limit = 2


def start_task(id_task):
    global current_task
    current_task = id_task
    pending_tasks.pop(id_task, None)


def finish_task(id_task):
    global current_task
    if current_task == id_task:
        current_task = None
    finished_tasks.append(id_task)
    if len(finished_tasks) > 16:
        finished_tasks.pop(0)


def create_task_id(task_type):
    res = "".join(random.choices(string.ascii_uppercase + string.digits, k=7))
    return f"task({task_type}-{res})"


def record_results(id_task, res):
    recorded_results.append((id_task, res))
    if len(recorded_results) > recorded_results_limit:
        recorded_results.pop(0)


def add_task_to_queue(id_job):
    pending_tasks[id_job] = time.time()


def progressapi(id_task=None, id_live_preview=-1, live_preview=True):
    from modules import shared

    active = id_task == current_task
    queued = id_task in pending_tasks
    completed = id_task in finished_tasks
    if not active:
        return {"active": False, "queued": queued, "completed": completed, "textinfo": "Waiting..."}
    state = shared.state
    progress = 0.0
    if state.job_count > 0:
        progress += state.job_no / state.job_count
    if state.sampling_steps > 0 and state.job_count > 0:
        progress += 1 / state.job_count * state.sampling_step / state.sampling_steps
    progress = min(progress, 1)
    elapsed = time.time() - state.time_start
    eta = (elapsed / progress - elapsed) if progress > 0 else None
    preview = None
    if live_preview and state.id_live_preview != id_live_preview:
        preview = state.current_image
    return {
        "active": True,
        "queued": queued,
        "completed": completed,
        "progress": progress,
        "eta": eta,
        "live_preview": preview,
        "id_live_preview": state.id_live_preview,
        "textinfo": state.textinfo,
    }


def reset():
    """Forget all tasks (tests call this between cases)."""
    global current_task
    current_task = None
    pending_tasks.clear()
    finished_tasks.clear()
    recorded_results.clear()
