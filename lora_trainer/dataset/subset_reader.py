"""Read one subset folder: its images, their captions, and what kohya would warn about."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError
from .captions import find_caption_file, read_caption_file
from .folders import is_inside, list_images, outside_links_warning, split_outside_links
from .spec import SubsetSpec

_MAX_LISTED = 5  # images named in a "no caption" warning, as kohya shows


@dataclass
class SubsetImages:
    """A subset's images with the caption each trains with (class tokens when it has no caption file)."""

    spec: SubsetSpec
    images: list[Path]
    captions: list[str]
    missing_captions: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_subset(spec: SubsetSpec, link_root: Path | None, allow_symlinks: bool) -> SubsetImages:
    """Images directly in spec.image_dir and their captions; links leaving `link_root` are not followed."""
    folder = spec.image_dir
    kind = "regularization image folder" if spec.is_reg else "image folder"
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise DatasetError(f"the {kind} {what}", str(folder), "Check image_dir")
    root = link_root or folder
    images, outside = split_outside_links(list_images(folder), root, allow_symlinks)
    result = SubsetImages(spec, images, [])
    if outside:
        result.warnings.append(outside_links_warning(outside, root))
    all_lines = spec.captions.enable_wildcard
    for image in images:
        path = find_caption_file(image, spec.captions.caption_extension)
        if path is not None and not allow_symlinks and not is_inside(path, root):
            result.warnings.append(
                f"caption {path} is a link outside {root} and was not read; set allow_symlinks to use it"
            )
            path = None
        if path is None:
            result.missing_captions.append(image)
            result.captions.append(spec.class_tokens or "")
        else:
            result.captions.append(read_caption_file(path, all_lines))
    if result.missing_captions:
        result.warnings.append(_missing_caption_warning(spec, result.missing_captions))
    return result


def _missing_caption_warning(spec: SubsetSpec, missing: list[Path]) -> str:
    shown = ", ".join(p.name for p in missing[:_MAX_LISTED])
    more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
    ext = spec.captions.caption_extension
    if spec.class_tokens:
        fallback = f"they train with the folder's class tokens '{spec.class_tokens}'"
    else:
        fallback = "they train with an empty caption (no class_tokens are set)"
    return (
        f"{len(missing)} images in {spec.name} have no {ext} caption, so {fallback}: {shown}{more}"
    )
