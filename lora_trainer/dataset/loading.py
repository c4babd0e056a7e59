"""Loading a batch's samples, in threads when asked (kohya's max_data_loader_n_workers)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset


@dataclass(frozen=True)
class BatchRequest:
    """One batch to load, and the training clock it is loaded under.

    `epoch` is kohya's current_epoch (caption dropout every N epochs and every sample's
    random choices read it), `step` the optimizer steps done when the batch is used
    (token warmup reads it). Carrying them with the batch lets a batch be loaded early
    and still see what it would have seen when loaded just in time.
    """

    indices: list[int]
    epoch: int
    step: int


class SampleLoader:
    """`load(indices)` returns dataset[i] for each index, in order; decoding runs in up to `workers` threads.

    Every sample's randomness comes from its own index and the training clock, so the
    result is the same whatever the number of threads.
    """

    def __init__(self, dataset: Dataset, workers: int = 0) -> None:
        self.dataset = dataset
        # like kohya, never more workers than CPU cores
        self.workers = max(0, min(workers, os.cpu_count() or 1))
        self._pool: ThreadPoolExecutor | None = None

    def load(self, indices: list[int]) -> list[dict[str, Any]]:
        if self.workers < 2 or len(indices) < 2:
            return [self.dataset[i] for i in indices]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="lora-data")
        return list(self._pool.map(self.dataset.__getitem__, indices))

    def load_request(self, request: BatchRequest) -> list[dict[str, Any]]:
        """Set the dataset's clock to the request's, then load its samples.

        Only one thread may call this at a time: the clock is the dataset's own state.
        """
        for name, value in (("set_epoch", request.epoch), ("set_current_step", request.step)):
            setter = getattr(self.dataset, name, None)
            if setter is not None:
                setter(value)
        return self.load(request.indices)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> SampleLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
