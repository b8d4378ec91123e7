"""The labeling view driven by key presses (pytest-qt, offscreen) over a real queue and tiny model."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QPlainTextEdit

from rlhf_desktop.modeling.pairs import PairSettings, save_pair_settings

WAIT_MS = 60_000
SHIFT = Qt.KeyboardModifier.ShiftModifier
NONE = Qt.KeyboardModifier.NoModifier


@pytest.fixture
def prompts(project):
    from rlhf_desktop.store.prompts import add_prompts

    add_prompts(project, [f"Write a line about subject {i}." for i in range(30)], split="train")
    save_pair_settings(project, PairSettings(max_new_tokens=6, queue_depth=3))
    return project


def _open_view(qtbot, project, model):
    from rlhf_desktop.ui.labeling import LabelingView

    view = LabelingView()
    qtbot.addWidget(view)
    view.resize(1100, 700)
    view.show()
    qtbot.waitExposed(view)
    view.activateWindow()
    view.set_project(project)
    view.set_model(model)
    return view


@pytest.fixture
def view(qtbot, prompts, tiny):
    view = _open_view(qtbot, prompts, tiny)
    yield view
    view.shutdown()


def _next_pair(qtbot, view):
    qtbot.waitUntil(lambda: view.current is not None, timeout=WAIT_MS)
    return view.current.pair


def _newest(project):
    return project.query("SELECT * FROM comparisons ORDER BY id DESC LIMIT 1")[0]


def _answer_dialog(qtbot, fill) -> None:
    """Fill the next modal dialog (opened by a key press) from a timer, as a user would."""
    def poll():
        dialog = QApplication.activeModalWidget()
        if dialog is None:
            QTimer.singleShot(20, poll)
        else:
            fill(dialog)
    QTimer.singleShot(0, poll)


def _window_active_again(qtbot, view) -> None:
    """After a modal dialog the view's window is activated again (asynchronously, offscreen)."""
    qtbot.waitUntil(lambda: QApplication.activeWindow() is view.window(), timeout=5000)


KEY_CASES = [
    (Qt.Key.Key_1, NONE, "left", 1), (Qt.Key.Key_Left, NONE, "left", 1),
    (Qt.Key.Key_2, NONE, "right", 1), (Qt.Key.Key_Right, NONE, "right", 1),
    (Qt.Key.Key_1, SHIFT, "left", 2), (Qt.Key.Key_Right, SHIFT, "right", 2),
    (Qt.Key.Key_3, NONE, "tie", 1), (Qt.Key.Key_T, NONE, "tie", 1),
    (Qt.Key.Key_4, NONE, "both_bad", 1), (Qt.Key.Key_B, NONE, "both_bad", 1),
    (Qt.Key.Key_S, NONE, "skipped", 1),
]


def test_each_key_records_its_label_with_the_shown_sides(qtbot, view, prompts):
    for count, (key, modifier, outcome, strength) in enumerate(KEY_CASES, 1):
        pair = _next_pair(qtbot, view)
        qtbot.keyClick(view, key, modifier)
        row = _newest(prompts)
        assert prompts.counts()["comparisons"] == count
        assert (row["outcome"], row["strength"]) == (outcome, strength), key
        assert (row["left_id"], row["right_id"], row["prompt_id"]) == (pair.left_id, pair.right_id, pair.prompt_id)
        assert row["source"] == "label" and row["duration_ms"] >= 0
        assert view.current is None or view.current.pair.pair_key != pair.pair_key
    assert view.stats["total"] == len(KEY_CASES)


def test_mouse_buttons_label_too(qtbot, view, prompts):
    pair = _next_pair(qtbot, view)
    qtbot.mouseClick(view.right.button, Qt.MouseButton.LeftButton)
    assert (_newest(prompts)["outcome"], _newest(prompts)["right_id"]) == ("right", pair.right_id)


def test_undo_is_repeatable_and_shows_the_pair_again(qtbot, view, prompts):
    first = _next_pair(qtbot, view)
    qtbot.keyClick(view, Qt.Key.Key_1)
    second = _next_pair(qtbot, view)
    qtbot.keyClick(view, Qt.Key.Key_2)
    third = _next_pair(qtbot, view)
    assert prompts.counts()["comparisons"] == 2
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert prompts.counts()["comparisons"] == 1
    assert view.current.pair == second  # same sides as before
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert prompts.counts()["comparisons"] == 0 and view.current.pair == first
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # nothing left: no harm
    assert view.current.pair == first
    qtbot.keyClick(view, Qt.Key.Key_4)  # relabel the first pair, then the others come back in order
    assert (_newest(prompts)["outcome"], _newest(prompts)["left_id"]) == ("both_bad", first.left_id)
    assert view.current.pair == second
    qtbot.keyClick(view, Qt.Key.Key_3)
    assert view.current.pair == third


