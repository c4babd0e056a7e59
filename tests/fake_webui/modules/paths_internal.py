"""Fake of modules/paths_internal.py (A1111 v1.10.1): where the WebUI keeps its files.

Real: `script_path` (the WebUI folder), `data_path` (--data-dir, default the WebUI
folder), `models_path` (--models-dir or <data_path>/models), `extensions_dir`,
`extensions_builtin_dir`, `default_output_dir` (<data_path>/outputs). Tests point
`data_path` and the paths below it at a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

normalized_filepath = lambda filepath: str(Path(filepath).absolute())  # noqa: E731

cwd = os.getcwd()
modules_path = os.path.dirname(os.path.realpath(__file__))
script_path = os.path.dirname(modules_path)
data_path = script_path
models_path = os.path.join(data_path, "models")
extensions_dir = os.path.join(data_path, "extensions")
extensions_builtin_dir = os.path.join(script_path, "extensions-builtin")
default_output_dir = os.path.join(data_path, "outputs")
