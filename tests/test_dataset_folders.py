"""kohya folder parsing: the fixture's 19 names on real directories, layout errors, warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from lora_trainer.dataset.folders import (
    IMAGE_EXTENSIONS,
    DatasetScan,
    Subset,
    parse_subfolder_name,
    scan_image_folder,
    split_subfolder_name,
)
from lora_trainer.errors import DatasetError

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
FOLDER_NAMES: dict[str, dict] = json.loads(
    (FIXTURES / "kohya_folder_names.json").read_text(encoding="utf-8")
)


def _png(path: Path, color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


def test_fixture_has_the_19_names():
    assert len(FOLDER_NAMES) == 19


@pytest.mark.parametrize("name", sorted(FOLDER_NAMES))
def test_split_matches_kohya_extract_dreambooth_params(name):
    expected = FOLDER_NAMES[name]
    parsed = split_subfolder_name(name)
    if expected["repeats"] is None:
        assert parsed is None
    else:
        assert parsed == (expected["repeats"], expected["class_tokens"])


@pytest.mark.parametrize("name", sorted(FOLDER_NAMES))
def test_parse_returns_none_exactly_where_kohya_ignores_the_folder(name):
    expected = FOLDER_NAMES[name]
    parsed = parse_subfolder_name(name)
    assert (parsed is not None) == expected["used"]
    if expected["used"]:
        assert parsed == (expected["repeats"], expected["class_tokens"])


@pytest.mark.parametrize("name", sorted(FOLDER_NAMES))
def test_real_directory_with_fixture_name(tmp_path, name):
    expected = FOLDER_NAMES[name]
    _png(tmp_path / name / "a.png")
    _png(tmp_path / "1_control" / "b.png")  # keeps the scan valid when `name` is ignored
    scan = scan_image_folder(tmp_path)
    by_name = {s.name: s for s in scan.subsets}
    skipped = dict(scan.skipped)
    if expected["used"]:
        subset = by_name[name]
        assert (subset.repeats, subset.class_tokens) == (
            expected["repeats"],
            expected["class_tokens"],
        )
        assert subset.images == [tmp_path / name / "a.png"]
        assert subset.path == tmp_path / name
        assert name not in skipped
    else:
        assert name not in by_name
        assert skipped[name]


def test_all_fixture_names_in_one_folder(tmp_path):
    for i, name in enumerate(FOLDER_NAMES):
        _png(tmp_path / name / f"img{i}.png")
    scan = scan_image_folder(tmp_path)
    used = {n for n, e in FOLDER_NAMES.items() if e["used"]}
    assert {s.name for s in scan.subsets} == used
    assert {n for n, _ in scan.skipped} == set(FOLDER_NAMES) - used
    assert scan.num_images == len(used)
    assert scan.num_train_images == sum(FOLDER_NAMES[n]["repeats"] for n in used)
    assert [s.name for s in scan.subsets] == sorted(used)  # deterministic order


def test_skip_reasons(tmp_path):
    for name in ("0_x", "-3_x", "abc", "10 sks dog", ".ipynb_checkpoints"):
        _png(tmp_path / name / "a.png")
    _png(tmp_path / "2_ok" / "a.png")
    scan = scan_image_folder(tmp_path)
    reasons = dict(scan.skipped)
    assert "at least 1, got 0" in reasons["0_x"]
    assert "at least 1, got -3" in reasons["-3_x"]
    assert "'<repeats>_'" in reasons["abc"]
    assert "'10_sks dog'" in reasons["10 sks dog"]  # suggests the fix
    assert reasons[".ipynb_checkpoints"] == "hidden folder"
    # visible ignored folders are warned about; the hidden one is not
    assert any("abc" in w for w in scan.warnings)
    assert not any("ipynb" in w for w in scan.warnings)


def test_no_recursion(tmp_path):
    _png(tmp_path / "10_top" / "a.png")
    _png(tmp_path / "10_top" / "nested" / "b.png")
    _png(tmp_path / "10_top" / "5_deeper" / "c.png")
    _png(tmp_path / "group" / "10_inner" / "d.png")  # not an immediate sub-folder
    _png(tmp_path / "3_only_nested" / "sub" / "e.png")
    scan = scan_image_folder(tmp_path)
    assert [s.name for s in scan.subsets] == ["10_top"]
    assert scan.subsets[0].images == [tmp_path / "10_top" / "a.png"]
    reasons = dict(scan.skipped)
    assert "group" in reasons
    assert "does not recurse" in reasons["3_only_nested"]


def test_images_sorted_hidden_and_non_images_ignored(tmp_path):
    folder = tmp_path / "4_cat"
    for name in ("c.png", "a.jpg", "b.webp", "d.bmp", "e.jpeg"):
        _png(folder / name)
    (folder / "._a.png").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    (folder / "notes.txt").write_text("x", encoding="utf-8")
    (folder / "anim.gif").write_bytes(b"GIF89a")
    (folder / "dir.png").mkdir()
    scan = scan_image_folder(tmp_path)
    assert [p.name for p in scan.subsets[0].images] == [
        "a.jpg",
        "b.webp",
        "c.png",
        "d.bmp",
        "e.jpeg",
    ]
    assert scan.subsets[0].num_steps == 20
    assert any(".gif" in w for w in scan.warnings)


def test_extensions_are_kohyas_and_case_insensitive(tmp_path):
    for ext in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
        assert ext in IMAGE_EXTENSIONS and ext.upper() in IMAGE_EXTENSIONS
    assert len(set(IMAGE_EXTENSIONS)) == len(IMAGE_EXTENSIONS)
    folder = tmp_path / "1_x"
    for name in ("a.PNG", "b.Jpg", "c.JPEG"):
        _png(folder / name)
    scan = scan_image_folder(tmp_path)
    assert [p.name for p in scan.subsets[0].images] == ["a.PNG", "b.Jpg", "c.JPEG"]


def test_missing_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError) as e:
        scan_image_folder(missing)
    assert str(missing) in str(e.value)
    assert "does not exist" in str(e.value)


def test_file_instead_of_folder(tmp_path):
    f = tmp_path / "file.png"
    _png(f)
    with pytest.raises(DatasetError) as e:
        scan_image_folder(f)
    assert str(f) in str(e.value) and "not a folder" in str(e.value)


def test_no_subfolders_explains_layout_and_root_images(tmp_path):
    root = tmp_path / "10_sks dog"
    _png(root / "one.png")
    _png(root / "two.jpg")
    (root / "abc").mkdir()
    with pytest.raises(DatasetError) as e:
        scan_image_folder(root)
    msg = str(e.value)
    assert str(root) in msg
    assert "train_data_dir/10_sks dog/image1.png" in msg
    assert "Found 2 images directly in this folder" in msg
    assert str(tmp_path) in msg  # suggests selecting the parent, since root looks like a subset
    assert "'abc'" in msg  # lists what it ignored


def test_empty_root(tmp_path):
    with pytest.raises(DatasetError) as e:
        scan_image_folder(tmp_path)
    assert "<repeats>_<class tokens>" in str(e.value)
    assert "images directly" not in str(e.value)


def test_all_subfolders_empty(tmp_path):
    (tmp_path / "10_a").mkdir()
    (tmp_path / "5_b").mkdir()
    (tmp_path / "5_b" / "readme.txt").write_text("hi", encoding="utf-8")
    with pytest.raises(DatasetError) as e:
        scan_image_folder(tmp_path)
    msg = str(e.value)
    assert "10_a" in msg and "5_b" in msg and str(tmp_path) in msg


def test_one_empty_subfolder_is_skipped_with_warning(tmp_path):
    (tmp_path / "10_empty").mkdir()
    _png(tmp_path / "3_full" / "a.png")
    _png(tmp_path / "loose.png")
    scan = scan_image_folder(tmp_path)
    assert [s.name for s in scan.subsets] == ["3_full"]
    assert "no images" in dict(scan.skipped)["10_empty"]
    assert any("10_empty" in w for w in scan.warnings)
    assert any("1 images directly in" in w for w in scan.warnings)


def test_caption_extension_warning(tmp_path):
    for i in range(3):
        _png(tmp_path / "2_x" / f"{i}.png")
        (tmp_path / "2_x" / f"{i}.txt").write_text("cap", encoding="utf-8")
    scan = scan_image_folder(tmp_path)  # kohya's default .caption
    assert (
        'found 3 .txt captions but caption_extension is .caption; set caption_extension = ".txt"'
        in scan.warnings
    )
    assert not any(
        "caption_extension" in w
        for w in scan_image_folder(tmp_path, caption_extension=".txt").warnings
    )
    (tmp_path / "2_x" / "0.caption").write_text("cap", encoding="utf-8")
    assert not any("caption_extension" in w for w in scan_image_folder(tmp_path).warnings)


def test_caption_extension_warning_reverse(tmp_path):
    _png(tmp_path / "2_x" / "a.png")
    (tmp_path / "2_x" / "a.caption").write_text("cap", encoding="utf-8")
    scan = scan_image_folder(tmp_path, caption_extension=".txt")
    assert (
        'found 1 .caption captions but caption_extension is .txt; set caption_extension = ".caption"'
        in scan.warnings
    )


def test_summary_lines(tmp_path):
    for i in range(16):
        _png(tmp_path / "100_token" / f"{i:02d}.png")
    for i in range(2):
        _png(tmp_path / "3_b" / f"{i}.png")
    (tmp_path / "sks_10").mkdir()
    scan = scan_image_folder(tmp_path)
    lines = scan.summary_lines()
    assert lines[0] == "Folder 100_token: 16 images x 100 repeats = 1600 steps"
    assert lines[1] == "Folder 3_b: 2 images x 3 repeats = 6 steps"
    assert lines[2].startswith("Skipped folder sks_10: ")
    assert lines[3].startswith("Total: 18 images, 1606 images with repeats")
    assert len(lines) == 4


def test_reg_flag_and_dataclass_properties(tmp_path):
    _png(tmp_path / "1_dog" / "a.png")
    scan = scan_image_folder(tmp_path, is_reg=True)
    assert scan.subsets[0].is_reg
    assert scan.summary_lines()[0].startswith("Reg folder 1_dog:")
    s = Subset(tmp_path, "2_x", 2, "x", [tmp_path / "a.png"] * 3)
    assert s.num_steps == 6 and not s.is_reg
    empty = DatasetScan(tmp_path, [s, s], [])
    assert (empty.num_images, empty.num_train_images, empty.warnings) == (6, 12, [])


def test_links_leading_outside_the_folder_are_skipped_unless_allowed(tmp_path):
    outside = tmp_path / "outside"
    secret = _png(outside / "s.png")
    root = tmp_path / "img"
    _png(root / "1_a" / "a.png")
    try:
        (root / "2_link").symlink_to(outside, target_is_directory=True)
        (root / "1_a" / "b.png").symlink_to(secret)
        (root / "1_a" / "c.png").symlink_to(root / "1_a" / "a.png")  # inside: fine
    except OSError:
        pytest.skip("symlinks not permitted here")
    scan = scan_image_folder(root)
    assert [s.name for s in scan.subsets] == ["1_a"]
    assert [p.name for p in scan.subsets[0].images] == ["a.png", "c.png"]
    assert (
        "2_link",
        "a link to a folder outside the dataset folder (set allow_symlinks to follow it)",
    ) in scan.skipped
    assert any("1 links lead outside" in w and "b.png" in w for w in scan.warnings)
    allowed = scan_image_folder(root, allow_symlinks=True)
    assert [s.name for s in allowed.subsets] == ["1_a", "2_link"]
    assert len(allowed.subsets[0].images) == 3
