"""The `convert` sub-command: an SD2 LoRA's projections in the form diffusers loads (or back)."""

from __future__ import annotations

import argparse
from typing import Any

from .proj_convert import FORMS, convert_file


def add_convert_parser(sub: Any) -> None:
    """Register `convert` on the CLI's sub-command parser."""
    convert = sub.add_parser(
        "convert",
        help="rewrite an SD2 LoRA so diffusers can load it (proj_in/proj_out as 2-D weights)",
        description="kohya (and this trainer) write SD2 proj_in/proj_out LoRA weights as 1x1 "
        "convs [r, C, 1, 1]; diffusers' load_lora_weights needs them as [r, C]. This writes "
        "a copy in the form asked for, with the same metadata. The WebUI, Forge and ComfyUI "
        "read both forms; kohya's own scripts need the 1x1-conv form (--to kohya).",
    )
    convert.add_argument("file", help="the SD2 LoRA .safetensors file")
    convert.add_argument(
        "-o", "--output", help="the new file (default: <name>-<form>.safetensors beside it)"
    )
    convert.add_argument(
        "--to",
        choices=FORMS,
        default="diffusers",
        help="diffusers: [r, C] (default); kohya: back to [r, C, 1, 1]",
    )
    convert.add_argument(
        "--force", action="store_true", help="replace the output file if it exists"
    )
    convert.add_argument(
        "--sd2", action="store_true", help="treat the file as SD2.x when its metadata does not say"
    )
    convert.set_defaults(handler=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    result = convert_file(args.file, args.output, to=args.to, force=args.force, assume_sd2=args.sd2)
    print(f"Wrote {result.path} ({len(result.modules)} proj_in/proj_out modules in {args.to} form)")
    return 0
