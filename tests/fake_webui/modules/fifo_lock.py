"""Fake of modules/fifo_lock.py (A1111 v1.10.1): `FIFOLock`, a lock served in arrival order.

Real: `acquire(blocking=True)` takes the inner lock at once if free, else queues an Event
and waits for its turn; `release()` wakes the oldest waiter; usable as a context manager.
The same logic is reproduced here because call_queue.queue_lock is one.
"""

from __future__ import annotations

import collections
import threading


class FIFOLock:
    def __init__(self):
        self._lock = threading.Lock()
        self._inner_lock = threading.Lock()
        self._pending_threads = collections.deque()

    def acquire(self, blocking=True):
        with self._inner_lock:
            if self._lock.acquire(False):
                return True
            if not blocking:
                return False
            release_event = threading.Event()
            self._pending_threads.append(release_event)
        release_event.wait()
        return self._lock.acquire()

    def release(self):
        with self._inner_lock:
            if self._pending_threads:
                self._pending_threads.popleft().set()
            self._lock.release()

    __enter__ = acquire

    def __exit__(self, t, v, tb):
        self.release()
