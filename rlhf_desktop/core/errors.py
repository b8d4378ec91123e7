"""User-facing errors: each names where the problem is and what to do about it."""

from __future__ import annotations


class UserError(Exception):
    """An error the user can act on: a bad file, folder, field or setting.

    `where` names the file, line or field; `hint` says what to do. The CLI prints these as one
    line without a traceback; the GUI shows them in a dialog.
    """

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ProjectError(UserError):
    """The project folder or its database cannot be used as asked."""


class SchemaError(ProjectError):
    """The project database has a schema this version cannot read."""


class ModelLoadError(UserError):
    """A model folder or file cannot be loaded."""


class ConfigError(UserError):
    """A configuration field has a bad value; `where` names the field."""


class DataError(UserError):
    """An input data file has bad rows; `errors` lists (line, reason) pairs."""

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None,
                 errors: list[tuple[int, str]] | None = None):
        super().__init__(message, where=where, hint=hint)
        self.errors = errors or []


class Cancelled(Exception):
    """A job stopped because the user asked it to (not an error: shown silently)."""
