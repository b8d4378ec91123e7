"""The Browse and Demonstrations views (pytest-qt, offscreen) over a real project store."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from PySide6.QtCore import QDate, Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox


@pytest.fixture
def labeled(project):
    from rlhf_desktop.store.labels import add_response, record_label
    from rlhf_desktop.store.prompts import add_prompts

    add_prompts(project, ["How do plants eat?", "Write a haiku.", "What is 2+2?", "Tell a joke.", "Plan a trip."],
                split="train")
    cases = [("left", "", "", "Plants use photosynthesis."), ("right", "", "", "A haiku here."),
             ("tie", "", "", "It is 4."), ("left", "honesty", "", "A joke."), ("both_bad", "", "rambling", "Go.")]
    for pid, (outcome, criterion, note, text) in enumerate(cases, 1):
        a = add_response(project, pid, text, model="m")
        b = add_response(project, pid, f"Another answer {pid}.", model="m")
        record_label(project, pid, a, b, outcome, criterion=criterion, note=note)
    return project


def _answer_question(button: QMessageBox.StandardButton) -> None:
    def poll():
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            box.button(button).click()
        else:
            QTimer.singleShot(20, poll)
    QTimer.singleShot(0, poll)


def _browse(qtbot, project):
    from rlhf_desktop.ui.browse import BrowseView

    view = BrowseView()
    qtbot.addWidget(view)
    view.set_project(project)
    return view


def test_browse_filters_by_outcome_criterion_and_date(qtbot, labeled):
    view = _browse(qtbot, labeled)
    assert view.model.rowCount() == 5 and view.count_label.text() == "5 comparisons"
    view.outcome_box.setCurrentIndex(view.outcome_box.findData("left"))
    assert view.model.rowCount() == 2 and {r["outcome"] for r in view.model.rows} == {"left"}
    view.criterion_box.setCurrentIndex(view.criterion_box.findData("honesty"))
    assert [r["criterion"] for r in view.model.rows] == ["honesty"]
    view.outcome_box.setCurrentIndex(0)
    view.criterion_box.setCurrentIndex(0)
    view.from_date.setDate(QDate.fromString((date.today() + timedelta(days=1)).isoformat(), "yyyy-MM-dd"))
    view.from_check.setChecked(True)
    assert view.model.rowCount() == 0
    view.from_date.setDate(QDate.currentDate())
    assert view.model.rowCount() == 5


def test_browse_full_text_search(qtbot, labeled):
    view = _browse(qtbot, labeled)
    qtbot.keyClicks(view.search, "photosynth")  # a word prefix in a response
    qtbot.waitUntil(lambda: view.model.rowCount() == 1, timeout=5000)
    assert view.model.rows[0]["left_text"] == "Plants use photosynthesis."
    view.search.setText("rambling")  # the note
    qtbot.waitUntil(lambda: [r["note"] for r in view.model.rows] == ["rambling"], timeout=5000)


def test_browse_opens_changes_and_deletes_a_label(qtbot, labeled):
    view = _browse(qtbot, labeled)
    row = next(i for i, r in enumerate(view.model.rows) if r["outcome"] == "tie")
    view.table.selectRow(row)
    assert view.detail.isEnabled() and "It is 4." in view.left_view.toPlainText()
    assert view.edit_outcome.currentData() == "tie"
    view.edit_outcome.setCurrentIndex(view.edit_outcome.findData("right"))
    view.edit_much.setChecked(True)
    view.edit_note.setText("on second thought")
    qtbot.mouseClick(view.save_button, Qt.MouseButton.LeftButton)
    comparison_id = view.model.rows[row]["id"]
    stored = labeled.query("SELECT outcome, strength, note FROM comparisons WHERE id = ?", [comparison_id])[0]
    assert stored == {"outcome": "right", "strength": 2, "note": "on second thought"}
    assert view.model.data(view.model.index(row, 3)) == "right"
    _answer_question(QMessageBox.StandardButton.No)
    view.delete_current()
    assert labeled.counts()["comparisons"] == 5
    _answer_question(QMessageBox.StandardButton.Yes)
    view.delete_current()
    assert labeled.counts()["comparisons"] == 4 and view.model.rowCount() == 4
    assert comparison_id not in [r["id"] for r in view.model.rows]
    assert labeled.counts()["responses"] == 10  # the responses stay


def test_browse_pages_through_many_comparisons(qtbot, project):
    from rlhf_desktop.store.labels import add_response, record_label
    from rlhf_desktop.store.prompts import add_prompts

    add_prompts(project, ["One prompt."], split="train")
    a, b = add_response(project, 1, "a"), add_response(project, 1, "b")
    with project.transaction():
        for _ in range(450):
            record_label(project, 1, a, b, "left")
    view = _browse(qtbot, project)
    assert view.model.rowCount() == 200 and view.model.total == 450
    while view.model.canFetchMore():
        view.model.fetchMore()
    assert view.model.rowCount() == 450


def test_demonstrations_write_edit_delete(qtbot, project):
    from rlhf_desktop.store.prompts import add_prompts
    from rlhf_desktop.ui.demonstrations import DemonstrationsView

    add_prompts(project, ["Explain recursion.", "Say hello in French."], split="train")
    view = DemonstrationsView()
    qtbot.addWidget(view)
    view.set_project(project)
    assert view.prompt_list.count() == 2 and not view.editor_side.isEnabled()
    view.select_prompt(1)
    assert "recursion" in view.prompt_view.toPlainText()
    qtbot.keyClicks(view.editor, "A function that calls itself.")
    qtbot.mouseClick(view.save_button, Qt.MouseButton.LeftButton)
    rows = project.query("SELECT id, prompt_id, text, source FROM demonstrations")
    assert rows == [{"id": 1, "prompt_id": 1, "text": "A function that calls itself.", "source": "written"}]
    view.editor.setPlainText("A function that calls itself on a smaller input.")
    view.save()
    assert project.query("SELECT text FROM demonstrations WHERE id = 1")[0]["text"].endswith("smaller input.")
    view.new_demo()
    view.editor.setPlainText("Recursion: see recursion.")
    view.save()
    assert project.counts()["demonstrations"] == 2 and view.demo_list.count() == 2
    view.missing_only.setChecked(True)
    assert [view.prompt_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(view.prompt_list.count())] == [2]
    view.missing_only.setChecked(False)
    view.select_prompt(1)
    _answer_question(QMessageBox.StandardButton.Yes)
    view.delete()
    assert project.counts()["demonstrations"] == 1 and view.demo_list.count() == 1
