"""The few places where gradio 3 (A1111) and gradio 4 (Forge) differ, in one spot."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def gradio_major() -> int:
    import gradio as gr

    return int(str(gr.__version__).split(".", 1)[0])


def js(code: str) -> dict[str, str]:
    """Keyword for a client-side function on an event: `_js=` in gradio 3, `js=` in gradio 4."""
    return {"_js": code} if gradio_major() < 4 else {"js": code}


def uploaded_paths(files: Any) -> list[Path]:
    """gr.File values as paths: gradio 3 gives temp-file objects, gradio 4 gives strings."""
    if files is None:
        return []
    items = files if isinstance(files, (list, tuple)) else [files]
    paths = []
    for item in items:
        name = getattr(item, "name", item)
        if isinstance(item, dict):
            name = item.get("path") or item.get("name")
        if name:
            paths.append(Path(str(name)))
    return paths
