"""kohya's DreamBooth folder layout: `<train_data_dir>/<repeats>_<class tokens>/<images>`."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError
from .captions import caption_path_candidates

# kohya's base list (library/train_util.py IMAGE_EXTENSIONS). Matching on disk is
# case-insensitive; the upper-case twins are kept so the tuple reads like kohya's.
_BASE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

# kohya adds these only when the Pillow plugin that decodes them imports.
_OPTIONAL_PLUGINS = {".avif": ("pillow_avif",), ".jxl": ("pillow_jxl", "jxlpy")}


def _plugin_extensions() -> tuple[str, ...]:
    found = []
    for ext, modules in _OPTIONAL_PLUGINS.items():
        for module in modules:
            try:
                importlib.import_module(module)  # registers the decoder with Pillow
            except Exception:  # a broken optional plugin must not break the trainer
                continue
            found.append(ext)
            break
    return tuple(found)


_LOWER_EXTENSIONS = _BASE_EXTENSIONS + _plugin_extensions()
IMAGE_EXTENSIONS: tuple[str, ...] = _LOWER_EXTENSIONS + tuple(e.upper() for e in _LOWER_EXTENSIONS)

# Files users often drop in a dataset that kohya silently ignores; we name them.
IGNORED_IMAGE_LIKE = {".gif", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl"} - set(
    _LOWER_EXTENSIONS
)

_OTHER_CAPTION_EXTENSIONS = {".caption": (".txt",), ".txt": (".caption",)}

EXAMPLE_LAYOUT = "train_data_dir/10_sks dog/image1.png (+ image1.txt caption)"


def is_image_file(path: Path) -> bool:
    """True for a non-hidden file with one of kohya's image extensions (any case)."""
    # kohya globs "*.png": glob's "*" never matches a leading dot, so hidden files
    # (macOS "._photo.png" resource forks) are not images to kohya either.
    return (
        not path.name.startswith(".")
        and path.suffix.lower() in _LOWER_EXTENSIONS
        and path.is_file()
    )


def list_images(folder: Path) -> list[Path]:
    """Images directly inside `folder` (no recursion, like kohya), sorted by name."""
    try:
        entries = list(folder.iterdir())
    except OSError as e:
        raise DatasetError(
            f"cannot list folder: {e.strerror or e}",
            str(folder),
            "Check that it exists and is readable",
        ) from e
    # One entry per file even on case-insensitive file systems: each name is seen once.
    return sorted((p for p in entries if is_image_file(p)), key=lambda p: p.name)


def is_inside(path: Path, root: Path) -> bool:
    """True when `path`, with every link followed, lies inside `root` (also followed)."""
    try:
        return Path(path).resolve().is_relative_to(Path(root).resolve())
    except OSError:  # a link loop: certainly not something to read
        return False


def split_outside_links(
    paths: list[Path], root: Path, allow_symlinks: bool
) -> tuple[list[Path], list[Path]]:
    """(paths to use, links that lead outside `root`); with allow_symlinks every path is used."""
    if allow_symlinks:
        return list(paths), []
    inside, outside = [], []
    for p in paths:
        (inside if is_inside(p, root) else outside).append(p)
    return inside, outside


def outside_links_warning(links: list[Path], root: Path) -> str:
    """One line naming links that were not followed."""
    first = ", ".join(str(p) for p in links[:3])
    more = f" and {len(links) - 3} more" if len(links) > 3 else ""
    return (
        f"{len(links)} links lead outside {root} and were not followed ({first}{more}); "
        "set allow_symlinks to use them"
    )


def split_subfolder_name(name: str) -> tuple[int, str] | None:
    """kohya's raw parse: `int()` of the text before the first `_`, rest joined back. None if int() fails."""
    head, _, rest = name.partition("_")
    try:
        repeats = int(head)  # Python int(): whitespace, "+", leading zeros, full-width digits
    except ValueError:
        return None
    return repeats, rest


