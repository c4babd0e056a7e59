"""Fake of modules/script_callbacks.py (A1111 v1.10.1): registration and the ui_tabs call.

Real: `on_ui_tabs(callback, *, name=None)` adds a ScriptCallback to
callback_map['callbacks_ui_tabs']; `ui_tabs_callback()` calls each and concatenates the
returned lists of (component, title, elem_id), reporting (not raising) exceptions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class ScriptCallback(NamedTuple):
    script: str
    callback: Callable
    name: str | None = None


callback_map: dict[str, list[ScriptCallback]] = {
    "callbacks_ui_tabs": [],
    "callbacks_app_started": [],
    "callbacks_ui_settings": [],
    "callbacks_before_ui": [],
}
reported_errors: list[tuple[str, BaseException]] = []


def add_callback(
    callbacks: list, fun: Callable, *, name: str | None = None, category: str = "unknown"
) -> None:
    callbacks.append(ScriptCallback(getattr(fun, "__module__", "unknown"), fun, name))


def on_ui_tabs(callback: Callable, *, name: str | None = None) -> None:
    add_callback(callback_map["callbacks_ui_tabs"], callback, name=name, category="ui_tabs")


def on_app_started(callback: Callable, *, name: str | None = None) -> None:
    add_callback(callback_map["callbacks_app_started"], callback, name=name, category="app_started")


def ui_tabs_callback() -> list[Any]:
    res: list[Any] = []
    for c in callback_map["callbacks_ui_tabs"]:
        try:
            res += c.callback() or []
        except Exception as exc:  # the real one reports and goes on
            reported_errors.append(("ui_tabs_callback", exc))
    return res


def clear_callbacks() -> None:
    for callbacks in callback_map.values():
        callbacks.clear()


def on_ui_settings(callback: Callable, *, name: str | None = None) -> None:
    """Real: called (no arguments) while the Settings page is built; add options there."""
    add_callback(callback_map["callbacks_ui_settings"], callback, name=name, category="ui_settings")


def ui_settings_callback() -> None:
    for c in callback_map["callbacks_ui_settings"]:
        try:
            c.callback()
        except Exception as exc:  # the real one reports and goes on
            reported_errors.append(("ui_settings_callback", exc))


def app_started_callback(demo: Any, app: Any) -> None:
    """Real: webui.py calls it with the gradio Blocks (None with --nowebui) and the FastAPI app."""
    for c in callback_map["callbacks_app_started"]:
        try:
            c.callback(demo, app)
        except Exception as exc:  # the real one reports and goes on
            reported_errors.append(("app_started_callback", exc))


def on_before_ui(callback: Callable, *, name: str | None = None) -> None:
    """Real: called (no arguments) after all scripts are loaded and before the UI is built."""
    add_callback(callback_map["callbacks_before_ui"], callback, name=name, category="before_ui")


def before_ui_callback() -> None:
    # the real one runs them in reverse order of registration
    for c in reversed(callback_map["callbacks_before_ui"]):
        try:
            c.callback()
        except Exception as exc:  # the real one reports and goes on
            reported_errors.append(("before_ui_callback", exc))
