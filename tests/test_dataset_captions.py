"""Caption reading (kohya's first-line rule, fallbacks, errors) and kohya's tag frequency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_trainer.dataset.captions import (
    caption_for,
    caption_path_candidates,
    read_caption,
    tag_frequency,
)
from lora_trainer.dataset.folders import Subset
from lora_trainer.errors import DatasetError

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
KOHYA_METADATA = json.loads(
    (FIXTURES / "kohya_sd15_rank4.metadata.json").read_text(encoding="utf-8")
)
# The three captions of the fixture run's "img/2_sks dog" folder (KOHYA.md).
FIXTURE_CAPTIONS = ["sks dog, red ball", "sks dog, blue box", "sks dog, purple triangle"]


def _image(folder: Path, name: str = "a.png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"not decoded here")
    return path


def test_no_caption_file_gives_none(tmp_path):
    img = _image(tmp_path)
    (tmp_path / "a.caption").write_text("other extension", encoding="utf-8")
    assert read_caption(img, ".txt") is None


def test_first_line_stripped(tmp_path):
    img = _image(tmp_path)
    (tmp_path / "a.txt").write_bytes(b"  sks dog, red ball \r\nsecond line\n")
    assert read_caption(img, ".txt") == "sks dog, red ball"
    (tmp_path / "a.caption").write_text("only line", encoding="utf-8")
    assert read_caption(img, ".caption") == "only line"


def test_old_mac_line_endings_split_like_text_mode(tmp_path):
    img = _image(tmp_path)
    (tmp_path / "a.txt").write_bytes(b"first\rsecond")
    assert read_caption(img, ".txt") == "first"


def test_utf8_bom_and_non_ascii(tmp_path):
    img = _image(tmp_path)
    (tmp_path / "a.txt").write_bytes("\ufeffsks 犬, café".encode())
    assert read_caption(img, ".txt") == "sks 犬, café"


def test_caption_for_dotted_image_name(tmp_path):
    img = _image(tmp_path, "photo.v2.png")
    (tmp_path / "photo.v2.txt").write_text("dotted", encoding="utf-8")
    assert read_caption(img, ".txt") == "dotted"


def test_non_utf8_caption_raises_with_path(tmp_path):
    img = _image(tmp_path)
    cap = tmp_path / "a.txt"
    cap.write_bytes("sks café".encode("latin-1"))
    with pytest.raises(DatasetError) as e:
        read_caption(img, ".txt")
    assert str(cap) in str(e.value)
    assert "UTF-8" in str(e.value) and "Re-save" in str(e.value)


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\n", b"   \nsecond line\n"])
def test_empty_caption_raises_with_path(tmp_path, content):
    img = _image(tmp_path)
    cap = tmp_path / "a.txt"
    cap.write_bytes(content)
    with pytest.raises(DatasetError) as e:
        read_caption(img, ".txt")
    assert str(cap) in str(e.value)


def test_face_crop_name_falls_back_to_base_caption(tmp_path):
    img = _image(tmp_path, "person_12_34_56_78.png")
    (tmp_path / "person.txt").write_text("face crop", encoding="utf-8")
    assert read_caption(img, ".txt") == "face crop"
    (tmp_path / "person_12_34_56_78.txt").write_text("own caption", encoding="utf-8")
    assert read_caption(img, ".txt") == "own caption"  # its own file wins


def test_candidates_short_names(tmp_path):
    assert caption_path_candidates(tmp_path / "a_b_c_d.png", ".txt") == [tmp_path / "a_b_c_d.txt"]


def test_caption_for_falls_back_to_class_tokens(tmp_path):
    folder = tmp_path / "10_sks dog"
    with_caption = _image(folder, "a.png")
    without = _image(folder, "b.png")
    (folder / "a.txt").write_text("sks dog, running", encoding="utf-8")
    subset = Subset(folder, folder.name, 10, "sks dog", [with_caption, without])
    assert caption_for(with_caption, subset, ".txt") == "sks dog, running"
    assert caption_for(without, subset, ".txt") == "sks dog"
    assert caption_for(without, Subset(folder, "10", 10, "", [without]), ".txt") == ""


def test_tag_frequency_matches_kohya_fixture():
    expected = json.loads(KOHYA_METADATA["ss_tag_frequency"])
    # kohya counts once per image (the folder has 2 repeats, "sks dog" counts 3).
    assert tag_frequency({"2_sks dog": FIXTURE_CAPTIONS}) == expected
    assert list(tag_frequency({"2_sks dog": FIXTURE_CAPTIONS})["2_sks dog"]) == list(
        expected["2_sks dog"]
    )


def test_tag_frequency_lowercases_strips_and_skips_blank_tags():
    result = tag_frequency({"1_a": ["Sks Dog,  RED ball,, ", "sks dog"], "2_b": [], "3_c": [""]})
    assert result == {"1_a": {"sks dog": 2, "red ball": 1}, "2_b": {}, "3_c": {}}


def test_wildcard_mode_reads_every_non_blank_line(tmp_path):
    img = _image(tmp_path)
    (tmp_path / "a.txt").write_text(" one \n\n two\n", encoding="utf-8")
    assert read_caption(img, ".txt") == "one"
    assert read_caption(img, ".txt", all_lines=True) == "one\ntwo"
    (tmp_path / "a.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(DatasetError, match="only blank lines"):
        read_caption(img, ".txt", all_lines=True)
