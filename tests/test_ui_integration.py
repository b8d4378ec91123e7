"""Every view wired into the main window: views and menus, data import/export actions, a run end to end."""

from __future__ import annotations

import json

import pytest
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QMessageBox

from rlhf_desktop.modeling.loading import load_model
from rlhf_desktop.store import Project
from rlhf_desktop.store.prompts import count_prompts
from rlhf_desktop.ui.main_window import MainWindow
from test_training_support import seed_preferences

pytestmark = [pytest.mark.qt_log_level_fail("WARNING"),
              pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints",
                                        "OpenType support missing")]
VIEWS = ["Playground", "Label", "Browse", "Demonstrations", "Train", "Dashboard", "Runs", "RM Report", "Arena"]
RUN_MS = 120_000


@pytest.fixture
def dialogs(monkeypatch):
    """Message boxes are recorded and answered (Qt's exec patched; `answer[0]` is the button returned)."""
    shown: list[QMessageBox] = []
    answer = [QMessageBox.StandardButton.Yes]
    monkeypatch.setattr(QMessageBox, "exec", lambda box: shown.append(box) or answer[0].value)
    return shown, answer


@pytest.fixture
def window(qtbot, tmp_path, data_dir, dialogs):
    w = MainWindow()
    qtbot.addWidget(w)
    w.set_project(Project.create(tmp_path / "proj"))
    w.show()
    yield w
    w.state.jobs.cancel_all()
    w.labeling.shutdown()
    assert w.state.jobs.wait_all(30)


def action(window, name):
    found = window.findChild(QAction, name)
    assert found is not None, name
    return found


def test_every_view_is_a_tab_with_a_view_menu_action(window):
    assert window.views() == VIEWS
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == VIEWS
    view_texts = [a.text() for a in window.menus["view"].actions()]
    assert view_texts[:len(VIEWS)] == VIEWS
    for i, name in enumerate(VIEWS):
        act = action(window, f"actionView{name.replace(' ', '')}")
        assert act.shortcut().toString() == f"Ctrl+{i + 1}"
        act.trigger()
        assert window.view(name).isVisible()
    file_names = {a.objectName() for a in window.menus["file"].actions()}
    assert {"actionLoadStarterPrompts", "actionImportPrompts", "actionImportPreferences",
            "actionImportDemonstrations", "actionExportPreferences", "actionExportCheckpoint"} <= file_names
    assert [a.objectName() for a in window.menus["dashboard"].actions()] == [
        "actionExportDashboardPNG", "actionExportDashboardSVG", "actionExportDashboardCSV"]
    assert window.minimumSizeHint().width() < 800  # wide views scroll instead of widening the window


def test_load_starter_prompts_action(window):
    action(window, "actionLoadStarterPrompts").trigger()
    count = count_prompts(window.state.project)
    assert count >= 150 and f"Loaded {count} starter prompts" in window.status.currentMessage()
    action(window, "actionLoadStarterPrompts").trigger()
    assert count_prompts(window.state.project) == count and "Loaded 0 " in window.status.currentMessage()


def test_import_prompts_previews_confirms_and_imports(window, monkeypatch, dialogs, tmp_path):
    shown, answer = dialogs
    source = tmp_path / "mine.jsonl"
    source.write_text("\n".join([json.dumps({"prompt": "What is RLHF?"}), json.dumps({"prompt": "Name a prime."}),
                                 "{not json", json.dumps({"text": "no prompt field"})]) + "\n", encoding="utf-8")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(source), ""))
    answer[0] = QMessageBox.StandardButton.No
    action(window, "actionImportPrompts").trigger()
    assert count_prompts(window.state.project) == 0  # the preview wrote nothing and the user said no
    assert "2 prompts to import" in shown[-1].text() and "2 lines with errors" in shown[-1].text()
    assert "line 3:" in shown[-1].detailedText() and "line 4:" in shown[-1].detailedText()
    answer[0] = QMessageBox.StandardButton.Yes
    action(window, "actionImportPrompts").trigger()
    assert count_prompts(window.state.project) == 2
    assert "Imported 2 prompts from mine.jsonl" in window.status.currentMessage()


def test_export_preferences_action_writes_the_chosen_format(window, monkeypatch, tmp_path):
    seed_preferences(window.state.project, n=6)
    out = tmp_path / "out" / "prefs.jsonl"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "JSON Lines (*.jsonl)"))
    action(window, "actionExportPreferences").trigger()
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 6 and {"prompt", "chosen", "rejected"} <= set(rows[0])
    assert "Exported 6 preference pairs" in window.status.currentMessage()


def test_a_reward_run_feeds_the_dashboard_runs_and_rm_report(window, qtbot, tiny_model_dir):
    seed_preferences(window.state.project, n=12, heldout_every=3)
    window.state.set_model(load_model(str(tiny_model_dir)))
    train = window.train
    train.set_stage("rm")
    train.form.set_values({"device": "cpu", "max_length": 160, "per_device_batch_size": 4, "max_steps": 2})
    started: list[int] = []
    train.sig_run_started.connect(lambda _runner, run_id, _stage: started.append(run_id))
    with qtbot.waitSignal(window.rm_report.sig_report_ready, timeout=RUN_MS):
        train.start()
    run_id = started[0]
    assert window.dashboard.current == run_id and window.dashboard.live is None  # the run ended
    assert window.dashboard.ended[run_id] == "done" and "(done)" in window.dashboard.run_label.text()
    assert len(window.dashboard.curve(run_id, "loss").getOriginalDataset()[0]) == 2  # both steps drawn
    assert window.tabs.currentWidget() is window._views["RM Report"][2]
    assert window.rm_report.run_id == run_id and window.rm_report.report.n == 4
    assert window.runs.tree.topLevelItemCount() == 1
