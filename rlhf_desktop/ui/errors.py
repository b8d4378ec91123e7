"""The one path every error takes to the user: a dialog saying what happened and what to do,
with the details expandable, and a record in the log file. Cancellation is silent.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from rlhf_desktop.core import paths
from rlhf_desktop.core.errors import (Cancelled, ConfigError, DataError, ModelLoadError, ProjectError,
                                      UserError)

log = logging.getLogger("rlhf_desktop")

# What happened, by error type; the first match wins (subclasses before their bases).
TITLES: list[tuple[type, str]] = [
    (ModelLoadError, "Could not load the model"),
    (ProjectError, "Could not use the project"),
    (ConfigError, "A setting is not valid"),
    (DataError, "The data has problems"),
    (UserError, "Could not do that"),
    (MemoryError, "Out of memory"),
]
OOM_HINT = ("Free memory and try again: use a smaller model, fewer or shorter generations "
            "(max new tokens, n), or a smaller batch size.")


def _is_oom(exc: BaseException) -> bool:
    # torch.OutOfMemoryError / torch.cuda.OutOfMemoryError, matched by name so no torch import here
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


def error_info(exc: BaseException, title: str | None = None) -> dict[str, str]:
    """Plain data describing `exc` (title, message, where, hint, traceback, kind: user|oom|bug): safe to send
    across threads, and holds no reference to the exception or its frames (which pin memory)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if isinstance(exc, UserError):
        kind, message, where, hint = "user", exc.message, exc.where or "", exc.hint or ""
    elif _is_oom(exc):
        kind, where, hint = "oom", "", OOM_HINT
        message = str(exc).splitlines()[0] if str(exc) else "out of memory"
    else:
        kind, where = "bug", ""
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        hint = f"This is probably a bug. The details are in the log file {paths.log_file()}; please report it."
    if title is None:
        title = "Out of memory" if _is_oom(exc) else next(
            (t for cls, t in TITLES if isinstance(exc, cls)), "Something went wrong")
    return {"title": title, "message": message, "where": where, "hint": hint, "traceback": text, "kind": kind}


def log_error(info: dict[str, str]) -> None:
    """Write an error (as from `error_info`) to the log file."""
    where = f" [{info['where']}]" if info.get("where") else ""
    log.error("%s: %s%s\n%s", info.get("title", "Error"), info.get("message", ""), where,
              info.get("traceback", "").rstrip())


def build_error_box(info: dict[str, str], parent: QWidget | None = None) -> QMessageBox:
    """The dialog for `info`: what happened (text), where and what to do (informative text),
    the traceback behind "Show Details..."."""
    icon = QMessageBox.Icon.Critical if info.get("kind") == "bug" else QMessageBox.Icon.Warning
    box = QMessageBox(icon, info.get("title") or "Error", info.get("message") or "", QMessageBox.StandardButton.Ok,
                      parent)
    lines = []
    if info.get("where"):
        lines.append(f"<b>Where:</b> {_html(info['where'])}")
    if info.get("hint"):
        lines.append(f"<b>What to do:</b> {_html(info['hint'])}")
    if lines:
        box.setInformativeText("<br>".join(lines))
    if info.get("traceback"):
        box.setDetailedText(info["traceback"])
    box.setObjectName("errorDialog")
    return box


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def show_error(parent: QWidget | None, error: BaseException | dict[str, str], title: str | None = None) -> None:
    """Log `error` and show it in a modal dialog; a Cancelled exception is silent."""
    if isinstance(error, Cancelled):
        return
    info = error_info(error, title) if isinstance(error, BaseException) else dict(error)
    if title:
        info["title"] = title
    log_error(info)
    if QApplication.instance() is None:  # headless: the log is all we have
        print(f"rlhf-desktop: {info['title']}: {info['message']}", file=sys.stderr)
        return
    build_error_box(info, parent).exec()


# -- logging and uncaught exceptions ----------------------------------------------------------
_handler: logging.Handler | None = None


def setup_logging(level: int = logging.INFO) -> Path:
    """Send the package's log records to `paths.log_file()` (rotated at 2 MB); return its path."""
    global _handler
    path = paths.log_file()
    if _handler is not None and getattr(_handler, "baseFilename", None) == str(path):
        return path
    if _handler is not None:
        log.removeHandler(_handler)
        _handler.close()
    _handler = RotatingFileHandler(path, maxBytes=2_000_000, backupCount=2, encoding="utf-8")
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(_handler)
    log.setLevel(level)
    return path


def install_excepthook() -> None:
    """Route uncaught exceptions (main thread and Python threads) to the log and an error dialog."""

    def hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        exc.__traceback__ = tb
        app = QApplication.instance()
        if app is not None and threading.current_thread() is threading.main_thread():
            show_error(app.activeWindow(), exc)
        else:
            log_error(error_info(exc))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            args.exc_value.__traceback__ = args.exc_traceback
            log_error(error_info(args.exc_value))

    sys.excepthook = hook
    threading.excepthook = thread_hook