def parse_subfolder_name(name: str) -> tuple[int, str] | None:
    """(repeats, class_tokens) for a folder kohya uses; None where kohya ignores the folder."""
    parsed = split_subfolder_name(name)
    if parsed is None or parsed[0] < 1:
        return None
    return parsed


_HIDDEN = "hidden folder"
_LINK_OUT = "a link to a folder outside the dataset folder (set allow_symlinks to follow it)"


def skip_reason(name: str) -> str:
    if name.startswith("."):
        return _HIDDEN
    parsed = split_subfolder_name(name)
    if parsed is not None:
        return f"repeats must be at least 1, got {parsed[0]}"
    missing_underscore = re.fullmatch(r"\s*(\d+)\s+(\S.*)", name)
    if missing_underscore:
        fixed = f"{missing_underscore[1]}_{missing_underscore[2]}"
        return f"no '_' after the repeat count, so kohya ignores it (rename it to '{fixed}')"
    return "name does not start with '<repeats>_' (e.g. '10_sks dog'), so kohya ignores it"


@dataclass
class Subset:
    """One `<repeats>_<class tokens>` folder and its images."""

    path: Path
    name: str
    repeats: int
    class_tokens: str
    images: list[Path]
    is_reg: bool = False

    @property
    def num_steps(self) -> int:
        return len(self.images) * self.repeats


@dataclass
class DatasetScan:
    """What a dataset folder holds, as kohya would read it."""

    root: Path
    subsets: list[Subset]
    skipped: list[tuple[str, str]]  # (folder name, reason)
    warnings: list[str] = field(default_factory=list)

    @property
    def num_images(self) -> int:
        return sum(len(s.images) for s in self.subsets)

    @property
    def num_train_images(self) -> int:
        """Images with repeats: kohya's "N train images with repeats"."""
        return sum(s.num_steps for s in self.subsets)

    def summary_lines(self) -> list[str]:
        """One line per used and per skipped folder, then a total."""
        label = "Reg folder" if any(s.is_reg for s in self.subsets) else "Folder"
        lines = [
            f"{label} {s.name}: {len(s.images)} images x {s.repeats} repeats = {s.num_steps} steps"
            for s in self.subsets
        ]
        lines += [f"Skipped folder {name}: {reason}" for name, reason in self.skipped]
        lines.append(
            f"Total: {self.num_images} images, {self.num_train_images} images with repeats"
            f" = {self.num_train_images} steps per epoch at batch size 1"
        )
        return lines


