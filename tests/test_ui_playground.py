"""The Playground with a tiny real model offscreen: streaming, stop, n answers, a screenshot."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from rlhf_desktop.ui.main_window import MainWindow

# Qt warnings fail a test, except two from this environment: the offscreen platform's size hints,
# and font fallback notices when a tiny random model prints bytes of exotic scripts.
pytestmark = [pytest.mark.qt_log_level_fail("WARNING"),
              pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints",
                                        "OpenType support missing")]
TIMEOUT_MS = 60_000


@pytest.fixture
def window(qtbot, data_dir, tiny_model_dir):
    """A main window with the tiny model loaded (settings and log in this test's folder)."""
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    with qtbot.waitSignal(w.state.sig_model_changed, timeout=TIMEOUT_MS):
        w.load_model(tiny_model_dir)
    yield w
    w.state.jobs.cancel_all()
    assert w.state.jobs.wait_all(10)


def set_options(view, **values):
    for key, value in values.items():
        view.spins[key].setValue(value)


def hold_mid_generation(view, qtbot):
    """Start generating, then hold the worker blocked (paused) after it streamed some text.

    The generation checks for pause at every step (before that step's token is streamed), so after
    pause -> resume -> pause it is blocked again with at least one token streamed.
    """
    statuses = []
    view.runner.sig_status.connect(statuses.append)
    view.generate()
    view.runner.pause()
    qtbot.waitUntil(lambda: statuses.count("paused") == 1, timeout=TIMEOUT_MS)
    view.runner.resume()
    qtbot.waitUntil(lambda: statuses.count("resumed") == 1, timeout=TIMEOUT_MS)
    view.runner.pause()
    qtbot.waitUntil(lambda: statuses.count("paused") == 2, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: view.panes[0].toPlainText() != "", timeout=TIMEOUT_MS)  # the next drain


def test_answer_streams_in_while_the_job_runs(window, qtbot):
    view = window.playground
    set_options(view, temperature=0.0, max_new_tokens=600, n=1)
    view.prompt_edit.setPlainText("How do I make a cake?")
    batches = []
    view.runner.sig_stream.connect(batches.append)
    hold_mid_generation(view, qtbot)
    assert view.runner.running and view.runner.paused  # text shown while the job is blocked mid-way
    partial = view.panes[0].toPlainText()
    assert not view.generate_button.isEnabled() and view.stop_button.isEnabled()
    with qtbot.waitSignal(view.sig_generation_finished, timeout=TIMEOUT_MS) as blocker:
        view.runner.resume()
    result = blocker.args[0]
    assert len(batches) >= 2
    assert result["answers"][0].startswith(partial) and len(result["answers"][0]) > len(partial)
    assert "".join(b.get(0, "") for b in batches) == result["answers"][0] == view.panes[0].toPlainText()
    assert result["tokens"] > 0 and "tokens/s" in view.stats_label.text()
    assert view.generate_button.isEnabled() and not view.stop_button.isEnabled()


def test_ctrl_enter_generates_n_answers_in_tabs(window, qtbot):
    view = window.playground
    set_options(view, temperature=1.0, max_new_tokens=12, n=3, seed=7)
    view.system_edit.setPlainText("Be brief.")
    view.prompt_edit.setFocus()
    with qtbot.waitSignal(view.sig_generation_finished, timeout=TIMEOUT_MS) as blocker:
        qtbot.keyClick(view.prompt_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    answers = blocker.args[0]["answers"]
    assert len(answers) == 3 and view.answer_tabs.count() == 3
    assert [view.answer_tabs.tabText(i) for i in range(3)] == ["Answer 1", "Answer 2", "Answer 3"]
    assert [p.toPlainText() for p in view.panes[:3]] == answers


def test_stop_cancels_generation_and_keeps_partial_text(window, qtbot):
    view = window.playground
    set_options(view, temperature=0.0, max_new_tokens=600, n=1)
    hold_mid_generation(view, qtbot)  # so Stop surely lands before the end
    with qtbot.waitSignal(view.runner.sig_cancelled, timeout=TIMEOUT_MS):
        qtbot.mouseClick(view.stop_button, Qt.MouseButton.LeftButton)
    assert view.stats_label.text() == "Stopped"
    assert view.panes[0].toPlainText() != "" and not view.runner.running
    assert view.generate_button.isEnabled()


def test_generate_is_disabled_without_a_model(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_DESKTOP_DATA", str(tmp_path / "data"))
    w = MainWindow()
    qtbot.addWidget(w)
    assert not w.playground.generate_button.isEnabled()
    assert w.playground.generate() is None
    assert "Load a model" in w.playground.hint_label.text()


def test_screenshot_of_the_main_window(window, qtbot, tmp_path):
    view = window.playground
    set_options(view, temperature=0.0, max_new_tokens=40, n=1)
    with qtbot.waitSignal(view.sig_generation_finished, timeout=TIMEOUT_MS):
        view.generate()
    window.resize(1200, 800)
    image = window.grab().toImage()
    path = tmp_path / "main-window.png"
    assert image.save(str(path)) and path.stat().st_size > 10_000
    assert (image.width(), image.height()) == (1200, 800)
