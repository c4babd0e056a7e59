"""Check a kohya dataset folder and report every problem at once; nothing is written or changed.

The folder can be the dataset root (with img/, reg/, model/, log/) or the img folder itself.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import DatasetError
from .captions import caption_path_candidates, read_caption_file
from .folders import (
    IGNORED_IMAGE_LIKE,
    is_image_file,
    is_inside,
    parse_subfolder_name,
    skip_reason,
)
from .images import read_image_size, verify_image
from .steps import StepEstimate, estimate_steps, suggest_repeats

ERROR, WARNING, INFO = "error", "warning", "info"
_CAPTION_EXTENSIONS = (".txt", ".caption")
_SHOWN = 5  # file names listed in one problem line
_CLIP_TOKENS = 75  # what CLIP reads of a caption; kohya cuts the rest


@dataclass(frozen=True)
class CheckOptions:
    caption_extension: str | None = None  # None: the one the dataset uses (.txt when none)
    epochs: int = 10
    batch_size: int = 1
    target_steps: int | None = None
    min_side: int = 256  # shorter side below this is "tiny"
    max_pixels: int = 40_000_000  # above this is "huge" (slow, and shrunk a lot anyway)
    allow_symlinks: bool = False


@dataclass(frozen=True)
class Problem:
    """One kind of problem in one place, with every file it concerns."""

    kind: str
    severity: str
    where: Path
    message: str
    fix: str = ""
    paths: tuple[Path, ...] = ()

    def line(self) -> str:
        names = ""
        if self.paths:
            shown = ", ".join(p.name for p in self.paths[:_SHOWN])
            more = f" and {len(self.paths) - _SHOWN} more" if len(self.paths) > _SHOWN else ""
            names = f": {shown}{more}"
        text = f"{self.severity.upper()}: {self.message} ({self.where}){names}"
        return text + (f". {self.fix.rstrip('.')}." if self.fix else "")


@dataclass
class Concept:
    """A folder kohya trains from."""

    folder: Path
    repeats: int
    class_tokens: str
    images: list[Path]
    is_reg: bool = False


@dataclass
class CheckReport:
    root: Path
    caption_extension: str
    concepts: list[Concept] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    steps: StepEstimate | None = None
    suggested_repeats: int | None = None
    options: CheckOptions = field(default_factory=CheckOptions)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}

    def lines(self) -> list[str]:
        """The whole report: folders, problems (errors first), then the step count."""
        lines = [f"Checked {self.root} (captions: {self.caption_extension})"]
        for c in self.concepts:
            kind = "Reg folder" if c.is_reg else "Folder"
            lines.append(f"{kind} {c.folder.name}: {len(c.images)} images x {c.repeats} repeats")
        order = {ERROR: 0, WARNING: 1, INFO: 2}
        lines += [p.line() for p in sorted(self.problems, key=lambda p: order[p.severity])]
        counts = Counter(p.severity for p in self.problems)
        lines.append(
            f"{counts[ERROR]} errors, {counts[WARNING]} warnings, {counts[INFO]} notes"
            if self.problems
            else "No problems found."
        )
        if self.steps is not None:
            lines.append("Steps: " + self.steps.line())
        if self.suggested_repeats is not None:
            lines.append(
                f"For about {self.options.target_steps} steps, use {self.suggested_repeats} repeats"
            )
        return lines


def check_dataset_folder(path: str | Path, options: CheckOptions = CheckOptions()) -> CheckReport:
    """Every problem kohya (or training) would hit with this folder, without changing anything."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(
            "the dataset folder does not exist" if not root.exists() else "not a folder",
            str(root),
            "Give the folder that holds img/ (or the img folder itself)",
        )
    image_root, reg_root = _locate(root)
    ext = options.caption_extension or _detect_caption_extension([image_root, reg_root])
    report = CheckReport(root, ext, options=options)
    checker = _Checker(report, options)
    if image_root != root:
        checker.loose_images(root, "the dataset folder")
    checker.tree(image_root, is_reg=False)
    if reg_root is not None:
        checker.tree(reg_root, is_reg=True)
    checker.finish()
    return report


def _locate(root: Path) -> tuple[Path, Path | None]:
    """(img folder, reg folder or None): the root itself when it holds the concept folders."""
    reg = root / "reg" if (root / "reg").is_dir() else None
    if (root / "img").is_dir():
        return root / "img", reg
    return root, reg


def _detect_caption_extension(folders: list[Path | None]) -> str:
    counts: Counter[str] = Counter()
    for folder in folders:
        if folder is None:
            continue
        for sub in folder.iterdir():
            if sub.is_dir() and parse_subfolder_name(sub.name):
                counts.update(
                    p.suffix.lower()
                    for p in sub.iterdir()
                    if p.suffix.lower() in _CAPTION_EXTENSIONS
                )
    return counts.most_common(1)[0][0] if counts else ".txt"


