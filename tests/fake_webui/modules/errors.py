"""Fake of modules/errors.py (A1111 v1.10.1): how the WebUI reports errors it survives.

Real: `report(message, *, exc_info=False)` prints the message (and the traceback) to the
console; `display(e, task, *, full_traceback=False)` prints "{task}: {type}" and the
traceback; `display_once(e, task)` does it once per task; `record_exception()` remembers
the exception for the sysinfo page. Here each report is also kept in `reported` for tests.
"""

from __future__ import annotations

import sys
import traceback

reported: list[tuple[str, BaseException | None]] = []
_already_displayed: dict = {}


def report(message: str, *, exc_info: bool = False) -> None:
    exc = sys.exc_info()[1] if exc_info else None
    reported.append((message, exc))
    print("***", message, file=sys.stderr)
    if exc is not None:
        traceback.print_exc()


def display(e: BaseException, task, *, full_traceback=False):
    reported.append((str(task), e))
    print(f"{task or 'error'}: {type(e).__name__}", file=sys.stderr)
    print(f"    {e}", file=sys.stderr)


def display_once(e: BaseException, task):
    if task in _already_displayed:
        return
    display(e, task)
    _already_displayed[task] = 1


def record_exception():
    pass