def test_edit_makes_a_demonstration_and_a_preferred_response(qtbot, view, prompts):
    from rlhf_desktop.ui.labeling_dialogs import EditDialog

    pair = _next_pair(qtbot, view)

    def fill(dialog):
        assert isinstance(dialog, EditDialog)
        dialog.right_choice.setChecked(True)
        assert dialog.text() == QPlainTextEdit(pair.right_text).toPlainText()  # as Qt shows it
        dialog.editor.setPlainText("A careful, correct answer.")
        dialog.accept()

    _answer_dialog(qtbot, fill)
    qtbot.keyClick(view, Qt.Key.Key_E)
    _window_active_again(qtbot, view)
    demo = prompts.query("SELECT * FROM demonstrations")
    assert [(d["prompt_id"], d["text"], d["source"]) for d in demo] == [
        (pair.prompt_id, "A careful, correct answer.", "edited")]
    row = _newest(prompts)
    edited = prompts.query("SELECT * FROM responses WHERE id = ?", [row["right_id"]])[0]
    assert row["outcome"] == "right" and row["left_id"] == pair.left_id
    assert (edited["origin"], edited["text"]) == ("edited", "A careful, correct answer.")
    assert view.current is None or view.current.pair != pair
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo the edit: all of it
    assert prompts.counts()["demonstrations"] == 0 and prompts.counts()["comparisons"] == 0
    assert view.current.pair == pair


def test_note_goes_with_the_next_label(qtbot, view, prompts):
    _next_pair(qtbot, view)
    _answer_dialog(qtbot, lambda d: (d.editor.setPlainText("left one is rambling"), d.accept()))
    qtbot.keyClick(view, Qt.Key.Key_N)
    _window_active_again(qtbot, view)
    assert view.current.note == "left one is rambling"
    qtbot.keyClick(view, Qt.Key.Key_2)
    assert _newest(prompts)["note"] == "left one is rambling"


def test_one_choice_per_criterion_before_the_pair_advances(qtbot, prompts, tiny):
    prompts.set_setting("criteria", ["helpfulness", "harmlessness"])
    view = _open_view(qtbot, prompts, tiny)
    try:
        pair = _next_pair(qtbot, view)
        qtbot.keyClick(view, Qt.Key.Key_1)
        assert prompts.counts()["comparisons"] == 0 and view.current.pair == pair
        assert "harmlessness" in view.criterion_label.text()
        qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # back to the first criterion
        qtbot.keyClick(view, Qt.Key.Key_2, SHIFT)
        qtbot.keyClick(view, Qt.Key.Key_3)
        rows = prompts.query("SELECT criterion, outcome, strength, left_id FROM comparisons ORDER BY criterion")
        assert rows == [{"criterion": "harmlessness", "outcome": "tie", "strength": 1, "left_id": pair.left_id},
                        {"criterion": "helpfulness", "outcome": "right", "strength": 2, "left_id": pair.left_id}]
        assert view.current is None or view.current.pair != pair
        qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # both criteria at once
        assert prompts.counts()["comparisons"] == 0 and view.current.pair == pair
    finally:
        view.shutdown()


def test_keys_typed_into_the_guidelines_editor_do_not_label(qtbot, view, prompts):
    _next_pair(qtbot, view)
    view.guidelines.toggle_edit()
    view.guidelines.editor.setFocus()
    view.guidelines.editor.clear()
    qtbot.keyClicks(view.guidelines.editor, "1 2 Be kind")
    assert prompts.counts()["comparisons"] == 0
    view.guidelines.criteria_edit.setText("helpfulness, honesty")
    view.guidelines.toggle_edit()  # save
    assert prompts.get_setting("guidelines") == "1 2 Be kind"
    assert prompts.get_setting("criteria") == ["helpfulness", "honesty"] and view.criteria == ["helpfulness", "honesty"]
    assert "Be kind" in view.guidelines.viewer.toPlainText()
    view.toggle_guidelines()
    assert not view.guidelines.isVisible() and prompts.get_setting("ui.guidelines_visible") is False


def test_empty_project_offers_the_starter_prompts(qtbot, project, tiny):
    view = _open_view(qtbot, project, tiny)
    try:
        assert view.current is None and view.starter_button.isVisible()
        qtbot.mouseClick(view.starter_button, Qt.MouseButton.LeftButton)
        assert project.counts()["prompts"] >= 150
        _next_pair(qtbot, view)
    finally:
        view.shutdown()


def test_view_follows_the_shell_state(qtbot, prompts, tiny):
    from rlhf_desktop.ui.labeling import LabelingView
    from rlhf_desktop.ui.state import AppState

    state = AppState()
    state.project = prompts
    view = LabelingView(state)
    qtbot.addWidget(view)
    assert view.project is prompts and view.current is None
    state.set_model(tiny)
    _next_pair(qtbot, view)
    state.model = None  # the state's own close also closes the project; the test fixture owns it
    view.set_model(None)
    assert not view.queue.running
