"""Build a kohya dataset folder from images the user points at: copy (never move), caption, lay out.

Result: `<out>/img/<repeats>_<token> <class>/`, optionally `<out>/reg/<repeats>_<class>/`,
plus `<out>/model/` and `<out>/log/`. Existing captions travel with their images; images
without one get a caption from the template. Nothing in the sources is changed.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic_file import create_beside
from ..errors import DatasetError
from .folders import is_image_file
from .steps import StepEstimate, estimate_steps, suggest_repeats

DEFAULT_TEMPLATE = "{token} {class}"
_CAPTION_EXTENSIONS = (".txt", ".caption")
_BAD_NAME_CHARS = set('/\\:*?"<>|\0')


@dataclass
class BuildRequest:
    """What to build: sources (folders or image files), names, repeats, where."""

    sources: list[Path]
    token: str
    class_word: str
    repeats: int
    out: Path
    reg_sources: list[Path] = field(default_factory=list)
    reg_repeats: int = 1
    caption_template: str = DEFAULT_TEMPLATE
    caption_extension: str = ".txt"
    recursive: bool = False


@dataclass
class CopyResult:
    """What happened to the images of one folder."""

    folder: Path
    copied: list[Path] = field(default_factory=list)  # new files in the folder
    already_there: list[Path] = field(default_factory=list)  # same content was there already
    renamed: list[tuple[Path, Path]] = field(default_factory=list)  # (source, new name) on clashes
    captions_written: int = 0
    captions_kept: int = 0  # copied from the source, or already in the folder
    not_images: list[Path] = field(default_factory=list)

    @property
    def num_images(self) -> int:
        return len(self.copied) + len(self.already_there)


@dataclass
class BuildResult:
    root: Path
    images: CopyResult
    reg: CopyResult | None
    model_dir: Path
    log_dir: Path
    repeats: int = 1
    reg_repeats: int = 1
    caption_extension: str = ".txt"

    def steps(self, epochs: int, batch_size: int = 1) -> StepEstimate:
        """The step count of the folder as built (all images in the concept folder count)."""
        reg = [(self.reg.num_images, self.reg_repeats)] if self.reg else []
        return estimate_steps([(self.images.num_images, self.repeats)], reg, epochs, batch_size)

    def summary_lines(
        self, epochs: int, batch_size: int = 1, target_steps: int | None = None
    ) -> list[str]:
        """What was built, the step count, a repeats suggestion, and the training flags."""
        img = self.images
        lines = [
            f"Images: {img.folder} ({len(img.copied)} copied, {len(img.already_there)} already there)",
            f"Captions: {img.captions_written} written from the template, {img.captions_kept} kept",
        ]
        lines += [f"Renamed {src} -> {dest.name} (the name was taken)" for src, dest in img.renamed]
        if img.not_images:
            shown = ", ".join(p.name for p in img.not_images[:5])
            lines.append(f"Not copied ({len(img.not_images)} files kohya does not read): {shown}")
        if self.reg is not None:
            reg = self.reg
            lines.append(
                f"Regularization: {reg.folder} ({len(reg.copied)} copied, {len(reg.already_there)} already there)"
            )
        lines.append("Steps: " + self.steps(epochs, batch_size).line())
        if target_steps:
            best = suggest_repeats(
                img.num_images, target_steps, epochs, batch_size, self.reg is not None
            )
            lines.append(
                f"For about {target_steps} steps, use {best} repeats (this folder has {self.repeats})"
            )
        q = lambda p: shlex.quote(str(p))  # noqa: E731
        flags = f"--train_data_dir {q(self.root / 'img')}"
        if self.reg is not None:
            flags += f" --reg_data_dir {q(self.root / 'reg')}"
        flags += f" --output_dir {q(self.model_dir)} --caption_extension {self.caption_extension}"
        lines.append(f"Train with: {flags}")
        return lines


def concept_folder_name(repeats: int, token: str, class_word: str) -> str:
    """kohya's `<repeats>_<class tokens>` with the trigger word first."""
    tokens = " ".join(t for t in (token.strip(), class_word.strip()) if t)
    return f"{repeats}_{tokens}"


def caption_text(template: str, token: str, class_word: str, name: str) -> str:
    """The template with {token}, {class} and {name} (the image's file name without extension) filled in."""
    text = template.replace("{token}", token).replace("{class}", class_word).replace("{name}", name)
    return " ".join(text.split())  # no double or edge spaces where a part was empty


