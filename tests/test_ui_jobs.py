"""The job runner: plain functions in worker threads, batched reports, cancel, pause, failures."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtWidgets import QMessageBox

from rlhf_desktop.core import paths
from rlhf_desktop.core.errors import DataError
from rlhf_desktop.ui.jobs import JobManager, JobRunner

# Qt warnings fail a test, except two from this environment: the offscreen platform's size hints,
# and font fallback notices when a tiny random model prints bytes of exotic scripts.
pytestmark = [pytest.mark.qt_log_level_fail("WARNING"),
              pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints",
                                        "OpenType support missing")]



@pytest.fixture
def runner(qtbot, data_dir):
    r = JobRunner("test")
    yield r
    r.cancel()
    assert r.wait(10)


@pytest.fixture
def dialogs(monkeypatch):
    """Error dialogs shown (QMessageBox.exec patched so it does not block)."""
    shown: list[QMessageBox] = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: shown.append(box) or 0)
    return shown


def test_result_metrics_progress_and_status_arrive_in_order(qtbot, runner):
    import torch

    def job(ctx, steps):
        ctx.status("working")
        for step in range(steps):
            ctx.report(step, {"loss": torch.tensor(1.0 / (step + 1)), "lr": 0.1})
            ctx.progress(step + 1, steps)
        return {"steps": steps}

    batches, progress, statuses = [], [], []
    runner.sig_metrics.connect(batches.append)
    runner.sig_progress.connect(lambda done, total: progress.append((done, total)))
    runner.sig_status.connect(statuses.append)
    with qtbot.waitSignal(runner.sig_finished, timeout=10_000) as blocker:
        runner.start("count", job, 50)
    assert blocker.args == [{"steps": 50}]
    rows = [row for batch in batches for row in batch]
    assert [step for step, _ in rows] == list(range(50))
    assert all(type(v) is float for _, m in rows for v in m.values())  # tensors became floats
    assert rows[-1][1]["loss"] == pytest.approx(1 / 50)
    assert len(batches) < 50  # drained in batches, not one signal per step
    assert progress[-1] == (50.0, 50.0)
    assert statuses == ["working"]
    assert not runner.running


def test_failure_reports_plain_error_shows_dialog_and_logs(qtbot, runner, dialogs, data_dir):
    def job(ctx):
        raise RuntimeError("boom in the worker")

    with qtbot.waitSignal(runner.sig_failed, timeout=10_000) as blocker:
        runner.start("failing", job)
    info = blocker.args[0]
    assert info["kind"] == "bug" and "RuntimeError: boom in the worker" in info["message"]
    assert "Traceback" in info["traceback"] and "boom in the worker" in info["traceback"]
    assert len(dialogs) == 1
    assert dialogs[0].icon() == QMessageBox.Icon.Critical
    assert "boom in the worker" in dialogs[0].detailedText()
    assert "boom in the worker" in paths.log_file().read_text(encoding="utf-8")


def test_user_error_names_where_and_what_to_do(qtbot, runner, dialogs):
    def job(ctx):
        raise DataError("line 3 has no prompt", where="prompts.jsonl:3", hint="add a 'prompt' field")

    with qtbot.waitSignal(runner.sig_failed, timeout=10_000):
        runner.start("importing", job)
    box = dialogs[0]
    assert box.windowTitle() == "The data has problems"
    assert box.text() == "line 3 has no prompt"
    assert "prompts.jsonl:3" in box.informativeText() and "add a 'prompt' field" in box.informativeText()


def test_on_failed_callback_replaces_the_dialog(qtbot, runner, dialogs):
    seen = []
    with qtbot.waitSignal(runner.sig_failed, timeout=10_000):
        runner.start("failing", lambda ctx: 1 / 0, on_failed=seen.append)
    assert seen[0]["message"].startswith("ZeroDivisionError") and dialogs == []


def test_cancel_is_silent(qtbot, runner, dialogs):
    def job(ctx):
        while True:
            ctx.check()
            time.sleep(0.005)

    cancelled = []
    runner.start("looping", job, on_cancelled=lambda: cancelled.append(True))
    with qtbot.waitSignal(runner.sig_cancelled, timeout=10_000):
        runner.cancel()
    assert cancelled == [True] and dialogs == [] and not runner.running


def test_pause_and_resume(qtbot, runner):
    def job(ctx):
        step = 0
        while not ctx.wait_if_paused():
            ctx.report(step, {"x": float(step)})
            step += 1
            time.sleep(0.002)
        return step

    statuses = []
    runner.sig_status.connect(statuses.append)
    runner.start("pausable", job)
    qtbot.waitSignal(runner.sig_metrics, timeout=10_000).wait()
    with qtbot.waitSignal(runner.sig_status, timeout=10_000, check_params_cb=lambda t: t == "paused"):
        runner.pause()
    assert runner.paused
    with qtbot.waitSignal(runner.sig_status, timeout=10_000, check_params_cb=lambda t: t == "resumed"):
        runner.resume()
    with qtbot.waitSignal(runner.sig_finished, timeout=10_000) as blocker:
        runner.cancel()  # this job returns its step count when asked to stop
    assert blocker.args[0] > 0
    assert "paused" in statuses and "resumed" in statuses


def test_a_retired_jobs_late_signals_never_reach_the_newer_run(qtbot, runner):
    release_old, release_new, old_ended = threading.Event(), threading.Event(), threading.Event()

    def old_job(ctx):
        release_old.wait(10)  # ignores the stop request until released
        ctx.status("old status")
        ctx.report(0, {"old": 1.0})
        old_ended.set()
        return "old"

    def new_job(ctx):
        release_new.wait(10)
        return "new"

    results, statuses, metrics = [], [], []
    runner.sig_finished.connect(results.append)
    runner.sig_status.connect(statuses.append)
    runner.sig_metrics.connect(metrics.append)
    runner.start("old", old_job)
    runner.start("new", new_job)
    release_old.set()  # the old job reports and returns while the new one is running
    assert old_ended.wait(10)
    qtbot.wait(400)  # the old job's queued signals and a few drains are delivered now
    assert runner.running and results == []
    with qtbot.waitSignal(runner.sig_finished, timeout=10_000):
        release_new.set()
    assert results == ["new"]
    assert "old status" not in statuses and metrics == []


def test_manager_slots_are_independent(qtbot, data_dir):
    manager = JobManager()
    gate = threading.Event()
    manager.start("a", "slow", lambda ctx: gate.wait(10))
    with qtbot.waitSignal(manager.runner("b").sig_finished, timeout=10_000) as blocker:
        manager.start("b", "quick", lambda ctx: 42)
    assert blocker.args == [42]
    assert [r.slot for r in manager.running()] == ["a"]
    gate.set()
    assert manager.wait_all(10)
    assert manager.running() == []
