"""The dataset pipeline benchmark the bench command prints."""

from __future__ import annotations

import pytest
from dataset_helpers import one_torch_thread  # noqa: F401

from lora_trainer.dataset.bench import bench_dataset_pipeline
from lora_trainer.errors import DatasetError


@pytest.mark.usefixtures("one_torch_thread")
def test_bench_measures_each_stage(tmp_path):
    result = bench_dataset_pipeline(tmp_path / "bench", images=7)
    assert result["images"] == 7 and result["buckets"] >= 2  # several aspect ratios
    for stage in ("scan_bucket", "load", "cache_encode", "cache_reuse", "load_cached"):
        assert result[f"{stage}_images_per_s"] > 0 and result[f"{stage}_s"] >= 0
    assert (result["cache_encode_vae_images"], result["cache_reuse_vae_images"]) == (7, 0)
    assert all(isinstance(v, float) for v in result.values())
    again = bench_dataset_pipeline(tmp_path / "bench", images=2)  # its own folder is replaced
    assert again["images"] == 2


def test_bench_never_clears_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(DatasetError, match="not made by the benchmark"):
        bench_dataset_pipeline(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep"
