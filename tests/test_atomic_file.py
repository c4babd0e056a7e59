"""Files the trainer writes get a plain file's mode (found in a real A1111: LoRAs came out 0600)."""

from __future__ import annotations

import os
import stat
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from dataset_helpers import png

from lora_trainer.atomic_file import create_beside, write_atomic
from lora_trainer.dataset.layout_build import BuildRequest, build_dataset_folder
from lora_trainer.lora.kohya_file import save_kohya_lora

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_files_follow_the_umask(tmp_path, mask, expected):
    with umask(mask):
        write_atomic(tmp_path / "a.bin", lambda f: f.write(b"x"))
    assert _mode(tmp_path / "a.bin") == expected
    assert (tmp_path / "a.bin").read_bytes() == b"x"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def broken(f):
        f.write(b"half")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        write_atomic(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_temporary_names_never_clash(tmp_path):
    fds = [create_beside(tmp_path / "a.bin") for _ in range(20)]
    for fd, _ in fds:
        os.close(fd)
    names = {tmp.name for _, tmp in fds}
    assert len(names) == 20 and all(n.startswith(".a.bin.") and n.endswith(".tmp") for n in names)


def test_a_saved_lora_is_readable_by_the_webuis_other_users(tmp_path):
    tensors = {
        "lora_unet_x.lora_down.weight": torch.zeros(2, 4),
        "lora_unet_x.lora_up.weight": torch.zeros(4, 2),
        "lora_unet_x.alpha": torch.tensor(1.0),
    }
    with umask(0o022):
        save_kohya_lora(tmp_path / "my.safetensors", tensors, {"ss_network_dim": "2"})
    assert _mode(tmp_path / "my.safetensors") == 0o644


def test_captions_written_by_the_folder_helper_are_plain_files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    png(src / "a.png", (64, 64), (10, 20, 30))
    with umask(0o022):
        build_dataset_folder(BuildRequest([src], "sks", "dog", 2, tmp_path / "ds"))
    caption = tmp_path / "ds" / "img" / "2_sks dog" / "a.txt"
    assert caption.read_text() == "sks dog\n" and _mode(caption) == 0o644
