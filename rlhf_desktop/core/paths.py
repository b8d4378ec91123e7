"""Where the app keeps its files: platform-appropriate, each overridable by an environment variable."""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = "rlhf-desktop"


def _platform_dir(kind: str) -> Path:
    """The user's cache or data folder for this app, by platform convention (XDG on Linux)."""
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
        return base / APP / ("Cache" if kind == "cache" else "Data")
    if sys.platform == "darwin":
        sub = "Caches" if kind == "cache" else "Application Support"
        return home / "Library" / sub / APP
    env, fallback = ("XDG_CACHE_HOME", ".cache") if kind == "cache" else ("XDG_DATA_HOME", ".local/share")
    return Path(os.environ.get(env) or home / fallback) / APP


def _dir(env: str, default: Path) -> Path:
    path = Path(os.environ.get(env) or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Converted models and other re-creatable files (RLHF_DESKTOP_CACHE overrides)."""
    return _dir("RLHF_DESKTOP_CACHE", _platform_dir("cache"))


def data_dir() -> Path:
    """Logs, the default project, recent-project list (RLHF_DESKTOP_DATA overrides)."""
    return _dir("RLHF_DESKTOP_DATA", _platform_dir("data"))


def log_file() -> Path:
    return data_dir() / "rlhf-desktop.log"


def default_project_dir() -> Path:
    return data_dir() / "default-project"


def resources_dir() -> Path:
    """The repository's resources/ folder (bundled next to the package when frozen)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "resources", here.parent / "resources"):
        if candidate.is_dir():
            return candidate
    return here.parent / "resources"
