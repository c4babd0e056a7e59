"""User-facing errors: each says what is wrong, where, and how to fix it."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix. The CLI prints it on one line and exits with code 2."""

    def __init__(self, what: str, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [self.what.rstrip(".")]
        if self.where:
            parts[0] += f" ({self.where})"
        if self.fix:
            parts.append(self.fix.rstrip("."))
        return ". ".join(parts) + "."


class ConfigError(UserError):
    """A bad option value or name."""


class DatasetError(UserError):
    """A dataset folder, image or caption that cannot be used."""


class ModelError(UserError):
    """A model that cannot be loaded or trained."""


class LoraFileError(UserError):
    """A LoRA file that cannot be read or written."""
