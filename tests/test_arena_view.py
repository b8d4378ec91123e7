"""The evaluation arena driven by key presses (pytest-qt, offscreen) and the Export checkpoint dialog."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMessageBox

from rlhf_desktop.store import runs
from rlhf_desktop.store.labels import label_stats
from rlhf_desktop.store.project import Project
from rlhf_desktop.training.common import ModelRef
from rlhf_desktop.training.runner import start_run
from rlhf_desktop.ui.arena import RESULTS, SETUP, VOTE, ArenaView
from rlhf_desktop.ui.export_dialog import ExportDialog, open_export_dialog
from test_training_support import one_thread, seed_preferences  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = {"device": "cpu", "max_length": 160, "per_device_batch_size": 4, "save_every": 2, "max_steps": 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """A project with held-out prompts, an SFT run (a policy checkpoint) and a reward-model run."""
    folder = tmp_path_factory.mktemp("arena") / "proj"
    with Project.create(folder) as project:
        seed_preferences(project, n=12, heldout_every=3)  # 4 held-out prompts
    sft = start_run(folder, "sft", {**FAST, "learning_rate": 0.05}, ModelRef(str(tiny_model_dir)))
    rm = start_run(folder, "rm", FAST, ModelRef(str(tiny_model_dir)))
    assert (sft.status, rm.status) == ("done", "done")
    return {"folder": folder, "sft": sft.run_id, "rm": rm.run_id}


def _visible_text(widget) -> str:
    return " ".join(w.text() for w in widget.findChildren(QLabel) if w.isVisible())


def test_arena_blind_votes_by_keys_and_results_with_identities(qtbot, trained):
    project = Project.open(trained["folder"])
    view = ArenaView()
    qtbot.addWidget(view)
    view.set_project(project)
    view.show()
    labels = [view.model_a.itemText(i) for i in range(view.model_a.count())]
    assert labels[0].startswith("base: ") and view.model_b.currentText() == f"run {trained['sft']} SFT step 2"
    assert view.reward_combo.currentText() == f"run {trained['rm']} RM step 2"
    view.count_spin.setValue(3)
    view.tokens_spin.setValue(6)
    with qtbot.waitSignal(view.runner.sig_finished, timeout=120_000):
        assert view.start_arena() is not None
    assert view.pages.currentIndex() == VOTE and len(view.items) == 3
    shown = _visible_text(view)
    assert "Pair 1 of 3" in shown.replace("<b>", "").replace("</b>", "")
    assert view.model_a.currentText() not in shown and view.model_b.currentText() not in shown  # blind
    view.items[0]["a_left"], view.items[1]["a_left"] = True, False  # fix the shuffle to check the mapping
    view._show_item()
    qtbot.keyClick(view, Qt.Key.Key_1)                    # left = A wins
    qtbot.keyClick(view, Qt.Key.Key_Right)                # right = A wins (A is on the right)
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo the second vote
    assert view.index == 1 and view.pages.currentIndex() == VOTE
    qtbot.keyClick(view, Qt.Key.Key_Left)                 # left = B wins this time
    with qtbot.waitSignal(view.sig_results, timeout=5000) as done:
        qtbot.keyClick(view, Qt.Key.Key_T)                # tie
    results = done.args[0]
    assert view.pages.currentIndex() == RESULTS
    assert results["votes"] == 3 and results["stats"]["win"]["count"] == 1 and results["stats"]["loss"]["count"] == 1
    assert results["stats"]["tie"]["count"] == 1
    assert set(results["auto"]) == {"a", "b"} and results["auto"]["a"]["kl_mean"] == 0.0
    assert results["auto"]["b"]["reward_mean"] is not None and results["auto"]["b"]["kl_mean"] != 0.0
    revealed = _visible_text(view)
    assert view.model_a.currentText() in revealed and view.model_b.currentText() in revealed
    assert view.rates_table.item(0, 0).text() == "33.3%"  # A wins 1 of 3
    stats = label_stats(project, source="arena")
    assert stats["total"] == 3 and stats["by_strategy"] == {"arena": 3}  # stored as comparisons
    rows = project.query("SELECT c.left_id, r.text, json_extract(r.gen_config, '$.side') AS side FROM comparisons c "
                         "JOIN responses r ON r.id = c.left_id WHERE c.source = 'arena' ORDER BY c.id")
    assert [r["side"] for r in rows[:2]] == ["a", "b"]  # the recorded placement is the shown one
    view.new_arena()
    assert view.pages.currentIndex() == SETUP
    project.close()


def test_arena_refuses_the_same_model_twice(qtbot, trained, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: shown.append(box.text()) or 0)
    project = Project.open(trained["folder"])
    view = ArenaView()
    qtbot.addWidget(view)
    view.set_project(project)
    view.model_b.setCurrentIndex(view.model_a.currentIndex())
    assert view.start_arena() is None and "the same" in shown[0]
    project.close()


def test_export_dialog_exports_in_a_worker_and_asks_before_overwriting(qtbot, trained, tmp_path, monkeypatch):
    dialog = ExportDialog(trained["folder"])
    qtbot.addWidget(dialog)
    assert dialog.run_combo.currentData() == trained["rm"]  # the newest run
    assert [dialog.kind_combo.itemData(i) for i in range(dialog.kind_combo.count())] == ["reward", "adapter"]
    dialog.run_combo.setCurrentIndex(0)
    assert dialog.kind_combo.currentData() == "merged"
    assert dialog.out_edit.text().endswith(f"exports/run-{trained['sft']}-step-2-merged")
    out = tmp_path / "merged"
    dialog.out_edit.setText(str(out))
    dialog._on_out_edited(str(out))
    with qtbot.waitSignal(dialog.sig_exported, timeout=60_000) as done:
        dialog.start_export()
    assert done.args[0]["path"] == str(out.resolve()) and (out / "model.safetensors").is_file()
    assert dialog.progress.value() == 1000 and "Exported" in dialog.status.text()
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.No)
    assert dialog.start_export() is None and str(out) in asked[0]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    dialog.kind_combo.setCurrentIndex(1)  # adapter, into the same folder
    with qtbot.waitSignal(dialog.sig_exported, timeout=60_000) as done:
        dialog.start_export()
    assert "adapter_model.safetensors" in done.args[0]["files"] and not (out / "model.safetensors").exists()


def test_export_dialog_reports_a_full_disk_and_leaves_nothing(qtbot, trained, tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full)
    shown = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: shown.append(box.text()) or 0)
    dialog = open_export_dialog(None, trained["folder"])
    qtbot.addWidget(dialog)
    dialog.run_combo.setCurrentIndex(0)
    dialog.out_edit.setText(str(tmp_path / "out"))
    with qtbot.waitSignal(dialog.runner.sig_failed, timeout=60_000):
        dialog.start_export()
    assert "disk is full" in dialog.status.text() and any("disk is full" in text for text in shown)
    assert list(Path(tmp_path).iterdir()) == []
    dialog.close()


def test_open_export_dialog_without_a_project_says_so(qtbot, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: shown.append(box.text()) or 0)
    assert open_export_dialog(None, None) is None and "no project" in shown[0]
