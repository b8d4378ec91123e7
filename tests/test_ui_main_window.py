"""The main window offscreen: menus, views, projects, model loading, errors, closing, run_app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication, QFileDialog, QLabel, QMessageBox

from rlhf_desktop.core import paths
from rlhf_desktop.core.errors import ProjectError
from rlhf_desktop.store import Project
from rlhf_desktop.ui import settings
from rlhf_desktop.ui.app import create_main_window, run_app
from rlhf_desktop.ui.errors import install_excepthook
from rlhf_desktop.ui.jobs import JobRunner
from rlhf_desktop.ui.main_window import MainWindow
from rlhf_desktop.ui.model_menu import load_options

# Qt warnings fail a test, except two from this environment: the offscreen platform's size hints,
# and font fallback notices when a tiny random model prints bytes of exotic scripts.
pytestmark = [pytest.mark.qt_log_level_fail("WARNING"),
              pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints",
                                        "OpenType support missing")]
LOAD_TIMEOUT_MS = 60_000



@pytest.fixture
def dialogs(monkeypatch):
    shown: list[QMessageBox] = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: shown.append(box) or 0)
    return shown


@pytest.fixture
def window(qtbot, data_dir):
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    yield w
    w.state.jobs.cancel_all()
    assert w.state.jobs.wait_all(10)


def choose_folder(monkeypatch, folder):
    """Answer the next folder dialog with `folder` (a Qt static dialog, patched to not block)."""
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))


def action(window, name):
    found = window.findChild(QAction, name)
    assert found is not None, name
    return found


def test_menus_and_actions_present(window):
    titles = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert titles == ["File", "Model", "View", "Help"]
    texts = {m: [a.text().replace("&", "") for a in window.menus[m].actions() if a.text()] for m in window.menus}
    assert texts["file"][:3] == ["New Project…", "Open Project…", "Open Recent"] and "Quit" in texts["file"]
    assert texts["model"][:3] == ["Load Model from Folder…", "Load GGUF File…", "Use Default Model"]
    assert {"Device", "Dtype", "Allow pickled weights (.bin, .pt)", "Trust remote code"} <= set(texts["model"])
    assert texts["view"][:1] == ["Playground"] and {"Status Bar", "Full Screen"} <= set(texts["view"])
    assert "About rlhf-desktop" in texts["help"]
    assert action(window, "actionViewPlayground").shortcut().toString() == "Ctrl+1"


def test_model_load_options_follow_the_menu(window):
    device_menu = next(a.menu() for a in window.menus["model"].actions() if a.text() == "De&vice")
    next(a for a in device_menu.actions() if a.data() == "cpu").trigger()
    action(window, "action_allow_pickle").trigger()
    options = load_options()
    assert (options.device, options.dtype, options.allow_pickle, options.trust_remote_code) == ("cpu", "auto", True,
                                                                                              False)


def test_add_view_is_one_call(window, qtbot):
    page = QLabel("an extra view goes here")
    before = window.views()
    act = window.add_view("Extra", page, "Ctrl+0")
    assert window.views() == before + ["Extra"]
    assert act.shortcut().toString() == "Ctrl+0"
    assert act in window.menus["view"].actions()
    act.trigger()
    assert window.tabs.currentWidget() is page
    with pytest.raises(ValueError):
        window.add_view("Extra", QLabel())


def test_a_views_own_runner_shows_in_the_status_bar(window, qtbot):
    page = QLabel("a view with its own job runner")
    own = JobRunner("own", page)
    window.add_view("Own", page)
    gate = threading.Event()
    own.start("Own work", lambda ctx: gate.wait(10))
    assert window.status.busy.isVisible() and window.status.busy.label.text() == "Own work"
    assert window.state.jobs.running() == [own]
    with qtbot.waitSignal(own.sig_finished, timeout=10_000):
        gate.set()
    assert not window.status.busy.isVisible()


def test_loading_a_model_folder_updates_the_status_bar(window, qtbot, monkeypatch, tiny_model_dir, tmp_path):
    window.open_project(tmp_path / "proj", create=True)
    choose_folder(monkeypatch, tiny_model_dir)
    assert window.status.model_label.text() == "No model"
    with qtbot.waitSignal(window.state.sig_model_changed, timeout=LOAD_TIMEOUT_MS) as blocker:
        action(window, "actionLoadFolder").trigger()
        assert window.status.busy.isVisible() and "Loading" in window.status.model_label.text()
    loaded = blocker.args[0]
    assert loaded is window.state.model and loaded.name == tiny_model_dir.name
    assert window.status.model_label.text() == f"Model: {loaded.name}"
    assert window.status.device_label.text() == "cpu · float32"
    assert window.status.memory_label.text().startswith("RAM ")
    qtbot.waitUntil(lambda: not window.status.busy.isVisible())
    assert window.state.project.get_setting("last_model") == str(tiny_model_dir)
    assert window.playground.generate_button.isEnabled()


def test_a_bad_model_folder_shows_the_error_dialog_and_logs_it(window, qtbot, monkeypatch, dialogs, tmp_path):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    choose_folder(monkeypatch, empty)
    with qtbot.waitSignal(window.state.jobs.runner("model").sig_failed, timeout=LOAD_TIMEOUT_MS):
        action(window, "actionLoadFolder").trigger()
    assert len(dialogs) == 1
    box = dialogs[0]
    assert box.windowTitle() == "Could not load the model" and "config.json" in box.text()
    assert str(empty) in box.informativeText() and "What to do" in box.informativeText()
    assert box.detailedText()  # the traceback, behind "Show Details..."
    assert "Could not load the model" in paths.log_file().read_text(encoding="utf-8")
    assert window.state.model is None and window.status.model_label.text() == "No model"


def test_new_and_open_project_update_the_recent_list(window, monkeypatch, dialogs, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    choose_folder(monkeypatch, first)
    action(window, "actionNewProject").trigger()
    assert window.state.project.folder == first.resolve()
    assert window.windowTitle().startswith("first")
    Project.create(second).close()
    choose_folder(monkeypatch, second)
    action(window, "actionOpenProject").trigger()
    assert window.status.project_label.text() == "Project: second"
    assert settings.recent_projects() == [second.resolve(), first.resolve()]
    window.menus["recent"].aboutToShow.emit()
    entries = [a for a in window.menus["recent"].actions() if a.text().endswith("first")]
    entries[0].trigger()
    assert window.state.project.folder == first.resolve()
    assert settings.recent_projects()[0] == first.resolve()
    choose_folder(monkeypatch, tmp_path / "missing")
    action(window, "actionOpenProject").trigger()  # not a project: a dialog, the project stays
    assert dialogs and dialogs[0].windowTitle() == "Could not use the project"
    assert window.state.project.folder == first.resolve()


def test_about_lists_versions_and_device(window, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "about", lambda parent, title, text: shown.append(text))
    action(window, "actionAbout").trigger()
    for name in ("rlhf-desktop", "torch", "transformers", "trl", "peft", "PySide6", "Device", "CPU"):
        assert name in shown[0], name


def _stubborn_job(ctx, gate):
    while not gate.wait(0.01):
        pass
    ctx.check()


def test_closing_while_a_job_runs_asks_cancels_and_waits(window, qtbot, monkeypatch):
    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: answers.pop(0))
    stopped = threading.Event()

    def job(ctx):
        while not ctx.should_stop():
            ctx.wait_if_paused()
            threading.Event().wait(0.01)
        stopped.set()
        ctx.check()

    window.state.jobs.start("train", "Training", job)
    assert window.close() is False and window.isVisible()  # answered No: nothing stops
    assert window.state.jobs.runner("train").running
    assert window.close() is True  # answered Yes: cancelled and waited for
    assert stopped.is_set() and not window.state.jobs.running()


def test_a_job_slower_than_the_close_timeout_closes_the_window_when_it_ends(window, qtbot, monkeypatch):
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    window.close_timeout_s = 0.3
    gate = threading.Event()
    window.state.jobs.start("train", "Training", _stubborn_job, gate)
    assert window.close() is False and window.isVisible()
    gate.set()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10_000)


def test_startup_project_default_then_recent_then_explicit(qtbot, data_dir, tiny_model_dir, tmp_path):
    window = create_main_window(model=str(tiny_model_dir))
    qtbot.addWidget(window)
    assert window.state.project.folder == paths.default_project_dir().resolve()
    assert window.state.project.counts()["prompts"] >= 150  # a new default project has the starter set
    qtbot.waitUntil(lambda: window.state.model is not None, timeout=LOAD_TIMEOUT_MS)
    other = tmp_path / "other"
    window.open_project(other, create=True)
    with qtbot.waitSignal(window.state.sig_model_changed, timeout=LOAD_TIMEOUT_MS):
        window.load_model(tiny_model_dir)  # remembered as the other project's last model
    window.close()
    again = create_main_window()  # the most recent project, with its last model
    qtbot.addWidget(again)
    assert again.state.project.folder == other.resolve()
    qtbot.waitUntil(lambda: again.state.model is not None, timeout=LOAD_TIMEOUT_MS)
    assert again.state.model.source == str(tiny_model_dir) or again.state.model.name == tiny_model_dir.name
    with pytest.raises(ProjectError):
        create_main_window(project=tmp_path / "nowhere")


def test_run_app_opens_the_window_and_sigterm_closes_it(qtbot, data_dir, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # run_app installs its own: restore after
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    saved_handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}  # restored after
    seen = []

    def stop_when_loaded():
        for w in QApplication.topLevelWidgets():
            if isinstance(w, MainWindow) and w.isVisible() and w.state.model is not None:
                seen.append((w.state.model.name, w.windowIcon().isNull()))
                os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` would: an orderly close
                return
        QTimer.singleShot(100, stop_when_loaded)

    QTimer.singleShot(100, stop_when_loaded)
    with Project.create(tmp_path / "p") as project:
        folder = project.folder
    try:
        assert run_app(project=folder, model=str(tiny_model_dir)) == 0
    finally:
        for sig, handler in saved_handlers.items():
            signal.signal(sig, handler)
    assert seen == [(tiny_model_dir.name, False)]
    log_text = paths.log_file().read_text(encoding="utf-8")
    assert "starting rlhf-desktop" in log_text and "exiting with code 0" in log_text


def test_window_geometry_is_restored(qtbot, data_dir):
    first = MainWindow()
    qtbot.addWidget(first)
    first.show()
    first.resize(760, 530)  # inside the offscreen screen (800x600): restoring clamps to it
    first.close()
    second = MainWindow()
    qtbot.addWidget(second)
    assert (second.width(), second.height()) == (760, 530)


def test_uncaught_exceptions_reach_the_dialog_and_the_log(qtbot, data_dir, dialogs, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    install_excepthook()
    try:
        raise KeyError("missing-key-in-a-slot")
    except KeyError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    assert len(dialogs) == 1 and "missing-key-in-a-slot" in dialogs[0].text()
    worker = threading.Thread(target=lambda: {}["missing-key-in-a-thread"])
    worker.start()
    worker.join()
    log_text = paths.log_file().read_text(encoding="utf-8")
    assert "missing-key-in-a-slot" in log_text and "missing-key-in-a-thread" in log_text
    assert len(dialogs) == 1  # a Python thread's error is logged; dialogs belong to the GUI thread


def test_cli_gui_with_a_bad_project_prints_one_line(tmp_path):
    env = dict(os.environ, RLHF_DESKTOP_DATA=str(tmp_path / "data"), QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, "-m", "rlhf_desktop", "gui", "--project", str(tmp_path / "nope")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no project.db" in lines[0] and "Traceback" not in done.stderr
