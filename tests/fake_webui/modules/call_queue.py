"""Fake of modules/call_queue.py (A1111 v1.10.1): the GPU queue and the gradio call wrappers.

Real:
- `queue_lock = fifo_lock.FIFOLock()`: every generation, the API's txt2img included, runs
  under it;
- `wrap_queued_call(func)`: runs func under queue_lock;
- `wrap_gradio_gpu_call(func, extra_outputs=None)`: when args[0] is "task(...)" it is the
  job id (queued with progress.add_task_to_queue); then under queue_lock:
  `shared.state.begin(job=id_task)`, `progress.start_task`, func,
  `progress.record_results`, finally `progress.finish_task`, then `shared.state.end()`;
  wrapped by `wrap_gradio_call(..., add_stats=True)`;
- `wrap_gradio_call`: afterwards always resets state.skipped/interrupted/
  stopping_generation, job_count = 0, job = "";
- `wrap_gradio_call_no_job`: `res = list(func(...))`; on an exception it reports it and
  returns `extra_outputs` (default [None, '']) + an HTML error div
  "<div class='error'>{Type}: {message}</div>"; calls devices.torch_gc(); with add_stats
  appends a "Time taken" performance div to the last output (an HTML string). Memory
  monitor and profiling links are left out.
"""

from __future__ import annotations

import html
import time
import traceback
from functools import wraps

from modules import devices, fifo_lock, progress, shared

queue_lock = fifo_lock.FIFOLock()
reported_errors: list[str] = []  # what errors.report would print (tests read it)


def wrap_queued_call(func):
    def f(*args, **kwargs):
        with queue_lock:
            return func(*args, **kwargs)

    return f


def wrap_gradio_gpu_call(func, extra_outputs=None):
    @wraps(func)
    def f(*args, **kwargs):
        if args and type(args[0]) is str and args[0].startswith("task(") and args[0].endswith(")"):
            id_task = args[0]
            progress.add_task_to_queue(id_task)
        else:
            id_task = None

        with queue_lock:
            shared.state.begin(job=id_task)
            progress.start_task(id_task)
            try:
                res = func(*args, **kwargs)
                progress.record_results(id_task, res)
            finally:
                progress.finish_task(id_task)
            shared.state.end()
        return res

    return wrap_gradio_call(f, extra_outputs=extra_outputs, add_stats=True)


def wrap_gradio_call(func, extra_outputs=None, add_stats=False):
    @wraps(func)
    def f(*args, **kwargs):
        try:
            res = func(*args, **kwargs)
        finally:
            shared.state.skipped = False
            shared.state.interrupted = False
            shared.state.stopping_generation = False
            shared.state.job_count = 0
            shared.state.job = ""
        return res

    return wrap_gradio_call_no_job(f, extra_outputs, add_stats)


def wrap_gradio_call_no_job(func, extra_outputs=None, add_stats=False):
    @wraps(func)
    def f(*args, extra_outputs_array=extra_outputs, **kwargs):
        t = time.perf_counter()
        try:
            res = list(func(*args, **kwargs))
        except Exception as e:
            reported_errors.append(traceback.format_exc())
            if extra_outputs_array is None:
                extra_outputs_array = [None, ""]
            error_message = f"{type(e).__name__}: {e}"
            res = [*extra_outputs_array, f"<div class='error'>{html.escape(error_message)}</div>"]

        devices.torch_gc()
        if not add_stats:
            return tuple(res)
        elapsed = time.perf_counter() - t
        res[-1] += (
            "<div class='performance'><p class='time'>Time taken: <wbr>"
            f"<span class='measurement'>{elapsed % 60:.1f} sec.</span></p></div>"
        )
        return tuple(res)

    return f
