"""Starting the desktop app: the QApplication, logging, the startup project and the startup model."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from rlhf_desktop import __version__
from rlhf_desktop.core import paths
from rlhf_desktop.core.errors import ProjectError
from rlhf_desktop.store import Project
from rlhf_desktop.store.prompts import load_starter_prompts
from rlhf_desktop.ui import settings
from rlhf_desktop.ui.errors import install_excepthook, setup_logging
from rlhf_desktop.ui.main_window import MainWindow

log = logging.getLogger("rlhf_desktop.ui")
APP_NAME = "rlhf-desktop"


def app_icon() -> QIcon:
    """The app icon from resources/icons (PNG renders at every size, the SVG as a fallback)."""
    folder = paths.resources_dir() / "icons"
    icon = QIcon()
    for png in sorted(folder.glob(f"{APP_NAME}-*.png")):
        icon.addFile(str(png))
    if icon.isNull() and (folder / f"{APP_NAME}.svg").is_file():
        icon = QIcon(str(folder / f"{APP_NAME}.svg"))
    return icon


def create_app(argv: list[str] | None = None) -> QApplication:
    """The QApplication (created once) with the app's name, organization, icon and style sheet."""
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName("rlhf-desktop")
    app.setOrganizationName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName(APP_NAME)  # matches packaging/rlhf-desktop.desktop (window icon on Wayland)
    app.setWindowIcon(app_icon())
    qss = paths.resources_dir() / "style.qss"
    if qss.is_file():
        app.setStyleSheet(qss.read_text(encoding="utf-8"))
    return app  # type: ignore[return-value]


def open_startup_project(folder: Path | None = None) -> Project:
    """The project to start with: `folder` if given (errors raise), else the most recent one that
    still opens, else the default project in the data folder (created when missing)."""
    if folder is not None:
        return Project.open(folder)
    for recent in settings.recent_projects():
        try:
            return Project.open(recent)
        except ProjectError as exc:
            log.warning("skipping recent project %s: %s", recent, exc)
    return open_default_project()


def open_default_project() -> Project:
    """The default project in the data folder; a new one starts with the bundled starter prompts
    so a first-time user can label right away."""
    folder = paths.default_project_dir()
    if Project.exists(folder):
        return Project.open(folder)
    project = Project.create(folder)
    report = load_starter_prompts(project)
    log.info("created the default project %s with %d starter prompts", folder, report.imported)
    return project


def create_main_window(project: Path | Project | None = None, model: str | None = None) -> MainWindow:
    """The main window with the startup project open and the startup model loading in a worker:
    `model`, else the project's last model, else the embedded default."""
    opened = project if isinstance(project, Project) else open_startup_project(project)
    window = MainWindow()
    window.set_project(opened)
    window.load_model(model or opened.get_setting("last_model") or "default")
    return window


def _quit_on_signals(window: MainWindow) -> None:
    """Ctrl+C or SIGTERM closes the window the orderly way (jobs stopped, settings saved)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: window.quit_without_asking())
    timer = QTimer(window)  # Python runs signal handlers only when it gets control: wake it
    timer.timeout.connect(lambda: None)
    timer.start(250)


def run_app(project: Path | None = None, model: str | None = None) -> int:
    """Open the desktop app; returns the exit code when the window closes."""
    log_path = setup_logging()
    log.info("starting rlhf-desktop %s (log: %s)", __version__, log_path)
    opened = open_startup_project(project)  # before Qt starts: a bad --project is one CLI error line
    app = create_app()
    install_excepthook()
    window = create_main_window(opened, model)
    _quit_on_signals(window)
    window.show()
    code = app.exec()
    log.info("exiting with code %s", code)
    return int(code)
