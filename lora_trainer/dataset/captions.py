"""Caption files next to images, read the way kohya's DreamBoothDataset reads them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DatasetError

if TYPE_CHECKING:
    from .folders import Subset


def caption_path_candidates(image_path: Path, caption_extension: str) -> list[Path]:
    """Caption files kohya tries for an image, in order: `<stem><ext>`, then the face-crop base name."""
    stem = image_path.stem
    paths = [image_path.with_name(stem + caption_extension)]
    # kohya's face-crop naming "<name>_<x>_<y>_<w>_<h>.png" shares "<name>.txt". kohya
    # splits the whole path on "_"; splitting the file name gives the same answer except
    # where kohya's cut would fall inside a folder name, which is never a real caption.
    tokens = stem.split("_")
    if len(tokens) >= 5:
        paths.append(image_path.with_name("_".join(tokens[:-4]) + caption_extension))
    return paths


def find_caption_file(image_path: Path, caption_extension: str) -> Path | None:
    """The caption file kohya would read for an image, or None."""
    for path in caption_path_candidates(Path(image_path), caption_extension):
        if path.is_file():
            return path
    return None


def read_caption(image_path: Path, caption_extension: str, all_lines: bool = False) -> str | None:
    """The image's caption, stripped; None when there is no caption file.

    kohya reads the first line, or with enable_wildcard every non-blank line joined by newlines.
    """
    path = find_caption_file(image_path, caption_extension)
    if path is None:
        return None
    return read_caption_file(path, all_lines)


def read_caption_file(path: Path, all_lines: bool = False) -> str:
    """A caption file's first line (or all non-blank lines joined by newlines), refusing unusable files."""
    try:
        # "utf-8-sig" drops the byte-order mark Windows editors write; kohya would keep
        # it as an invisible first character of the caption. readlines() splits lines
        # exactly as kohya's text-mode readlines() does.
        with open(path, encoding="utf-8-sig") as f:
            lines = f.readlines()
    except UnicodeDecodeError as e:
        raise DatasetError(
            f"caption file is not UTF-8 text (byte {e.object[e.start : e.start + 1]!r} at offset {e.start})",
            str(path),
            "Re-save it as UTF-8 in your text editor",
        ) from e
    except OSError as e:
        raise DatasetError(
            f"cannot read caption file: {e.strerror or e}", str(path), "Check that it is readable"
        ) from e
    # kohya asserts on an empty file; a blank first line would silently train on an
    # empty caption, because kohya reads only the first line, so that is refused too.
    if not lines:
        raise DatasetError(
            "caption file is empty",
            str(path),
            "Write the caption in it, or delete it to use the folder's class tokens",
        )
    if all_lines:
        caption = "\n".join(line.strip() for line in lines if line.strip())
    else:
        caption = lines[0].strip()
    if not caption and all_lines:
        raise DatasetError(
            "caption file has only blank lines",
            str(path),
            "Write the caption in it, or delete it to use the folder's class tokens",
        )
    if not caption:
        raise DatasetError(
            "caption file's first line is blank (only the first line is read)",
            str(path),
            "Put the caption on the first line, or delete the file to use the folder's class tokens",
        )
    return caption


def caption_for(image_path: Path, subset: Subset, caption_extension: str) -> str:
    """The image's caption, or the folder's class tokens when it has no caption file (kohya's fallback)."""
    caption = read_caption(image_path, caption_extension)
    return subset.class_tokens if caption is None else caption


def tag_frequency(captions_by_folder: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    """kohya's `ss_tag_frequency`: per folder, lower-cased comma-separated tags counted once per image."""
    result: dict[str, dict[str, int]] = {}
    for folder, captions in captions_by_folder.items():
        counts = result.setdefault(folder, {})
        for caption in captions:
            for tag in caption.split(","):
                tag = tag.strip().lower()
                if tag:
                    counts[tag] = counts.get(tag, 0) + 1
    return result
