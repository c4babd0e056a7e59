"""`python -m lora_trainer prepare`: build a kohya dataset folder, or check one."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DatasetError
from .layout_build import DEFAULT_TEMPLATE, BuildRequest, build_dataset_folder, collect_images
from .layout_check import CheckOptions, check_dataset_folder
from .steps import suggest_repeats

EXAMPLES = """examples:
  python -m lora_trainer prepare --from photos/ --token sks --class dog --repeats 10 --out my_dataset
  python -m lora_trainer prepare --check my_dataset
"""


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    """The prepare sub-command's flags."""
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--from", dest="sources", nargs="+", type=Path, metavar="SRC",
                      help="folders of images, or image files, to copy into the dataset")  # fmt: skip
    what.add_argument(
        "--check", type=Path, metavar="DIR", help="check a dataset folder; changes nothing"
    )
    build = parser.add_argument_group("building (with --from)")
    build.add_argument("--token", help="trigger word, e.g. sks")
    build.add_argument("--class", dest="class_word", default="", help="class word, e.g. dog")
    build.add_argument("--repeats", type=int, default=None, help="repeats of each image per epoch")
    build.add_argument("--out", type=Path, help="dataset folder to create or add to")
    build.add_argument("--reg", nargs="+", type=Path, default=[], metavar="SRC",
                       help="regularization images (pictures of the class)")  # fmt: skip
    build.add_argument("--reg-repeats", type=int, default=1)
    build.add_argument("--caption-template", default=DEFAULT_TEMPLATE,
                       help="caption for images without one; {token}, {class}, {name} are filled in")  # fmt: skip
    build.add_argument("--recursive", action="store_true", help="also take images in sub-folders")
    both = parser.add_argument_group("both")
    both.add_argument("--caption-extension", default=None,
                      help="caption file extension (default .txt; --check detects it)")  # fmt: skip
    both.add_argument(
        "--epochs", type=int, default=10, help="epochs for the step count (default 10)"
    )
    both.add_argument("--batch-size", type=int, default=1, help="batch size for the step count")
    both.add_argument("--target-steps", type=int, default=None,
                      help="suggest the repeats that give about this many steps")  # fmt: skip


def run_prepare(args: argparse.Namespace) -> int:
    """Build or check; prints the outcome. Exit code 1 when a check finds errors."""
    if args.epochs < 1 or args.batch_size < 1:
        raise DatasetError("--epochs and --batch-size must be at least 1")
    if args.check is not None:
        return _check(args)
    return _build(args)


def _check(args: argparse.Namespace) -> int:
    options = CheckOptions(
        caption_extension=args.caption_extension,
        epochs=args.epochs,
        batch_size=args.batch_size,
        target_steps=args.target_steps,
    )
    report = check_dataset_folder(args.check, options)
    for line in report.lines():
        print(line)
    return 1 if report.errors else 0


def _build(args: argparse.Namespace) -> int:
    missing = [flag for flag, value in (("--token", args.token), ("--out", args.out)) if not value]
    if missing:
        raise DatasetError(
            f"building a dataset needs {' and '.join(missing)}",
            fix=EXAMPLES.splitlines()[1].strip(),
        )
    repeats = args.repeats
    if repeats is None:
        repeats = _repeats_for_target(args) if args.target_steps else 10
    request = BuildRequest(
        sources=args.sources,
        token=args.token,
        class_word=args.class_word,
        repeats=repeats,
        out=args.out,
        reg_sources=args.reg,
        reg_repeats=args.reg_repeats,
        caption_template=args.caption_template,
        caption_extension=args.caption_extension or ".txt",
        recursive=args.recursive,
    )
    result = build_dataset_folder(request)
    for line in result.summary_lines(args.epochs, args.batch_size, args.target_steps):
        print(line)
    return 0


def _repeats_for_target(args: argparse.Namespace) -> int:
    images, _ = collect_images(args.sources, args.recursive)
    if not images:
        raise DatasetError("no images found in the sources", ", ".join(map(str, args.sources)))
    return suggest_repeats(
        len(images), args.target_steps, args.epochs, args.batch_size, bool(args.reg)
    )
