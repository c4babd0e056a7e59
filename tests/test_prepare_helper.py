"""The folder helper: build a kohya dataset from images, check one (every problem, nothing changed)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from dataset_helpers import png
from PIL import Image

from lora_trainer.cli import main
from lora_trainer.dataset.layout_build import BuildRequest, build_dataset_folder
from lora_trainer.dataset.layout_check import CheckOptions, check_dataset_folder
from lora_trainer.dataset.steps import estimate_steps, suggest_repeats
from lora_trainer.errors import DatasetError


def _state(folder: Path) -> dict[str, tuple[str, int] | str]:
    """Every file's hash and mtime, and every folder, under `folder` (links not followed)."""
    state: dict[str, tuple[str, int] | str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames:
            state[os.path.relpath(os.path.join(dirpath, name), folder)] = "dir"
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                state[str(path.relative_to(folder))] = "link"
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            state[str(path.relative_to(folder))] = (digest, path.stat().st_mtime_ns)
    return state


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    src = tmp_path / "photos"
    for i, size in enumerate([(300, 400), (512, 512), (640, 480)]):
        png(src / f"photo{i}.png", size, (30 * i, 100, 100))
    (src / "photo1.txt").write_text("sks dog, on the beach\n", encoding="utf-8")
    (src / "notes.md").write_text("not an image", encoding="utf-8")
    return src


def test_build_lays_out_copies_and_captions(tmp_path, sources):
    before = _state(sources)
    request = BuildRequest([sources], "sks", "dog", 10, tmp_path / "ds")
    result = build_dataset_folder(request)
    folder = tmp_path / "ds" / "img" / "10_sks dog"
    assert result.images.folder == folder
    assert sorted(p.name for p in folder.iterdir()) == [
        "photo0.png", "photo0.txt", "photo1.png", "photo1.txt", "photo2.png", "photo2.txt",
    ]  # fmt: skip
    assert (folder / "photo0.txt").read_text() == "sks dog\n"
    assert (folder / "photo1.txt").read_text() == "sks dog, on the beach\n"  # kept as it was
    assert (result.images.captions_written, result.images.captions_kept) == (2, 1)
    assert (tmp_path / "ds" / "model").is_dir() and (tmp_path / "ds" / "log").is_dir()
    assert [p.name for p in result.images.not_images] == ["notes.md"]
    assert (folder / "photo2.png").read_bytes() == (sources / "photo2.png").read_bytes()
    assert _state(sources) == before  # copied, never moved or changed
    assert not list((tmp_path / "ds").rglob("*.tmp"))
    lines = result.summary_lines(epochs=10, batch_size=1, target_steps=600)
    assert "30 images x repeats = 30 per epoch" in lines[-3] and "= 300 steps" in lines[-3]
    assert lines[-2] == "For about 600 steps, use 20 repeats (this folder has 10)"
    assert "--train_data_dir" in lines[-1] and "'" not in lines[-1]


def test_build_again_copies_nothing_and_keeps_edited_captions(tmp_path, sources):
    request = BuildRequest([sources], "sks", "dog", 10, tmp_path / "ds")
    build_dataset_folder(request)
    folder = tmp_path / "ds" / "img" / "10_sks dog"
    (folder / "photo0.txt").write_text("my own words\n", encoding="utf-8")
    again = build_dataset_folder(request)
    assert again.images.copied == [] and len(again.images.already_there) == 3
    assert (folder / "photo0.txt").read_text() == "my own words\n"


def test_files_list_name_clashes_reg_and_template(tmp_path, sources):
    other = tmp_path / "more"
    png(other / "photo0.png", (200, 200), (1, 2, 3))  # same name, other content
    request = BuildRequest(
        [sources / "photo0.png", other / "photo0.png"], "ohwx", "woman", 4, tmp_path / "ds",
        reg_sources=[other], reg_repeats=1, caption_template="photo of {token} {class}, {name}",
    )  # fmt: skip
    result = build_dataset_folder(request)
    folder = tmp_path / "ds" / "img" / "4_ohwx woman"
    assert sorted(p.name for p in folder.glob("*.png")) == ["photo0.png", "photo0_2.png"]
    assert result.images.renamed == [(other / "photo0.png", folder / "photo0_2.png")]
    assert (folder / "photo0_2.txt").read_text() == "photo of ohwx woman, photo0\n"
    assert result.reg.folder == tmp_path / "ds" / "reg" / "1_woman"
    assert not list(result.reg.folder.glob("*.txt"))  # reg images train with the class word
    assert "--reg_data_dir" in result.summary_lines(1)[-1]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"token": ""}, "token is empty"),
        ({"token": "a/b"}, "cannot be part of a folder name"),
        ({"class_word": " dog"}, "cannot be part of a folder name"),
        ({"repeats": 0}, "at least 1"),
        ({"caption_extension": "txt"}, "must start with a dot"),
        ({"caption_template": "{name}x", "token": "t"}, None),
        ({"reg_sources": ["REG"], "class_word": ""}, "need a class word"),
        ({"sources": ["MISSING"]}, "source not found"),
    ],
)
def test_build_refuses_bad_requests_before_copying(tmp_path, sources, changes, message):
    values = {
        "sources": [sources],
        "token": "sks",
        "class_word": "dog",
        "repeats": 1,
        "out": tmp_path / "ds",
    }
    values.update(changes)
    values["sources"] = [tmp_path / "missing" if s == "MISSING" else s for s in values["sources"]]
    values["reg_sources"] = [sources for _ in values.get("reg_sources", [])]
    if message is None:
        build_dataset_folder(BuildRequest(**values))
        return
    with pytest.raises(DatasetError, match=message):
        build_dataset_folder(BuildRequest(**values))
    assert not (tmp_path / "ds").exists()


