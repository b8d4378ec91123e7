"""The main window: menus, one tab per view, the status bar, and the project/model lifecycle.

Views plug in with one call:

    window.add_view("Labeling", LabelingView(window.state), "Ctrl+2")

Each view receives the shared `AppState` (project, model, jobs) and subscribes to its signals.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QByteArray, QUrl, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QIcon, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QFrame, QMainWindow, QMenu, QMessageBox, QScrollArea, QTabWidget,
                               QWidget)

from rlhf_desktop.core import paths
from rlhf_desktop.core.errors import ProjectError
from rlhf_desktop.store import Project
from rlhf_desktop.ui import settings
from rlhf_desktop.ui.about import show_about
from rlhf_desktop.ui.arena import ArenaView
from rlhf_desktop.ui.browse import BrowseView
from rlhf_desktop.ui.dashboard import Dashboard
from rlhf_desktop.ui.data_menu import build_data_actions
from rlhf_desktop.ui.demonstrations import DemonstrationsView
from rlhf_desktop.ui.errors import log, show_error
from rlhf_desktop.ui.jobs import JobRunner
from rlhf_desktop.ui.labeling import LabelingView
from rlhf_desktop.ui.model_menu import CHECKPOINT_PREFIX, build_model_menu, load_model_job, load_options
from rlhf_desktop.ui.playground import PlaygroundView
from rlhf_desktop.ui.rm_report_view import RMReportView
from rlhf_desktop.ui.runs_view import RunsView
from rlhf_desktop.ui.state import AppState
from rlhf_desktop.ui.statusbar import AppStatusBar
from rlhf_desktop.ui.train_view import TrainView

CLOSE_TIMEOUT_S = 10.0
SCROLL_ABOVE_PX = 640  # views wider than this at their minimum sit in a scroll area (small screens)


class MainWindow(QMainWindow):
    """The application window; `state` is what every view shares."""

    sig_view_added = Signal(str)
    """A view was added (its name)."""

    def __init__(self, state: AppState | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.state = state or AppState(self)
        self._views: dict[str, tuple[QWidget, QAction, QWidget]] = {}  # name: (view, action, tab page)
        self._close_when_idle = False
        self._ask_before_stopping = True
        self.close_timeout_s = CLOSE_TIMEOUT_S
        self.tabs = QTabWidget()
        self.tabs.setObjectName("views")
        self.tabs.setDocumentMode(True)
        self.setCentralWidget(self.tabs)
        self.status = AppStatusBar(self.state, self)
        self.setStatusBar(self.status)
        self.menus: dict[str, QMenu] = {}
        self._build_file_menu()
        self.menus["model"] = build_model_menu(self)
        self._build_view_menu()
        self._build_help_menu()
        self._add_views()
        self.state.sig_project_changed.connect(self._update_title)
        self.state.jobs.sig_busy_changed.connect(self._maybe_close)
        self._update_title()
        self._restore_window()

    # -- views --------------------------------------------------------------------------------
    def add_view(self, name: str, widget: QWidget, shortcut: str | None = None, *,
                 icon: QIcon | None = None, tooltip: str = "") -> QAction:
        """Add `widget` as a tab named `name` with a View menu action (Ctrl+N by position by default)."""
        if name in self._views:
            raise ValueError(f"a view named {name!r} already exists")
        page = widget
        if widget.minimumSizeHint().width() > SCROLL_ABOVE_PX:  # wide views scroll instead of widening the window
            page = QScrollArea(widgetResizable=True, frameShape=QFrame.Shape.NoFrame)
            page.setWidget(widget)
        index = self.tabs.addTab(page, icon or QIcon(), name)
        if tooltip:
            self.tabs.setTabToolTip(index, tooltip)
        widget.setObjectName(widget.objectName() or f"view{name.replace(' ', '')}")
        for runner in widget.findChildren(JobRunner):  # a view's own runners: status bar + closing see them
            self.state.jobs.adopt(runner)
        action = QAction(name, self)
        action.setObjectName(f"actionView{name.replace(' ', '')}")
        if shortcut is None and index < 9:
            shortcut = f"Ctrl+{index + 1}"
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tooltip or f"Show the {name} view")
        action.triggered.connect(lambda: self.show_view(name))
        self.menus["view"].insertAction(self._view_separator, action)
        self._views[name] = (widget, action, page)
        self.sig_view_added.emit(name)
        return action

    def _add_views(self) -> None:
        """Every view of the app, in workflow order (Ctrl+1..Ctrl+9), and the signals between them."""
        s = self.state
        self.playground = PlaygroundView(s)
        self.labeling = LabelingView(s)
        self.browse = BrowseView(s)
        self.demonstrations = DemonstrationsView(s)
        self.train = TrainView(s)
        self.dashboard = Dashboard(s)
        self.runs = RunsView(s)
        self.rm_report = RMReportView(s)
        self.arena = ArenaView(s)
        for name, widget, tip in (
                ("Playground", self.playground, "Chat with the loaded model"),
                ("Label", self.labeling, "Compare two responses and pick the better one"),
                ("Browse", self.browse, "Search, edit and delete labels"),
                ("Demonstrations", self.demonstrations, "Write the ideal response to a prompt"),
                ("Train", self.train, "SFT, reward model, DPO and PPO runs"),
                ("Dashboard", self.dashboard, "Live curves, samples and alarms of a run"),
                ("Runs", self.runs, "Every run of the project with its lineage"),
                ("RM Report", self.rm_report, "How well a reward model ranks the held-out pairs"),
                ("Arena", self.arena, "Blind comparison of two checkpoints")):
            self.add_view(name, widget, tooltip=tip)
        # A fresh project has no prompts yet: the Label view says so itself; a modal error at startup would not help.
        self.labeling.queue.sig_failed.disconnect()
        self.labeling.queue.sig_failed.connect(self._on_queue_failed)
        self.train.sig_run_started.connect(self._on_run_started)
        self.train.sig_run_finished.connect(self._on_run_finished)
        self.dashboard.sig_alarm.connect(self._on_alarm)
        self.dashboard.sig_warning.connect(lambda alarm: self.status.showMessage(f"Warning: {alarm['message']}"))
        self.dashboard.sig_send_to_labeling.connect(
            lambda text: self.status.showMessage(f"Added to the labeling queue: {text[:80]}", 8000))
        self.runs.is_active = lambda run_id: self.train.runner.running and self.train.run_id == run_id
        self.runs.sig_open_run.connect(self._open_run)
        self.runs.sig_compare_run.connect(self._compare_run)
        self.runs.sig_open_rm_report.connect(self.show_rm_report)
        self.runs.sig_run_deleted.connect(lambda _id: self.train.refresh_choices())
        menu = self.menus["dashboard"] = self.menus["view"].addMenu("&Dashboard Export")
        menu.setObjectName("dashboardMenu")
        menu.addActions(self.dashboard.export_actions())

    def _on_queue_failed(self, info: dict) -> None:
        if info.get("kind") == "user":
            hint = f" ({info['hint']})" if info.get("hint") else ""
            self.status.showMessage(f"Labeling: {info.get('message', '')}{hint}", 15000)
        else:
            show_error(self.labeling, info)

    def _on_run_started(self, runner: JobRunner, run_id: int, stage: str) -> None:
        self.dashboard.attach_job(runner, run_id, stage)
        self.runs.refresh()
        self.status.showMessage(f"Run #{run_id} started: follow it in the Dashboard", 8000)

    def _on_run_finished(self, outcome: dict) -> None:
        self.dashboard.finish_run(outcome["status"])
        self.runs.refresh()
        if outcome["stage"] == "rm" and outcome["status"] == "done":
            self.show_rm_report(outcome["run_id"])

    def _on_alarm(self, alarm: dict) -> None:
        if self.train.runner.running:
            self.train.pause()
        self.status.showMessage(f"Run paused by an alarm: {alarm['message']}")

    def _open_run(self, run_id: int) -> None:
        if self.state.project is not None:
            self.dashboard.show_run(self.state.project, run_id)
            self.show_view("Dashboard")

    def _compare_run(self, run_id: int) -> None:
        if not self.dashboard.add_overlay(run_id):
            self.status.showMessage(f"Run #{run_id} cannot be overlaid on the current run (another stage?)", 8000)
        self.show_view("Dashboard")

    def show_rm_report(self, run_id: int) -> None:
        """Score a reward-model run's held-out pairs in the RM Report view and show it."""
        if self.state.project is not None:
            self.rm_report.show_run(self.state.project, run_id)
            self.show_view("RM Report")

    def view(self, name: str) -> QWidget:
        return self._views[name][0]

    def views(self) -> list[str]:
        return list(self._views)

    def show_view(self, name: str) -> None:
        self.tabs.setCurrentWidget(self._views[name][2])

    # -- projects -----------------------------------------------------------------------------
    def open_project(self, folder: str | Path, *, create: bool = False) -> bool:
        """Open (or create) the project in `folder`; errors go to a dialog. True when opened."""
        try:
            project = Project.create(folder) if create else Project.open(folder)
        except ProjectError as exc:
            show_error(self, exc)
            return False
        self.set_project(project)
        return True

    def set_project(self, project: Project) -> None:
        """Make an already open `project` current and remember it in the recent list."""
        self.state.set_project(project)
        settings.add_recent_project(project.folder)
        log.info("opened project %s", project.folder)

    def _new_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "New project: choose or create an empty folder",
                                                  str(self._projects_parent()))
        if folder:
            self.open_project(folder, create=True)

    def _open_project_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open project folder", str(self._projects_parent()))
        if folder:
            self.open_project(folder)

    def _projects_parent(self) -> Path:
        return self.state.project.folder.parent if self.state.project else Path.home()

    def _fill_recent_menu(self) -> None:
        menu = self.menus["recent"]
        menu.clear()
        recent = settings.recent_projects()
        for i, folder in enumerate(recent):
            action = menu.addAction(f"&{i + 1}  {folder.name}" if i < 9 else folder.name)
            action.setToolTip(str(folder))
            action.setStatusTip(str(folder))
            action.triggered.connect(lambda _=False, f=folder: self.open_project(f))
        if not recent:
            menu.addAction("No recent projects").setEnabled(False)
        menu.addSeparator()
        menu.addAction("Clear List", settings.clear_recent_projects).setEnabled(bool(recent))

    # -- models -------------------------------------------------------------------------------
    def load_model(self, spec: str | Path, options: Any = None) -> int:
        """Load `spec` ('default', a folder or a .gguf file) in the "model" job slot."""
        spec = str(spec)
        options = options if options is not None else load_options()
        started = time.monotonic()
        label = "default model" if spec == "default" else Path(spec).name
        if spec.startswith(CHECKPOINT_PREFIX):
            label = spec.replace(":", " ")

        def done(loaded: Any) -> None:
            self.state.set_model(loaded)
            if self.state.project is not None:
                self.state.project.set_setting("last_model", spec)
            seconds = time.monotonic() - started
            self.status.showMessage(f"Loaded {loaded.name} in {seconds:.1f} s", 8000)
            log.info("loaded model %s (%s) in %.1f s", loaded.name, loaded.source, seconds)

        self.state.sig_model_loading.emit(label)
        folder = str(self.state.project.folder) if self.state.project is not None else None
        return self.state.jobs.start("model", f"Loading {label}", load_model_job, spec, options, folder,
                                     on_finished=done)

    # -- menus --------------------------------------------------------------------------------
    def _action(self, menu: QMenu, text: str, name: str, slot: Callable[..., Any],
                shortcut: QKeySequence | str | None = None, tip: str = "") -> QAction:
        action = menu.addAction(text)
        action.setObjectName(name)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.triggered.connect(slot)
        return action

    def _build_file_menu(self) -> None:
        menu = self.menus["file"] = self.menuBar().addMenu("&File")
        menu.setObjectName("fileMenu")
        self._action(menu, "&New Project…", "actionNewProject", self._new_project_dialog, QKeySequence.StandardKey.New,
                     "Create a project in an empty folder")
        self._action(menu, "&Open Project…", "actionOpenProject", self._open_project_dialog,
                     QKeySequence.StandardKey.Open, "Open a project folder (it holds project.db)")
        recent = self.menus["recent"] = menu.addMenu("Open &Recent")
        recent.setObjectName("recentMenu")
        recent.aboutToShow.connect(self._fill_recent_menu)
        self._fill_recent_menu()
        menu.addSeparator()
        build_data_actions(self, menu)
        menu.addSeparator()
        self._action(menu, "&Quit", "actionQuit", self.close, QKeySequence.StandardKey.Quit, "Quit rlhf-desktop")

    def _build_view_menu(self) -> None:
        menu = self.menus["view"] = self.menuBar().addMenu("&View")
        menu.setObjectName("viewMenu")
        self._view_separator = menu.addSeparator()
        status = self._action(menu, "&Status Bar", "actionToggleStatusBar", lambda on: self.status.setVisible(on))
        status.setCheckable(True)
        status.setChecked(True)
        full = self._action(menu, "&Full Screen", "actionFullScreen", self._toggle_full_screen,
                            QKeySequence.StandardKey.FullScreen)
        full.setCheckable(True)

    def _build_help_menu(self) -> None:
        menu = self.menus["help"] = self.menuBar().addMenu("&Help")
        menu.setObjectName("helpMenu")
        self._action(menu, "Show &Log File", "actionShowLog", lambda: _open_path(paths.log_file()),
                     tip="Open the log file, where every error is recorded")
        self._action(menu, "Open &Data Folder", "actionDataFolder", lambda: _open_path(paths.data_dir()),
                     tip="The folder with the log, settings and the default project")
        menu.addSeparator()
        self._action(menu, "&About rlhf-desktop", "actionAbout", lambda: show_about(self, self.state.model),
                     tip="Versions and device")

    def _toggle_full_screen(self, on: bool) -> None:
        self.showFullScreen() if on else self.showNormal()

    # -- window state and closing ------------------------------------------------------------
    @Slot()
    def _update_title(self, *_: Any) -> None:
        project = self.state.project
        self.setWindowTitle(f"{project.folder.name} — rlhf-desktop" if project else "rlhf-desktop")

    def _restore_window(self) -> None:
        geometry = settings.get_value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:  # first start: 1200x800, or 90% of a smaller screen
            available = self.screen().availableGeometry()
            self.resize(min(1200, int(available.width() * 0.9)), min(800, int(available.height() * 0.9)))
        state = settings.get_value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)
        self.tabs.setCurrentIndex(settings.get_value("window/view", 0, int) or 0)

    def _save_window(self) -> None:
        settings.set_value("window/geometry", self.saveGeometry())
        settings.set_value("window/state", self.saveState())
        settings.set_value("window/view", self.tabs.currentIndex())

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        for runner in self.findChildren(JobRunner):  # runners views created after add_view too
            self.state.jobs.adopt(runner)
        running = self.state.jobs.running()
        if running and self._ask_before_stopping and not self._close_when_idle:
            names = ", ".join(r.name for r in running)
            answer = QMessageBox.question(
                self, "Stop running jobs?", f"Still running: {names}.\n\nStop and quit?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        if running:
            self.state.jobs.cancel_all()
            if not self.state.jobs.wait_all(self.close_timeout_s):
                # Never kill a thread: close as soon as the job reaches its next stop check.
                self._close_when_idle = True
                self.status.showMessage("Waiting for the running job to stop; the window closes when it does.")
                event.ignore()
                return
        self._save_window()
        self.state.close()
        event.accept()

    def quit_without_asking(self) -> None:
        """Close now: running jobs are asked to stop and waited for (SIGINT/SIGTERM)."""
        self._ask_before_stopping = False
        self.close()

    @Slot()
    def _maybe_close(self) -> None:
        if self._close_when_idle and not self.state.jobs.running():
            self.close()


def _open_path(path: Path) -> None:
    QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

