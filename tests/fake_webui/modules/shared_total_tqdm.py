"""Fake of modules/shared_total_tqdm.py (A1111 v1.10.1): the console's total progress bar.

Real: `TotalTQDM` with `reset()`, `update()`, `updateTotal(new_total)` and `clear()`; it
shows a tqdm bar only when opts.multiple_tqdm is on. Here it only keeps the numbers.
"""

from __future__ import annotations


class TotalTQDM:
    def __init__(self):
        self._tqdm = None
        self.total = None
        self.done = 0

    def reset(self):
        self.done = 0

    def update(self):
        self.done += 1

    def updateTotal(self, new_total):
        self.total = new_total

    def clear(self):
        self.total = None
        self.done = 0
