"""App settings (window state, recent projects, model options) in an INI file in the data folder.

The file lives under `paths.data_dir()`, so tests that point RLHF_DESKTOP_DATA at a temporary
folder never touch the user's settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings

from rlhf_desktop.core import paths

RECENT_KEY = "projects/recent"
MAX_RECENT = 10


def settings() -> QSettings:
    """The settings file for the current data folder (a new handle each call: cheap, always current)."""
    return QSettings(str(paths.data_dir() / "settings.ini"), QSettings.Format.IniFormat)


def get_value(key: str, default: Any = None, kind: type | None = None) -> Any:
    """A setting; `kind` (bool, int, float, str) converts INI strings back to that type."""
    value = settings().value(key, default)
    if value is None or kind is None or isinstance(value, kind):
        return value
    try:
        if kind is bool:
            return str(value).lower() in ("1", "true", "yes", "on")
        return kind(value)
    except (TypeError, ValueError):
        return default


def set_value(key: str, value: Any) -> None:
    s = settings()
    s.setValue(key, value)
    s.sync()


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value]


def recent_projects() -> list[Path]:
    """Recently opened project folders, newest first; folders that no longer exist are dropped."""
    found = [Path(p) for p in _as_list(settings().value(RECENT_KEY))]
    return [p for p in found if (p / "project.db").is_file()]


def add_recent_project(folder: str | Path) -> list[Path]:
    """Put `folder` first in the recent list (deduplicated, at most MAX_RECENT); return the list."""
    folder = Path(folder).expanduser().resolve()
    entries = [str(folder)] + [str(p) for p in recent_projects() if p != folder]
    set_value(RECENT_KEY, entries[:MAX_RECENT])
    return [Path(p) for p in entries[:MAX_RECENT]]


def clear_recent_projects() -> None:
    set_value(RECENT_KEY, [])
