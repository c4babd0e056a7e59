"""Aspect-ratio buckets computed exactly as kohya's BucketManager computes them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BucketOptions:
    """kohya's enable_bucket, min/max_bucket_reso, bucket_reso_steps, bucket_no_upscale."""

    enable: bool = False
    min_reso: int = 256
    max_reso: int = 1024
    reso_steps: int = 64
    no_upscale: bool = False


@dataclass(frozen=True)
class BucketChoice:
    """Where one image goes: the bucket (w, h), the size it is resized to before the crop, the aspect error."""

    reso: tuple[int, int]
    resized_size: tuple[int, int]
    ar_error: float


def make_bucket_resolutions(
    max_reso: tuple[int, int], min_size: int = 256, max_size: int = 1024, divisible: int = 64
) -> list[tuple[int, int]]:
    """kohya's model_util.make_bucket_resolutions: sorted (w, h) pairs of about max_reso's area."""
    max_area = max_reso[0] * max_reso[1]
    side = int(math.sqrt(max_area) // divisible) * divisible
    resos = {(side, side)}
    width = min_size
    while width <= max_size:
        height = min(max_size, int((max_area // width) // divisible) * divisible)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
        width += divisible
    return sorted(resos)


def snap_bucket_limits(options: BucketOptions) -> tuple[int, int, list[str]]:
    """min/max_bucket_reso moved to multiples of bucket_reso_steps (kohya: min down, max up), with notes."""
    lo, hi, step = options.min_reso, options.max_reso, options.reso_steps
    notes = []
    if lo % step:
        notes.append(f"min_bucket_reso {lo} is not a multiple of {step}: using {lo - lo % step}")
        lo -= lo % step
    if hi % step:
        notes.append(
            f"max_bucket_reso {hi} is not a multiple of {step}: using {hi + step - hi % step}"
        )
        hi += step - hi % step
    return lo, hi, notes


class BucketSelector:
    """kohya's BucketManager.select_bucket for one dataset (one resolution and bucket setting)."""

    def __init__(self, options: BucketOptions, resolution: tuple[int, int]) -> None:
        self.no_upscale = options.enable and options.no_upscale
        self.max_area = resolution[0] * resolution[1]
        self.reso_steps = options.reso_steps
        if not options.enable:
            # kohya without buckets: one predefined bucket, the training resolution
            self.predefined = [tuple(resolution)]
        elif not self.no_upscale:
            lo, hi, _ = snap_bucket_limits(options)
            self.predefined = make_bucket_resolutions(resolution, lo, hi, options.reso_steps)
        else:
            self.predefined = []  # no_upscale: buckets come from the image sizes
        self._predefined_set = set(self.predefined)
        self._ratios = [w / h for w, h in self.predefined]

    def select(self, width: int, height: int) -> BucketChoice:
        """The bucket, resized size and aspect error for an image of width x height."""
        if self.no_upscale:
            return self._select_no_upscale(width, height)
        aspect = width / height
        reso = (width, height)
        if reso not in self._predefined_set:
            errors = [abs(r - aspect) for r in self._ratios]
            reso = self.predefined[errors.index(min(errors))]  # first minimum, like numpy argmin
        if aspect > reso[0] / reso[1]:  # wider than the bucket: fit the height
            scale = reso[1] / height
        else:
            scale = reso[0] / width
        resized = (int(width * scale + 0.5), int(height * scale + 0.5))
        return BucketChoice(tuple(reso), resized, reso[0] / reso[1] - aspect)

    def _round_to_steps(self, x: float) -> int:
        x = int(x + 0.5)
        return x - x % self.reso_steps

    def _select_no_upscale(self, width: int, height: int) -> BucketChoice:
        aspect = width / height
        if width * height > self.max_area:
            # shrink to the maximum area, then round one side to the step, the one that
            # keeps the aspect ratio closer (kohya's rule)
            resized_w = math.sqrt(self.max_area * aspect)
            resized_h = self.max_area / resized_w
            w_rounded = self._round_to_steps(resized_w)
            h_in_w = self._round_to_steps(w_rounded / aspect)
            h_rounded = self._round_to_steps(resized_h)
            w_in_h = self._round_to_steps(h_rounded * aspect)
            if abs(w_rounded / h_in_w - aspect) < abs(w_in_h / h_rounded - aspect):
                resized = (w_rounded, int(w_rounded / aspect + 0.5))
            else:
                resized = (int(h_rounded * aspect + 0.5), h_rounded)
        else:
            resized = (width, height)
        reso = (
            resized[0] - resized[0] % self.reso_steps,
            resized[1] - resized[1] % self.reso_steps,
        )
        return BucketChoice(reso, resized, reso[0] / reso[1] - aspect)


def crop_ltrb(
    bucket_reso: tuple[int, int], image_size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """kohya's get_crop_ltrb: the image's place in the bucket, as SDXL's crop conditioning sees it."""
    bucket_ar = bucket_reso[0] / bucket_reso[1]
    image_ar = image_size[0] / image_size[1]
    if bucket_ar > image_ar:
        resized_w, resized_h = bucket_reso[1] * image_ar, bucket_reso[1]
    else:
        resized_w, resized_h = bucket_reso[0], bucket_reso[0] / image_ar
    left = (bucket_reso[0] - resized_w) // 2
    top = (bucket_reso[1] - resized_h) // 2
    return left, top, left + resized_w, top + resized_h


def bucket_info(counts: dict[tuple[int, int], int], ar_errors: list[float]) -> dict[str, object]:
    """kohya's dataset.bucket_info: buckets in resolution order with their counts, and the mean |aspect error|."""
    buckets = {
        i: {"resolution": reso, "count": counts[reso]}
        for i, reso in enumerate(sorted(counts))
        if counts[reso] > 0
    }
    # numpy's pairwise mean, as kohya computes it, so the metadata string is identical
    mean = float(np.mean(np.abs(np.array(ar_errors)))) if ar_errors else 0
    return {"buckets": buckets, "mean_img_ar_error": mean}
