"""Fake of modules/shared.py (A1111 v1.10.1): the globals the extension reads.

Real: `cmd_opts` is the parsed argparse Namespace (the built-in Lora extension's
preload.py adds `--lora-dir`, default models/Lora); `sd_model` is the loaded model, whose
`sd_checkpoint_info` (modules/sd_models.py CheckpointInfo) has `filename`, `name`,
`shorthash`, `sha256`.
"""

from __future__ import annotations

import argparse
from typing import Any

cmd_opts = argparse.Namespace(lora_dir="models/Lora", api=False, lowvram=False, medvram=False)
sd_model: Any = None
