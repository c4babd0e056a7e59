"""A fake of AUTOMATIC1111 WebUI v1.10.1's top-level `launch` module, for testing install.py.

Imitates (commit 82a973c0):
- launch.py, which re-exports `run_pip = launch_utils.run_pip`,
  `is_installed = launch_utils.is_installed`, `python`, `index_url`, `args`;
- modules/launch_utils.py `run_pip(command, desc=None, live=default_command_live)`: returns
  None at once when `args.skip_install`; otherwise runs
  `"{python}" -m pip {command} --prefer-binary[ --index-url URL]` through `run()`, which
  prints "Installing {desc}", returns pip's stdout, and raises RuntimeError
  ("Couldn't install {desc}." + command + error code + output) when pip fails;
- modules/launch_utils.py `is_installed(package)`: True if importlib.metadata knows the
  distribution, else whether importlib.util.find_spec finds the module.

Instead of running pip, run_pip records each call in `pip_calls`, and also:
- appends it as a JSON line to the file named by $FAKE_WEBUI_PIP_LOG (for subprocess tests);
- if $FAKE_WEBUI_SITE names a folder, simulates pip's effect there: a minimal
  `<name>-<version>.dist-info` for each `name==version` (or `>=`) in the command, which
  importlib.metadata finds when that folder is on sys.path;
- if `fail_with` (or $FAKE_WEBUI_PIP_FAIL) is set, fails the way the real one does.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

python = sys.executable
index_url = os.environ.get("INDEX_URL", "")
default_command_live = os.environ.get("WEBUI_LAUNCH_LIVE_OUTPUT") == "1"
args = SimpleNamespace(skip_install=False)  # the real one is argparse's namespace

fail_with: str | None = os.environ.get("FAKE_WEBUI_PIP_FAIL") or None


@dataclass
class PipCall:
    command: str
    desc: str | None
    live: bool
    command_line: str  # what the real run_pip would hand to the shell


pip_calls: list[PipCall] = []


def reset() -> None:
    """Forget recorded calls and restore the defaults (tests call this between cases)."""
    global fail_with
    pip_calls.clear()
    args.skip_install = False
    fail_with = None


def _simulate_install(command: str, site: Path) -> None:
    # "name==1.2" installs 1.2; "name>=1.2" installs the lowest version it allows.
    for arg in shlex.split(command):
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:==|>=|~=)([A-Za-z0-9.+!-]+)", arg)
        if not match:
            continue
        name, version = match.groups()
        dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir(parents=True, exist_ok=True)
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
        )


def run_pip(command, desc=None, live=default_command_live):
    """Record a pip call instead of running it (same signature as launch_utils.run_pip)."""
    if args.skip_install:
        return None

    index_url_line = f" --index-url {index_url}" if index_url != "" else ""
    command_line = f'"{python}" -m pip {command} --prefer-binary{index_url_line}'
    call = PipCall(command=command, desc=desc, live=live, command_line=command_line)
    pip_calls.append(call)
    log = os.environ.get("FAKE_WEBUI_PIP_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(call.__dict__) + "\n")

    print(f"Installing {desc}")  # run() prints its desc before running the command
    if fail_with:
        raise RuntimeError(
            "\n".join(
                [
                    f"Couldn't install {desc}.",
                    f"Command: {command_line}",
                    "Error code: 1",
                    f"stderr: {fail_with}",
                ]
            )
        )
    site = os.environ.get("FAKE_WEBUI_SITE")
    if site:
        _simulate_install(command, Path(site))
    return ""


def is_installed(package):
    """Same rule as launch_utils.is_installed: a known distribution, or an importable module."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        try:
            spec = importlib.util.find_spec(package)
        except ModuleNotFoundError:
            return False
        return spec is not None
    return dist is not None
