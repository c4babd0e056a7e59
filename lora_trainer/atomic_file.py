"""Write a file under a temporary name beside it, then rename it into place."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def create_beside(path: Path) -> tuple[int, Path]:
    """A new, empty file next to `path` (an open fd and its name), with a plain file's mode.

    tempfile.mkstemp makes files readable by their owner only (0600), and a rename keeps
    that, so a LoRA saved by the WebUI's user could not be read by anyone else; os.open
    with 0o666 lets the user's umask decide, as for any file a program writes.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, _FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {path}")


def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call `write` on a temporary file beside `path`, then rename it over `path`.

    Readers never see a half-written file, and a crash leaves the old file intact.
    """
    fd, tmp = create_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