def check_request(request: BuildRequest) -> None:
    """Refuse requests that would build a folder kohya cannot read, before anything is copied."""
    for label, value in (("token", request.token), ("class", request.class_word)):
        if value != value.strip() or any(c in _BAD_NAME_CHARS for c in value):
            raise DatasetError(
                f"the {label} {value!r} cannot be part of a folder name",
                fix="use letters, digits, spaces, '-' and '_' only, without leading or trailing spaces",
            )
    if not request.token:
        raise DatasetError("the trigger token is empty", fix="give one with --token, e.g. sks")
    if request.repeats < 1 or request.reg_repeats < 1:
        raise DatasetError("repeats must be at least 1", fix="kohya skips folders with 0 repeats")
    if request.reg_sources and not request.class_word:
        raise DatasetError(
            "regularization images need a class word", fix="give it with --class, e.g. dog"
        )
    if not request.caption_extension.startswith(".") or len(request.caption_extension) < 2:
        raise DatasetError(
            f"caption extension {request.caption_extension!r} must start with a dot",
            fix='use ".txt" or ".caption"',
        )
    if not caption_text(request.caption_template, request.token, request.class_word, "x"):
        raise DatasetError(
            "the caption template gives an empty caption", fix=f'use "{DEFAULT_TEMPLATE}"'
        )
    for source in [*request.sources, *request.reg_sources]:
        if not source.exists():
            raise DatasetError("source not found", str(source), "Check the path")
    if not request.sources:
        raise DatasetError("no source images given", fix="pass a folder or image files with --from")


def collect_images(
    sources: list[Path], recursive: bool = False, exclude: Path | None = None
) -> tuple[list[Path], list[Path]]:
    """(images, other files) from folders and files, in a stable order; hidden files and `exclude` are skipped."""
    images, others = [], []
    skip = exclude.resolve() if exclude is not None else None
    for source in sources:
        if source.is_file():
            (images if is_image_file(source) else others).append(source)
            continue
        pattern = "**/*" if recursive else "*"
        for path in sorted(source.glob(pattern)):
            if any(part.startswith(".") for part in path.relative_to(source).parts):
                continue
            if skip is not None and _inside(path, skip) and not _inside(source, skip):
                continue  # the dataset being built, inside a source folder
            if is_image_file(path):
                images.append(path)
            elif path.is_file() and path.suffix.lower() not in _CAPTION_EXTENSIONS:
                others.append(path)
    return images, others


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder)


def build_dataset_folder(request: BuildRequest) -> BuildResult:
    """Lay out the kohya folders and copy the images and captions into them."""
    check_request(request)
    root = request.out.expanduser()
    name = concept_folder_name(request.repeats, request.token, request.class_word)
    images = _copy_images(request, request.sources, root / "img" / name, write_captions=True)
    reg = None
    if request.reg_sources:
        reg_name = concept_folder_name(request.reg_repeats, "", request.class_word)
        reg = _copy_images(
            request, request.reg_sources, root / "reg" / reg_name, write_captions=False
        )
    for sub in ("model", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return BuildResult(
        root, images, reg, root / "model", root / "log",
        request.repeats, request.reg_repeats, request.caption_extension,
    )  # fmt: skip


def _copy_images(
    request: BuildRequest, sources: list[Path], folder: Path, write_captions: bool
) -> CopyResult:
    found, others = collect_images(sources, request.recursive, exclude=request.out)
    if not found:
        raise DatasetError(
            "no images found in the sources",
            ", ".join(str(s) for s in sources),
            "kohya reads .png, .jpg, .jpeg, .webp and .bmp files",
        )
    folder.mkdir(parents=True, exist_ok=True)
    result = CopyResult(folder, not_images=others)
    for source in found:
        dest, same = _destination(source, folder)
        if same:
            result.already_there.append(dest)
        else:
            _atomic_copy(source, dest)
            result.copied.append(dest)
            if dest.name != source.name:
                result.renamed.append((source, dest))
        _caption(request, source, dest, result, write_captions)
    return result


def _destination(source: Path, folder: Path) -> tuple[Path, bool]:
    """Where a source goes, and whether the same content is there already (re-runs copy nothing twice)."""
    stem, suffix = source.stem, source.suffix
    n = 1
    while True:
        dest = folder / (source.name if n == 1 else f"{stem}_{n}{suffix}")
        if not dest.exists():
            return dest, False
        if dest.resolve() == source.resolve() or _same_content(dest, source):
            return dest, True
        n += 1


def _same_content(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and _sha256(a) == _sha256(b)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _caption(
    request: BuildRequest, source: Path, dest: Path, result: CopyResult, write: bool
) -> None:
    target = dest.with_name(dest.stem + request.caption_extension)
    if target.exists():  # never replace a caption already in the dataset
        result.captions_kept += 1
        return
    existing = _source_caption(source, request.caption_extension)
    if existing is not None:
        _atomic_copy(existing, target)
        result.captions_kept += 1
    elif write:
        text = caption_text(
            request.caption_template, request.token, request.class_word, source.stem
        )
        _atomic_write(target, text + "\n")
        result.captions_written += 1


def _source_caption(image: Path, preferred: str) -> Path | None:
    for ext in (preferred, *_CAPTION_EXTENSIONS):
        path = image.with_name(image.stem + ext)
        if path.is_file():
            return path
    return None


def _atomic_copy(source: Path, dest: Path) -> None:
    # copied under a temporary name and renamed: an interrupted copy never looks like an image
    fd, tmp = create_beside(dest)  # a plain file's mode, not mkstemp's 0600
    os.close(fd)
    try:
        shutil.copy2(source, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write(dest: Path, text: str) -> None:
    fd, tmp = create_beside(dest)  # a plain file's mode, not mkstemp's 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
