"""Command line: `python -m lora_trainer train|demo|inspect|bench|prepare|convert`."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .bench.command import add_bench_parser
from .config import OPTION_NAMES, TrainConfig, config_from_dict, load_config_file, suggest_option
from .dataset.helper_cli import add_prepare_arguments, run_prepare
from .errors import ConfigError, UserError
from .lora.convert_cli import add_convert_parser
from .train.events import StopSignal
from .train.job import TrainResult, run_training
from .train.progress import ConsoleProgress

EXIT_USER_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    try:
        if unknown:
            raise _unknown_flag_error(unknown)
        if args.command is None:
            parser.print_help()
            return EXIT_USER_ERROR
        return args.handler(args)
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USER_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lora_trainer",
        description="Train kohya-compatible LoRAs for Stable Diffusion.",
    )
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser("train", help="train a LoRA (kohya option names)")
    train.add_argument("--config", help="a TOML or JSON file of options; flags override it")
    _add_option_flags(train)
    train.set_defaults(handler=_cmd_train)

    demo = sub.add_parser(
        "demo", help="make a sample dataset and train a LoRA on a tiny built-in model"
    )
    demo.add_argument("--out", default="demo_output", help="folder for the dataset and the LoRA")
    demo.add_argument("--steps", type=int, default=60, help="training steps (default 60)")
    demo.set_defaults(handler=_cmd_demo)

    inspect = sub.add_parser("inspect", help="describe a LoRA file")
    inspect.add_argument("file", help="a kohya-format .safetensors LoRA")
    inspect.set_defaults(handler=_cmd_inspect)

    prepare = sub.add_parser("prepare", help="build a dataset folder, or --check one")
    add_prepare_arguments(prepare)
    prepare.set_defaults(handler=run_prepare)
    add_bench_parser(sub)
    add_convert_parser(sub)
    return parser


def _add_option_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training options (kohya names)")
    for f in dataclasses.fields(TrainConfig):
        if f.type in ("bool", bool):
            group.add_argument(f"--{f.name}", action="store_true", default=None)
        elif str(f.type).startswith("list"):  # kohya's nargs="*" options (key=value lists)
            group.add_argument(f"--{f.name}", nargs="+", default=None, metavar="KEY=VALUE")
        else:
            group.add_argument(f"--{f.name}", default=None, metavar="VALUE")


def _unknown_flag_error(unknown: list[str]) -> ConfigError:
    flag = next((u for u in unknown if u.startswith("-")), unknown[0])
    name = flag.lstrip("-").split("=", 1)[0]
    return ConfigError(f"unknown option '{flag}'", fix=suggest_option(name))


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Options from --config, overridden by the flags given on the command line."""
    values: dict[str, Any] = {}
    source = "command line"
    if args.config:
        values.update(load_config_file(args.config))
        source = f"{args.config} and command line"
    for name in OPTION_NAMES:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    return config_from_dict(values, source=source)


def _cmd_train(args: argparse.Namespace) -> int:
    result = train_with_console(config_from_args(args))
    return 0 if result.output_path or not result.stopped else 1


def train_with_console(config: TrainConfig) -> TrainResult:
    """Run a job with a progress bar; the first Ctrl+C stops and saves, the second quits."""
    stop = StopSignal()
    progress = ConsoleProgress()

    def on_interrupt(signum: int, frame: Any) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        progress.note(
            "Stopping after this step and saving. Press Ctrl+C again to quit without saving."
        )
        stop.request(save=True)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        result = run_training(config, emit=progress, stop=stop)
    finally:
        signal.signal(signal.SIGINT, previous)
        progress.close()
    if result.output_path:
        print(f"Saved {result.output_path}")
    return result


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), steps=args.steps)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .lora.inspect import describe_lora
    from .lora.kohya_file import load_kohya_lora

    for line in describe_lora(load_kohya_lora(Path(args.file))):
        print(line)
    return 0
