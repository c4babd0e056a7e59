"""Batches loaded ahead in a background thread: same results, overlap, errors, no thread left behind."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
from train_helpers import tiny_config

from lora_trainer.config import TrainConfig
from lora_trainer.dataset import image_dataset
from lora_trainer.dataset.loading import BatchRequest, SampleLoader
from lora_trainer.dataset.prefetch import THREAD_NAME, BatchFeed, open_feed
from lora_trainer.demo import make_demo_dataset
from lora_trainer.lora.kohya_file import load_kohya_lora
from lora_trainer.train.events import StepEvent, StopSignal
from lora_trainer.train.job import run_training

WAIT = 10.0  # seconds; only reached when something is broken


class ClockDataset(torch.utils.data.Dataset):
    """Returns the clock each sample was loaded under; can block or fail on chosen indices."""

    def __init__(self, size: int = 12, fail_at: int | None = None) -> None:
        self.size, self.fail_at = size, fail_at
        self.epoch = self.step = 0
        self.asked: list[int] = []
        self.asked_event: dict[int, threading.Event] = {i: threading.Event() for i in range(size)}

    def __len__(self) -> int:
        return self.size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_current_step(self, step: int) -> None:
        self.step = step

    def __getitem__(self, index: int) -> dict:
        self.asked.append(index)
        self.asked_event[index].set()
        if index == self.fail_at:
            raise OSError(f"image {index} is truncated")
        return {"index": index, "epoch": self.epoch, "step": self.step}


def _requests(n: int, epoch: int = 1) -> list[BatchRequest]:
    return [BatchRequest([2 * k, 2 * k + 1], epoch, 10 + k) for k in range(n)]


def _loader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("lora-data", THREAD_NAME))]


@pytest.mark.parametrize("background", [False, True])
def test_each_batch_is_loaded_under_its_own_clock(background):
    dataset = ClockDataset()
    with BatchFeed(SampleLoader(dataset, 2), background=background) as feed:
        got = list(feed.batches(_requests(6, epoch=3)))
    assert [[s["index"] for s in b] for b in got] == [[2 * k, 2 * k + 1] for k in range(6)]
    assert all(s["epoch"] == 3 and s["step"] == 10 + k for k, b in enumerate(got) for s in b)
    assert not _loader_threads()


def test_the_next_batch_loads_while_the_current_one_is_used():
    dataset = ClockDataset()
    with BatchFeed(SampleLoader(dataset, 1), background=True) as feed:
        batches = feed.batches(_requests(4))
        next(batches)  # batch 0 (indices 0, 1) is in use ...
        # ... and batch 1 (index 2) is being read meanwhile, without asking for it
        assert dataset.asked_event[2].wait(WAIT)
        next(batches)
        batches.close()
    # at most PREFETCH_DEPTH batches wait, one more may load: never the whole epoch at once
    assert max(dataset.asked) < 10


def test_loading_in_the_training_thread_does_not_read_ahead():
    dataset = ClockDataset()
    feed = open_feed(dataset, workers=0)
    batches = feed.batches(_requests(4))
    next(batches)
    assert dataset.asked == [0, 1] and not _loader_threads()
    feed.close()


def test_a_loader_error_is_raised_in_the_training_thread_with_its_message():
    dataset = ClockDataset(fail_at=5)
    feed = BatchFeed(SampleLoader(dataset, 1), background=True)
    got = []
    with pytest.raises(OSError, match=r"^image 5 is truncated$"):
        for batch in feed.batches(_requests(6)):
            got.append(batch)
    assert len(got) == 2  # batches before the broken one arrive first
    feed.close()
    assert not _loader_threads()


def test_close_while_the_worker_waits_on_a_full_queue_ends_the_thread():
    dataset = ClockDataset(size=40)
    feed = BatchFeed(SampleLoader(dataset, 1), background=True, persistent=True, depth=1)
    batches = feed.batches([BatchRequest([i], 1, 0) for i in range(40)])
    next(batches)
    assert dataset.asked_event[2].wait(WAIT)  # queue full (1 waiting), worker blocked on put
    feed.close()
    assert not _loader_threads()
    batches.close()  # the abandoned generator closes quietly afterwards


def test_persistent_feed_keeps_its_thread_between_sequences():
    dataset = ClockDataset()
    feed = BatchFeed(SampleLoader(dataset, 1), background=True, persistent=True)
    list(feed.batches(_requests(2)))
    assert len(_loader_threads()) == 1
    list(feed.batches(_requests(2, epoch=2)))
    feed.close()
    assert not _loader_threads()


def test_non_persistent_feed_ends_its_thread_after_each_sequence():
    feed = BatchFeed(SampleLoader(ClockDataset(), 1), background=True)
    list(feed.batches(_requests(2)))
    assert not _loader_threads()


# --- through the training loop ----------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("data"), count=3)


def _config(dataset_dir: Path, out: Path, **options) -> TrainConfig:
    defaults = {
        "output_name": "p",
        "seed": 5,
        "learning_rate": 1e-3,
        "train_batch_size": 2,
        # 3 images x 2 repeats, batch 2, accumulation 2: 2 steps an epoch, 3 epochs; the
        # clock-dependent caption options make a batch loaded under the wrong clock differ
        "gradient_accumulation_steps": 2,
        "max_train_epochs": 3,
        "shuffle_caption": True,
        "token_warmup_step": 4,
        "caption_dropout_every_n_epochs": 2,
        "flip_aug": True,
    }
    return tiny_config(dataset_dir, out, defaults, **options)


def test_prefetch_trains_the_bit_identical_lora(dataset_dir, tmp_path, monkeypatch):
    loads: list[tuple] = []  # (sample, clock epoch, clock step, optimizer steps done so far)
    steps_done = [0]
    original = image_dataset.ImageCaptionDataset.__getitem__

    def recording(self, index):
        loads.append((index, self.clock.epoch, self.clock.step, steps_done[0]))
        return original(self, index)

    def count(event):
        if isinstance(event, StepEvent):
            steps_done[0] = event.step

    monkeypatch.setattr(image_dataset.ImageCaptionDataset, "__getitem__", recording)
    results = {}
    for name, options in {
        "in thread": {"max_data_loader_n_workers": 0},
        "ahead": {"max_data_loader_n_workers": 2},
        "ahead, persistent": {
            "max_data_loader_n_workers": 1,
            "persistent_data_loader_workers": True,
        },
    }.items():
        loads.clear()
        config = _config(dataset_dir, tmp_path / name.replace(", ", "_"), **options)
        result = run_training(config, emit=count)
        tensors = load_kohya_lora(result.output_path).tensors
        results[name] = (result.losses, tensors, [load[:3] for load in loads])
        if name == "in thread":  # loaded just in time: the clock is the steps done so far
            assert [load[2] for load in loads] == [load[3] for load in loads]
            assert {load[1] for load in loads} == {1, 2, 3}
        assert not _loader_threads()
    losses, tensors, clocks = results.pop("in thread")
    assert len(losses) == 6 and len(clocks) == 18
    for other_losses, other, other_clocks in results.values():
        assert other_clocks == clocks  # every sample saw the clock it sees when loaded in time
        assert other_losses == losses
        assert all(torch.equal(tensors[k], other[k]) for k in tensors)


def test_stop_mid_epoch_leaves_no_loader_thread(dataset_dir, tmp_path, monkeypatch):
    started = threading.Event()
    original = image_dataset.load_image_rgb

    def read(*args, **kwargs):
        started.set()
        return original(*args, **kwargs)

    monkeypatch.setattr(image_dataset, "load_image_rgb", read)
    stop = StopSignal()

    def emit(event):
        if isinstance(event, StepEvent) and event.step == 1:
            stop.request(save=False)

    options = {"gradient_accumulation_steps": 1, "persistent_data_loader_workers": True}
    result = run_training(_config(dataset_dir, tmp_path, **options), emit=emit, stop=stop)
    assert result.stopped and result.steps == 1 and started.is_set()
    assert not _loader_threads()


def test_an_image_read_error_reaches_the_caller_unchanged(dataset_dir, tmp_path, monkeypatch):
    calls = []

    def broken(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(f"cannot identify image file {str(path)!r}")
        return original(path, *args, **kwargs)

    original = image_dataset.load_image_rgb
    monkeypatch.setattr(image_dataset, "load_image_rgb", broken)
    with pytest.raises(OSError, match=r"^cannot identify image file"):
        run_training(_config(dataset_dir, tmp_path))
    assert not _loader_threads()


def test_bench_data_loading_lines(tmp_path, capsys):
    from lora_trainer.cli import main

    args = [
        "bench", "--arch", "tiny", "--steps", "2", "--warmup", "1", "--rank", "2",
        "--gradient_checkpointing", "off", "--cache_latents", "off",
        "--cache_text_encoder_outputs", "off", "--dataset_images", "0",
        "--image_read_delay", "0.1", "--workdir", str(tmp_path),
    ]  # fmt: skip
    assert main(args) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    loading = [r for r in records if r["bench"] == "data_loading"]
    assert [(r["loader"], r["loader_workers"]) for r in loading] == [
        ("training thread", 0), ("background", 1),
    ]  # fmt: skip
    for record in loading:
        assert "error" not in record, record
        assert record["delay_per_step_s"] == 0.1 and record["images"] == 4
        assert record["saved_s_per_step"] == round(
            loading[0]["s_per_step_median"] - loading[1]["s_per_step_median"], 4
        )
    # in the training thread every step waits for its reads
    assert loading[0]["s_per_step_min"] >= 0.1
    assert main(["bench", "--image_read_delay", "-1"]) == 2
    assert "--image_read_delay must be 0 or more" in capsys.readouterr().err
