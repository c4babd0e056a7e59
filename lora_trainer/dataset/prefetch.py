"""Batches loaded ahead in a background thread while the current step trains (kohya's loader workers)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset

from .loading import BatchRequest, SampleLoader

# loaded batches that may wait for the training step; one more may be loading meanwhile
PREFETCH_DEPTH = 2
THREAD_NAME = "lora-data-prefetch"

_DONE = object()  # the worker's last item for a run: nothing more will come


@dataclass
class _Failed:
    error: BaseException


class _Run:
    """One sequence of requests handed to the worker, and the queue its batches come back on."""

    def __init__(self, requests: list[BatchRequest], depth: int) -> None:
        self.requests = requests
        self.results: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.cancel = threading.Event()
        self.finished = False  # _DONE was taken off the queue (main thread only)

    def take(self) -> Any:
        item = self.results.get()
        if item is _DONE:
            self.finished = True
        return item

    def abandon(self) -> None:
        """Tell the worker to stop after its current batch, and wait until it has."""
        self.cancel.set()
        while not self.finished:
            self.take()


class BatchFeed:
    """Loads the batches of a known sequence in order; with `background`, ahead of use in a thread.

    A batch carries its training clock (BatchRequest), so loading it early gives exactly
    what loading it just in time gives. The worker thread is the only one that loads,
    so the dataset's clock is never set by two threads at once. With `persistent` the
    thread (and the loader's decode threads) live until close(); otherwise they end
    with each sequence, as kohya's DataLoader workers end with each epoch.
    """

    def __init__(
        self,
        loader: SampleLoader,
        *,
        background: bool,
        persistent: bool = False,
        depth: int = PREFETCH_DEPTH,
    ) -> None:
        if depth < 1:
            raise ValueError("prefetch depth must be at least 1")
        self.loader = loader
        self.background, self.persistent, self.depth = background, persistent, depth
        self._jobs: queue.SimpleQueue[_Run | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._active: _Run | None = None

    def batches(self, requests: Sequence[BatchRequest]) -> Iterator[list[dict[str, Any]]]:
        """The loaded samples of each request, in order; an error in loading is raised here."""
        if not self.background:
            yield from self._batches_here(requests)
            return
        run = _Run(list(requests), self.depth)
        self._start_thread()
        self._active = run
        self._jobs.put(run)
        try:
            for _ in run.requests:
                item = run.take()
                if isinstance(item, _Failed):
                    raise item.error  # the loader's own exception, message and traceback
                yield item
        finally:
            run.abandon()
            self._active = None
            if not self.persistent:
                self._stop_thread()

    def _batches_here(self, requests: Sequence[BatchRequest]) -> Iterator[list[dict[str, Any]]]:
        try:
            for request in requests:
                yield self.loader.load_request(request)
        finally:
            if not self.persistent:
                self.loader.close()

    def close(self) -> None:
        """Stop loading and end every thread this feed started; safe to call twice."""
        if self._active is not None:
            self._active.abandon()
            self._active = None
        self._stop_thread()

    def __enter__(self) -> BatchFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the worker thread ------------------------------------------------------------------

    def _start_thread(self) -> None:
        if self._thread is None:
            # daemon: a program that dies without close() must still be able to exit
            self._thread = threading.Thread(target=self._serve, name=THREAD_NAME, daemon=True)
            self._thread.start()

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        self.loader.close()

    def _serve(self) -> None:
        while (run := self._jobs.get()) is not None:
            try:
                for request in run.requests:
                    if run.cancel.is_set():
                        break
                    run.results.put(self.loader.load_request(request))
            except BaseException as exc:  # handed to the training thread, raised there
                run.results.put(_Failed(exc))
            run.results.put(_DONE)


def open_feed(dataset: Dataset, workers: int, persistent: bool = False) -> BatchFeed:
    """kohya's max_data_loader_n_workers: 0 loads in the training thread, more loads ahead in the background."""
    loader = SampleLoader(dataset, workers)
    return BatchFeed(loader, background=workers > 0, persistent=persistent)