class _Checker:
    """Walks the folders once, collecting problems into the report."""

    def __init__(self, report: CheckReport, options: CheckOptions) -> None:
        self.report, self.options = report, options
        self.hashes: dict[str, list[Path]] = {}
        self.wrong_folder = False  # a concept folder was given: nothing more to say

    def add(
        self, kind: str, severity: str, where: Path, message: str, fix: str = "", paths=()
    ) -> None:
        self.report.problems.append(Problem(kind, severity, where, message, fix, tuple(paths)))

    # --- folder levels ------------------------------------------------------------------

    def loose_images(self, folder: Path, label: str) -> None:
        images = [p for p in sorted(folder.iterdir()) if is_image_file(p)]
        if images:
            self.add(
                "image_at_wrong_level", ERROR, folder,
                f"{len(images)} images lie directly in {label}; kohya reads only images inside "
                "'<repeats>_<token> <class>' folders",
                "Move them into a folder such as img/10_sks dog/", images,
            )  # fmt: skip

    def tree(self, root: Path, is_reg: bool) -> None:
        label = "the regularization folder" if is_reg else "the image folder"
        if parse_subfolder_name(root.name) and not any(p.is_dir() for p in root.iterdir()):
            self.add(
                "concept_folder_given", ERROR, root,
                "this is a concept folder itself; kohya wants the folder above it",
                f"Check {root.parent} instead",
            )  # fmt: skip
            self.wrong_folder = True
            return
        self.loose_images(root, label)
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            self.subfolder(root, sub, is_reg)

    def subfolder(self, root: Path, sub: Path, is_reg: bool) -> None:
        parsed = parse_subfolder_name(sub.name)
        if sub.name.startswith("."):
            self.add("hidden_folder", INFO, sub, "hidden folder skipped, as kohya does")
        elif parsed is None:
            reason = skip_reason(sub.name)
            fix = (
                ""
                if "rename it" in reason
                else "Rename it to '<repeats>_<token> <class>', e.g. '10_sks dog'"
            )
            self.add("skipped_folder", WARNING, sub, f"kohya skips this folder: {reason}", fix)
        elif not self.options.allow_symlinks and not is_inside(sub, root):
            self.add(
                "link_outside", WARNING, sub, "this folder is a link to a place outside the dataset",
                "Copy the images in, or train with allow_symlinks",
            )  # fmt: skip
        else:
            self.concept(root, sub, parsed[0], parsed[1], is_reg)

    def concept(self, root: Path, folder: Path, repeats: int, tokens: str, is_reg: bool) -> None:
        entries = sorted(folder.iterdir())
        images = [p for p in entries if is_image_file(p)]
        outside = [p for p in images if not self.options.allow_symlinks and not is_inside(p, root)]
        if outside:
            self.add(
                "link_outside", WARNING, folder, f"{len(outside)} images are links to files outside the dataset",
                "Copy them in, or train with allow_symlinks", outside,
            )  # fmt: skip
            images = [p for p in images if p not in outside]
        self._nested(folder, entries)
        self._unsupported(folder, entries)
        if not images:
            self.add("empty_folder", WARNING, folder, "no images in this folder; kohya skips it")
            return
        good = [p for p in images if self.image(p)]
        self.report.concepts.append(Concept(folder, repeats, tokens, good, is_reg))
        self.captions(folder, entries, images, good, is_reg)

    def _nested(self, folder: Path, entries: list[Path]) -> None:
        nested = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
        with_images = [p for p in nested if any(is_image_file(q) for q in p.iterdir())]
        if with_images:
            self.add(
                "nested_images", WARNING, folder,
                "images in sub-folders are not read: kohya does not look inside nested folders",
                "Move them up into this folder, or make them their own '<repeats>_<name>' folder",
                with_images,
            )  # fmt: skip

    def _unsupported(self, folder: Path, entries: list[Path]) -> None:
        found = [p for p in entries if p.suffix.lower() in IGNORED_IMAGE_LIKE and p.is_file()]
        if found:
            self.add(
                "unsupported_format", WARNING, folder,
                f"{len(found)} images are in formats kohya does not read, so they are ignored",
                "Convert them to PNG or JPEG", found,
            )  # fmt: skip

    # --- images -------------------------------------------------------------------------

    def image(self, path: Path) -> bool:
        """Check one image; True when it can train."""
        try:
            width, height = read_image_size(path)
            verify_image(path)
        except DatasetError as e:
            huge = "too large" in e.what
            self.add(
                "huge_image" if huge else "unreadable_image", ERROR, path.parent,
                e.what, e.fix or "", [path],
            )  # fmt: skip
            return False
        self._size(path, width, height)
        self._content(path)
        return True

    def _size(self, path: Path, width: int, height: int) -> None:
        if min(width, height) < self.options.min_side:
            self.add(
                "tiny_image", WARNING, path.parent,
                f"{width}x{height} is small (shorter side under {self.options.min_side} px): it is "
                "upscaled and trains blurry", "Use larger images, or leave this one out", [path],
            )  # fmt: skip
        elif width * height > self.options.max_pixels:
            self.add(
                "huge_image", WARNING, path.parent,
                f"{width}x{height} is very large: loading it is slow and it is shrunk a lot anyway",
                "Downscale it to a few megapixels", [path],
            )  # fmt: skip
        try:
            with Image.open(path) as img:
                alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
        except Exception:
            alpha = False
        if alpha:
            self.add(
                "transparency", INFO, path.parent,
                "has transparency; like kohya, transparent areas train as the colour stored under them",
                "Flatten it onto a background if that colour is not what you want", [path],
            )  # fmt: skip

    def _content(self, path: Path) -> None:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        self.hashes.setdefault(digest.hexdigest(), []).append(path)

    # --- captions -----------------------------------------------------------------------

    def captions(
        self, folder: Path, entries: list[Path], images: list[Path], good: list[Path], is_reg: bool
    ) -> None:
        ext = self.report.caption_extension
        used: set[Path] = set()
        missing: list[Path] = []
        for image in images:
            found = next((p for p in caption_path_candidates(image, ext) if p.is_file()), None)
            if found is not None:
                used.add(found)
            elif image in good and not is_reg:  # regularization images rarely have captions
                missing.append(image)
        caption_files = [p for p in entries if p.is_file() and p.suffix.lower() == ext.lower()]
        orphans = [p for p in caption_files if p not in used]
        if orphans:
            self.add(
                "caption_without_image", WARNING, folder, f"{len(orphans)} captions have no image",
                "Delete them, or add the image with the same name", orphans,
            )  # fmt: skip
        self._missing(folder, entries, missing)
        for path in sorted(used):
            self.caption_file(path)

    def _missing(self, folder: Path, entries: list[Path], missing: list[Path]) -> None:
        if not missing:
            return
        ext = self.report.caption_extension
        other = [
            p
            for p in entries
            if p.suffix.lower() in _CAPTION_EXTENSIONS and p.suffix.lower() != ext
        ]
        if other:
            self.add(
                "caption_extension_mismatch", WARNING, folder,
                f"captions here end in {other[0].suffix} but the caption extension is {ext}",
                f'Train with caption_extension = "{other[0].suffix}"', other,
            )  # fmt: skip
        tokens = parse_subfolder_name(folder.name)[1]
        self.add(
            "image_without_caption", INFO, folder,
            f"{len(missing)} images have no {ext} caption; they train with the folder's class tokens '{tokens}'",
            "Write a caption file for each, if the class tokens are not enough", missing,
        )  # fmt: skip

    def caption_file(self, path: Path) -> None:
        try:
            caption = read_caption_file(path)
        except DatasetError as e:
            kind = "caption_not_utf8" if "UTF-8" in e.what else "caption_empty"
            if "cannot read" in e.what:
                kind = "caption_unreadable"
            self.add(kind, ERROR, path.parent, e.what, e.fix or "", [path])
            return
        text = path.read_text(encoding="utf-8-sig")
        if len([line for line in text.splitlines() if line.strip()]) > 1:
            self.add(
                "caption_multiline", INFO, path.parent,
                "caption has several lines; only the first is read (unless enable_wildcard)",
                "Put the whole caption on one line", [path],
            )  # fmt: skip
        tokens = len(re.findall(r"\w+|[^\w\s]", caption))
        if tokens > _CLIP_TOKENS:
            self.add(
                "caption_too_long", WARNING, path.parent,
                f"caption is about {tokens} tokens; the text encoder reads {_CLIP_TOKENS}, the rest is cut",
                "Shorten it, or train with max_token_length 150 or 225", [path],
            )  # fmt: skip

    # --- whole dataset ------------------------------------------------------------------

    def finish(self) -> None:
        for paths in self.hashes.values():
            if len(paths) > 1:
                self.add(
                    "duplicate_image", WARNING, paths[0].parent,
                    f"{len(paths)} files have the same content; the image trains more often than intended",
                    "Keep one of them", paths,
                )  # fmt: skip
        train = [c for c in self.report.concepts if not c.is_reg]
        reg = [c for c in self.report.concepts if c.is_reg]
        if not train and self.wrong_folder:
            return
        if not train:
            self.add(
                "no_training_images", ERROR, self.report.root, "no folder with training images",
                "Put images in img/<repeats>_<token> <class>/, e.g. img/10_sks dog/",
            )  # fmt: skip
            return
        self._reg_classes(train, reg)
        o = self.options
        self.report.steps = estimate_steps(
            [(len(c.images), c.repeats) for c in train],
            [(len(c.images), c.repeats) for c in reg],
            o.epochs, o.batch_size,
        )  # fmt: skip
        if o.target_steps:
            images = sum(len(c.images) for c in train)
            self.report.suggested_repeats = suggest_repeats(
                images, o.target_steps, o.epochs, o.batch_size, with_reg=bool(reg)
            )

    def _reg_classes(self, train: list[Concept], reg: list[Concept]) -> None:
        classes = {c.class_tokens.split(" ")[-1] for c in train if c.class_tokens}
        for c in reg:
            if classes and c.class_tokens.strip() and c.class_tokens.split(" ")[-1] not in classes:
                self.add(
                    "reg_class_mismatch", WARNING, c.folder,
                    f"regularization class '{c.class_tokens}' is not the class of any training folder "
                    f"({', '.join(sorted(classes))})",
                    "Regularization images should show the training class without your subject",
                )  # fmt: skip
