"""Does data loading overlap the training step? Step time with slow image reads, loaded in the training thread vs ahead."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

from ..dataset import image_dataset

# max_data_loader_n_workers of the two setups compared: in the training thread, and ahead
# (one decode thread in both, so the difference is the overlap alone)
LOADERS = {"training thread": 0, "background": 1}


@contextlib.contextmanager
def slow_image_reads(seconds: float) -> Iterator[None]:
    """Every image read takes `seconds` longer, as from a slow disk or a huge file.

    A sleep, not busy work: it costs no CPU, so the measure is the overlap itself and
    not how many cores are free to decode.
    """
    if seconds <= 0:
        yield
        return
    original = image_dataset.load_image_rgb

    def slow_read(*args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return original(*args, **kwargs)

    image_dataset.load_image_rgb = slow_read
    try:
        yield
    finally:
        image_dataset.load_image_rgb = original


def loading_records(case: Any, run: Any, bundle: Any, peak: Any, first_index: int) -> list[dict]:
    """One `data_loading` record per loader setup, for `case` with images read `delay` slower.

    The dataset holds every step's batch, so no epoch boundary (where loading restarts)
    falls inside the timed steps.
    """
    from .runner import run_case

    steps = run.warmup_steps + 1 + run.steps
    records = []
    for offset, (name, workers) in enumerate(LOADERS.items()):
        setup = dataclasses.replace(case, loader_workers=workers, images=steps * case.batch)
        record = run_case(setup, bundle, run, peak, first_index + offset)
        records.append(_loading_record(record, name))
    if all("s_per_step_median" in r for r in records):
        inline, ahead = (r["s_per_step_median"] for r in records)
        for record in records:
            record["saved_s_per_step"] = round(inline - ahead, 4)
    return records


def _loading_record(record: dict, loader: str) -> dict:
    keep = ("arch", "device", "resolution", "batch", "precision", "loader_workers",
            "decode_delay_s", "images", "error", "steps_timed", "s_per_step",
            "s_per_step_min", "s_per_step_median")  # fmt: skip
    out = {"bench": "data_loading", "loader": loader}
    out.update({k: record[k] for k in keep if k in record})
    if "decode_delay_s" in out:
        out["delay_per_step_s"] = round(out["decode_delay_s"] * out["batch"], 4)
    return out