def test_steps_and_repeat_suggestions():
    estimate = estimate_steps([(20, 10)], [(50, 1)], epochs=5, batch_size=2)
    assert (estimate.train_samples, estimate.reg_samples) == (200, 200)
    assert (estimate.steps_per_epoch, estimate.total_steps) == (200, 1000)
    assert estimate_steps([(3, 2), (2, 5)], epochs=2, batch_size=4).total_steps == 2 * 4
    assert estimate_steps([(5, 1)], [(2, 1)], 1, 1).reg_samples == 5  # few reg images repeat
    assert suggest_repeats(20, 1600, epochs=10) == 8
    assert suggest_repeats(20, 1600, epochs=10, with_reg=True) == 4
    assert suggest_repeats(30, 10, epochs=10) == 1  # never below 1
    assert suggest_repeats(7, 1000, epochs=3, batch_size=2) == 95


def _broken_dataset(root: Path, outside: Path) -> set[str]:
    """A dataset folder with one of each problem; returns the kinds planted."""
    img = root / "img"
    good = img / "10_sks dog"
    png(good / "a.png", (512, 512), (10, 20, 30))
    (good / "a.txt").write_text("sks dog, sitting\n", encoding="utf-8")
    png(good / "b.png", (512, 512), (40, 50, 60))  # no caption
    (good / "orphan.txt").write_text("lost caption\n", encoding="utf-8")
    shutil.copy(good / "a.png", good / "dup.png")
    (good / "dup.txt").write_text("sks dog\n", encoding="utf-8")
    png(good / "tiny.png", (32, 32), (1, 1, 1))
    png(good / "huge.png", (600, 600), (2, 2, 2))  # "huge" with max_pixels lowered below
    Image.new("P", (300, 300)).save(good / "anim.gif")
    png(good / "bad.png", (300, 300), (3, 3, 3))
    (good / "bad.txt").write_bytes(b"sks dog \xff\xfe")
    png(good / "empty.png", (300, 300), (4, 4, 4))
    (good / "empty.txt").write_text("", encoding="utf-8")
    cut = (good / "a.png").read_bytes()
    (good / "broken.png").write_bytes(cut[: len(cut) // 2])
    png(good / "nested" / "deep.png", (300, 300))
    png(good / "long.png", (300, 300), (5, 5, 5))
    (good / "long.txt").write_text(", ".join(f"tag{i}" for i in range(90)), encoding="utf-8")
    png(good / "multi.png", (300, 300), (6, 6, 6))
    (good / "multi.txt").write_text("first line\nsecond line\n", encoding="utf-8")
    Image.new("RGBA", (300, 300), (0, 0, 0, 0)).save(good / "alpha.png")
    (good / "other.caption").write_text("wrong extension", encoding="utf-8")
    png(root / "stray.png", (300, 300))
    png(img / "loose.png", (300, 300))
    png(img / "sks dog" / "x.png", (300, 300))
    png(img / "10 sks cat" / "x.png", (300, 300))
    png(img / "0_zero" / "x.png", (300, 300))
    (img / "5_empty").mkdir()
    png(img / ".ipynb_checkpoints" / "x.png", (300, 300))
    png(root / "reg" / "1_cat" / "c.png", (300, 300), (7, 7, 7))
    kinds = {
        "image_at_wrong_level", "image_without_caption", "caption_without_image",
        "duplicate_image", "tiny_image", "huge_image", "unsupported_format", "caption_not_utf8",
        "caption_empty", "unreadable_image", "nested_images", "caption_too_long",
        "caption_multiline", "transparency", "caption_extension_mismatch", "skipped_folder",
        "empty_folder", "hidden_folder", "reg_class_mismatch",
    }  # fmt: skip
    png(outside / "secret.png", (300, 300))
    try:
        (img / "3_linked").symlink_to(outside, target_is_directory=True)
        kinds.add("link_outside")
    except OSError:
        pass
    return kinds


def test_check_finds_every_planted_problem_and_changes_nothing(tmp_path):
    root = tmp_path / "ds"
    planted = _broken_dataset(root, tmp_path / "outside")
    before = _state(root)
    report = check_dataset_folder(root, CheckOptions(max_pixels=300_000, target_steps=500))
    assert planted <= report.kinds, planted - report.kinds
    assert len(planted) >= 12
    assert _state(root) == before  # hashes, mtimes and the listing unchanged
    lines = report.lines()
    assert sum(line.startswith("ERROR:") for line in lines) == len(report.errors) >= 4
    assert any("skips" in line and "rename it to '10_sks cat'" in line for line in lines)
    concepts = {c.folder.name: len(c.images) for c in report.concepts}
    assert concepts == {"10_sks dog": 10, "1_cat": 1}  # broken.png cannot train
    assert report.steps.train_samples == 100 and report.steps.reg_samples == 100
    assert report.suggested_repeats is not None


def test_check_cli_prints_all_and_fails_on_errors(tmp_path, capsys):
    root = tmp_path / "ds"
    _broken_dataset(root, tmp_path / "outside")
    before = _state(root)
    assert main(["prepare", "--check", str(root), "--epochs", "2"]) == 1
    out = capsys.readouterr().out
    for kind_text in ("not UTF-8", "caption file is empty", "no image", "same content", "not read"):
        assert kind_text in out, kind_text
    assert "Steps: " in out and "x 2 epochs" in out
    assert _state(root) == before


def test_check_of_a_clean_dataset_and_of_the_img_folder(tmp_path, sources):
    build_dataset_folder(BuildRequest([sources], "sks", "dog", 2, tmp_path / "ds"))
    report = check_dataset_folder(tmp_path / "ds", CheckOptions(min_side=256))
    assert report.errors == [] and report.kinds <= {"transparency"}
    assert report.caption_extension == ".txt"
    same = check_dataset_folder(tmp_path / "ds" / "img")
    assert [c.folder for c in same.concepts] == [c.folder for c in report.concepts]
    concept_folder = check_dataset_folder(tmp_path / "ds" / "img" / "2_sks dog")
    assert concept_folder.kinds == {"concept_folder_given"}
    with pytest.raises(DatasetError, match="does not exist"):
        check_dataset_folder(tmp_path / "nothing")


def test_prepare_cli_builds_and_prints_steps(tmp_path, sources, capsys):
    code = main(["prepare", "--from", str(sources), "--token", "sks", "--class", "dog",
                 "--out", str(tmp_path / "ds"), "--target-steps", "300", "--epochs", "5"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert (tmp_path / "ds" / "img" / "20_sks dog").is_dir()  # repeats chosen for the target
    assert "= 300 steps" in out
    assert main(["prepare", "--from", str(sources), "--out", str(tmp_path / "x")]) == 2
    assert "needs --token" in capsys.readouterr().err