def scan_image_folder(
    root: str | Path,
    *,
    caption_extension: str = ".caption",
    is_reg: bool = False,
    allow_symlinks: bool = False,
) -> DatasetScan:
    """Read a kohya DreamBooth folder: immediate `N_tokens` sub-folders and their images.

    Links (sub-folders or images) that lead outside `root` are not followed unless allow_symlinks.
    """
    root = Path(root)
    kind = "regularization folder" if is_reg else "training image folder"
    if not root.exists():
        raise DatasetError(f"the {kind} does not exist", str(root), "Check the path")
    if not root.is_dir():
        raise DatasetError(
            f"the {kind} is a file, not a folder",
            str(root),
            f"Point it at a folder laid out as {EXAMPLE_LAYOUT}",
        )

    try:
        children = sorted(root.iterdir(), key=lambda p: p.name)
    except OSError as e:
        raise DatasetError(
            f"cannot list the {kind}: {e.strerror or e}", str(root), "Check its permissions"
        ) from e
    subdirs = [p for p in children if p.is_dir()]
    root_images = [p for p in children if is_image_file(p)]

    subsets: list[Subset] = []
    skipped: list[tuple[str, str]] = []
    empty: list[tuple[str, str]] = []
    warnings: list[str] = []
    outside: list[Path] = []
    for sub in subdirs:
        parsed = parse_subfolder_name(sub.name)
        if parsed is None:
            skipped.append((sub.name, skip_reason(sub.name)))
            continue
        if not allow_symlinks and not is_inside(sub, root):
            skipped.append((sub.name, _LINK_OUT))
            continue
        images, links = split_outside_links(list_images(sub), root, allow_symlinks)
        outside += links
        if not images:
            empty.append((sub.name, _empty_reason(sub)))
            continue
        repeats, class_tokens = parsed
        subsets.append(Subset(sub, sub.name, repeats, class_tokens, images, is_reg))

    if not subsets and not empty:
        raise DatasetError(
            f"the {kind} has no '<repeats>_<class tokens>' sub-folder",
            str(root),
            _layout_fix(root, root_images, skipped),
        )
    if not subsets:
        listed = "; ".join(f"{name}: {reason}" for name, reason in empty)
        raise DatasetError(
            f"no images in any sub-folder of the {kind} ({listed})",
            str(root),
            f"Put images ({', '.join(_LOWER_EXTENSIONS)}) directly inside the sub-folders, e.g. {EXAMPLE_LAYOUT}",
        )

    # Hidden folders (.ipynb_checkpoints, .git) are expected clutter: listed, not warned about.
    warnings += [f"Ignored folder {n}: {r}" for n, r in skipped if r != _HIDDEN]
    warnings += [f"Skipped folder {n}: {r}" for n, r in empty]
    skipped = sorted(skipped + empty)
    if root_images:
        warnings.append(
            f"{len(root_images)} images directly in {root} are ignored: kohya reads only images "
            f"inside '<repeats>_<class tokens>' sub-folders"
        )
    if outside:
        warnings.append(outside_links_warning(outside, root))
    warnings += _ignored_file_warnings(subsets)
    warnings += _caption_extension_warnings(subsets, caption_extension)
    return DatasetScan(root, subsets, skipped, warnings)


def _empty_reason(folder: Path) -> str:
    nested = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if any(list_images(p) for p in nested):
        return "no images directly in it (images in nested folders are not read: kohya does not recurse)"
    return f"no images ({', '.join(_LOWER_EXTENSIONS)})"


def _layout_fix(root: Path, root_images: list[Path], skipped: list[tuple[str, str]]) -> str:
    parts = [
        f"kohya expects one sub-folder per concept named '<repeats>_<class tokens>', "
        f"e.g. {EXAMPLE_LAYOUT}"
    ]
    if root_images:
        hint = f"Found {len(root_images)} images directly in this folder: move them into a sub-folder such as '10_sks dog'"
        if parse_subfolder_name(root.name) is not None:
            hint += f" (or, since this folder is itself named '{root.name}', select its parent {root.parent})"
        parts.append(hint)
    if skipped:
        parts.append("Ignored: " + "; ".join(f"'{name}' ({reason})" for name, reason in skipped))
    return ". ".join(parts)


def _ignored_file_warnings(subsets: list[Subset]) -> list[str]:
    counts: dict[str, int] = {}
    for subset in subsets:
        for p in subset.path.iterdir():
            ext = p.suffix.lower()
            if ext in IGNORED_IMAGE_LIKE and p.is_file():
                counts[ext] = counts.get(ext, 0) + 1
    return [
        f"{n} {ext} files are ignored: kohya reads only {', '.join(_LOWER_EXTENSIONS)}; convert them to PNG"
        for ext, n in sorted(counts.items())
    ]


def _caption_extension_warnings(subsets: list[Subset], caption_extension: str) -> list[str]:
    images = [img for s in subsets for img in s.images]

    def count(ext: str) -> int:
        return sum(
            1 for img in images if any(p.is_file() for p in caption_path_candidates(img, ext))
        )

    if count(caption_extension):
        return []
    others = _OTHER_CAPTION_EXTENSIONS.get(caption_extension.lower(), (".txt", ".caption"))
    warnings = []
    for other in others:
        if other == caption_extension:
            continue
        n = count(other)
        if n:
            warnings.append(
                f"found {n} {other} captions but caption_extension is {caption_extension}; "
                f'set caption_extension = "{other}"'
            )
    return warnings
