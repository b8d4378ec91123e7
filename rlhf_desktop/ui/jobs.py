"""Running long work off the GUI thread: a plain function `fn(ctx, *args)` in a worker QThread.

A `JobRunner` is one slot: at most one current job. Starting a new job in a busy slot retires
the old one (asked to stop, its late signals ignored by a generation counter), so a stale run never
reaches a newer one. The job's context (`QtJobContext`) buffers metrics, progress and streamed text;
a 150 ms QTimer drains the buffers and emits one signal per batch (not one per step). Every signal
carries plain data. On failure the traceback becomes text, the exception is dropped and memory
freed. Threads are never terminated: closing asks jobs to stop and waits with a timeout.

    runner = JobRunner("generate")
    runner.sig_stream.connect(pane.append_batch)
    runner.start("Generating", generate_job, prompt, on_finished=show_result)
"""

from __future__ import annotations

import time
from typing import Any, Callable

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Signal, Slot
from PySide6.QtWidgets import QWidget

from rlhf_desktop.core.errors import Cancelled
from rlhf_desktop.modeling.stack import import_ml_stack
from rlhf_desktop.ui.errors import error_info, log_error, show_error
from rlhf_desktop.ui.job_context import QtJobContext, free_memory, prepare_torch_thread

__all__ = ["DRAIN_INTERVAL_MS", "JobManager", "JobRunner", "QtJobContext", "free_memory"]

DRAIN_INTERVAL_MS = 150


class _Worker(QObject):
    """Runs one job function in its thread; every signal starts with the job id."""

    sig_status = Signal(int, str)
    sig_log = Signal(int, str)
    sig_samples = Signal(int, int, object)
    sig_checkpoint = Signal(int, object)
    sig_done = Signal(int, object)
    sig_failed = Signal(int, object)
    sig_cancelled = Signal(int)

    def __init__(self, job_id: int, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        super().__init__()
        self.job_id = job_id
        self._call: tuple | None = (fn, args, kwargs)
        self.ctx = QtJobContext(self)

    @Slot()
    def run(self) -> None:
        fn, args, kwargs = self._call  # type: ignore[misc]
        self._call = None  # the job's arguments (models, data) are not kept past the run
        outcome: tuple[str, Any]
        try:
            import_ml_stack()  # one thread at a time imports transformers (see modeling/stack.py)
            prepare_torch_thread()
            outcome = ("done", fn(self.ctx, *args, **kwargs))
        except Cancelled:
            outcome = ("cancelled", None)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a report, the app lives on
            info = error_info(exc)
            del exc  # the exception's frames pin tensors (and GPU memory)
            outcome = ("failed", info)
        del fn, args, kwargs
        if outcome[0] == "failed":
            free_memory()
        # Let the thread's event loop end. The worker stays in its thread: moving it back to the GUI
        # thread from here deadlocked (rarely, on 2 cores) with the GUI thread delivering this
        # object's queued signals. The runner waits for the thread, then drops both (`_end`).
        QThread.currentThread().quit()
        if outcome[0] == "done":
            self.sig_done.emit(self.job_id, outcome[1])
        elif outcome[0] == "failed":
            self.sig_failed.emit(self.job_id, outcome[1])
        else:
            self.sig_cancelled.emit(self.job_id)


class JobRunner(QObject):
    """One job slot. Connect to its signals once; only the current job's signals come through."""

    sig_started = Signal(str)
    """A job started (its name)."""
    sig_status = Signal(str)
    """The job's short status text."""
    sig_progress = Signal(float, object)
    """(done, total or None): the latest progress, at most once per drain."""
    sig_metrics = Signal(object)
    """A batch of (step, {name: float}) reported since the last drain."""
    sig_stream = Signal(object)
    """{row: text} streamed since the last drain."""
    sig_samples = Signal(int, object)
    """(step, rows) example outputs."""
    sig_log = Signal(str)
    """A line for the run log."""
    sig_checkpoint = Signal(object)
    """{step, path, kind, metrics}: a checkpoint was written."""
    sig_finished = Signal(object)
    """The job function returned this result."""
    sig_failed = Signal(object)
    """The job raised: {title, message, where, hint, traceback, kind}."""
    sig_cancelled = Signal()
    """The job stopped on request (raised Cancelled)."""
    sig_running_changed = Signal(bool)
    """The slot became busy (True) or idle (False)."""
    sig_paused_changed = Signal(bool)
    """The current job was paused (True) or resumed (False)."""

    def __init__(self, slot: str = "main", parent: QObject | None = None, *, show_errors: bool = True,
                 interval_ms: int = DRAIN_INTERVAL_MS) -> None:
        super().__init__(parent)
        self.slot = slot
        self.show_errors = show_errors
        self.name = ""
        self._id = 0
        self._current: tuple[QThread, _Worker] | None = None
        self._retired: dict[int, tuple[QThread, _Worker]] = {}
        self._callbacks: dict[str, Callable[..., Any] | None] = {}
        self._started_at = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._drain)

    # -- control (GUI thread) -----------------------------------------------------------------
    def start(self, name: str, fn: Callable[..., Any], *args: Any,
              on_finished: Callable[[Any], None] | None = None,
              on_failed: Callable[[dict], None] | None = None,
              on_cancelled: Callable[[], None] | None = None, **kwargs: Any) -> int:
        """Run `fn(ctx, *args, **kwargs)` in a worker thread; return the job id.

        A job already running in this slot is asked to stop and its later signals are ignored.
        The callbacks fire for this job only, after the matching runner signal.
        """
        if self._current is not None:
            self._retire()
        self._id += 1
        worker = _Worker(self._id, fn, args, kwargs)
        thread = QThread()
        thread.setObjectName(f"job-{self.slot}-{self._id}")
        worker.moveToThread(thread)
        worker.sig_status.connect(self._on_status)
        worker.sig_log.connect(self._on_log)
        worker.sig_samples.connect(self._on_samples)
        worker.sig_checkpoint.connect(self._on_checkpoint)
        worker.sig_done.connect(self._on_done)
        worker.sig_failed.connect(self._on_failed)
        worker.sig_cancelled.connect(self._on_cancelled)
        thread.started.connect(worker.run)
        self._current = (thread, worker)
        self._callbacks = {"finished": on_finished, "failed": on_failed, "cancelled": on_cancelled}
        self.name = name
        self._started_at = time.monotonic()
        thread.start()
        self._timer.start()
        self.sig_started.emit(name)
        self.sig_running_changed.emit(True)
        return self._id

    def cancel(self) -> None:
        """Ask the current job to stop at its next check; it reports cancelled (or its result)."""
        if self._current is not None:
            self._current[1].ctx.request_stop()
            self.sig_status.emit("stopping…")

    def pause(self) -> None:
        if self._current is not None and not self.paused:
            self._current[1].ctx.pause()
            self.sig_paused_changed.emit(True)

    def resume(self) -> None:
        if self._current is not None and self.paused:
            self._current[1].ctx.resume()
            self.sig_paused_changed.emit(False)

    def wait(self, timeout_s: float = 10.0) -> bool:
        """Wait (processing events) until this slot's threads have ended; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._threads():
            if time.monotonic() >= deadline:
                return False
            for thread in self._threads():
                thread.wait(20)
            QCoreApplication.processEvents()
        return True

    # -- state --------------------------------------------------------------------------------
    @property
    def job_id(self) -> int:
        return self._id

    @property
    def running(self) -> bool:
        return self._current is not None

    @property
    def paused(self) -> bool:
        return self._current is not None and self._current[1].ctx.paused

    @property
    def stopping(self) -> bool:
        return self._current is not None and self._current[1].ctx.should_stop()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started_at if self._current is not None else 0.0

    def _threads(self) -> list[QThread]:
        found = [t for t, _ in self._retired.values()]
        return found + ([self._current[0]] if self._current is not None else [])

    # -- plumbing -----------------------------------------------------------------------------
    def _retire(self) -> None:
        thread, worker = self._current  # type: ignore[misc]
        worker.ctx.request_stop()
        self._retired[worker.job_id] = (thread, worker)
        self._current = None
        self._callbacks = {}

    def _dialog_parent(self) -> QWidget | None:
        parent = self.parent()
        while parent is not None and not isinstance(parent, QWidget):
            parent = parent.parent()
        return parent

    def _is_current(self, job_id: int) -> bool:
        return self._current is not None and job_id == self._current[1].job_id

    @Slot()
    def _drain(self) -> None:
        if self._current is None:
            return
        metrics, progress, stream = self._current[1].ctx.drain()
        if progress is not None:
            self.sig_progress.emit(progress[0], progress[1])
        if metrics:
            self.sig_metrics.emit(metrics)
        if stream:
            self.sig_stream.emit(stream)

    @Slot(int, str)
    def _on_status(self, job_id: int, text: str) -> None:
        if self._is_current(job_id):
            self.sig_status.emit(text)

    @Slot(int, str)
    def _on_log(self, job_id: int, text: str) -> None:
        if self._is_current(job_id):
            self.sig_log.emit(text)

    @Slot(int, int, object)
    def _on_samples(self, job_id: int, step: int, rows: object) -> None:
        if self._is_current(job_id):
            self.sig_samples.emit(step, rows)

    @Slot(int, object)
    def _on_checkpoint(self, job_id: int, info: object) -> None:
        if self._is_current(job_id):
            self.sig_checkpoint.emit(info)

    def _end(self, job_id: int) -> tuple[bool, dict]:
        """Reap the job's thread; return (was current, its callbacks)."""
        if not self._is_current(job_id):
            entry = self._retired.pop(job_id, None)
            if entry is not None:
                entry[0].wait()  # the worker already quit its loop: this returns at once
            return False, {}
        self._drain()  # everything the job buffered arrives before its end
        thread, _worker = self._current  # type: ignore[misc]
        thread.wait()
        callbacks, self._callbacks, self._current = self._callbacks, {}, None
        self._timer.stop()
        self.sig_running_changed.emit(False)
        return True, callbacks

    @Slot(int, object)
    def _on_done(self, job_id: int, result: object) -> None:
        current, callbacks = self._end(job_id)
        if current:
            self.sig_finished.emit(result)
            if callbacks.get("finished"):
                callbacks["finished"](result)

    @Slot(int, object)
    def _on_failed(self, job_id: int, info: object) -> None:
        current, callbacks = self._end(job_id)
        if not current:
            log_error(info)  # type: ignore[arg-type]
            return
        self.sig_failed.emit(info)
        if callbacks.get("failed"):
            log_error(info)  # type: ignore[arg-type]
            callbacks["failed"](info)
        elif self.show_errors:
            show_error(self._dialog_parent(), info)  # type: ignore[arg-type]
        else:
            log_error(info)  # type: ignore[arg-type]

    @Slot(int)
    def _on_cancelled(self, job_id: int) -> None:
        current, callbacks = self._end(job_id)
        if current:
            self.sig_cancelled.emit()
            if callbacks.get("cancelled"):
                callbacks["cancelled"]()


class JobManager(QObject):
    """Named job slots ("model", "generate", "train", ...), created on first use."""

    sig_busy_changed = Signal()
    """Some slot started or ended a job."""
    sig_progress = Signal(object, float, object)
    """(runner, done, total or None) relayed from every slot."""
    sig_status = Signal(object, str)
    """(runner, status text) relayed from every slot."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._runners: dict[str, JobRunner] = {}
        self._order: list[str] = []  # slots by most recent start

    def runner(self, slot: str) -> JobRunner:
        """The runner for `slot`, created on first use."""
        if slot not in self._runners:
            self.adopt(JobRunner(slot, self))
        return self._runners[slot]

    def adopt(self, runner: JobRunner) -> JobRunner:
        """Track a runner created elsewhere (a view's own), so the status bar and closing see it."""
        if runner in self._runners.values():
            return runner
        slot, n = runner.slot, 2
        while slot in self._runners:
            slot, n = f"{runner.slot}#{n}", n + 1
        self._runners[slot] = runner
        runner.sig_running_changed.connect(lambda _on, s=slot: self._changed(s))
        runner.sig_progress.connect(lambda done, total, r=runner: self.sig_progress.emit(r, done, total))
        runner.sig_status.connect(lambda text, r=runner: self.sig_status.emit(r, text))
        runner.destroyed.connect(lambda *_, s=slot: self._forget(s))
        return runner

    def start(self, slot: str, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
        return self.runner(slot).start(name, fn, *args, **kwargs)

    def running(self) -> list[JobRunner]:
        """Busy slots, the most recently started first."""
        return [self._runners[s] for s in self._order if s in self._runners and self._runners[s].running]

    def runners(self) -> list[JobRunner]:
        return list(self._runners.values())

    def cancel_all(self) -> None:
        for runner in self._runners.values():
            runner.cancel()

    def wait_all(self, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        return all(r.wait(max(0.0, deadline - time.monotonic())) for r in list(self._runners.values()))

    def _forget(self, slot: str) -> None:
        self._runners.pop(slot, None)
        if slot in self._order:
            self._order.remove(slot)

    def _changed(self, slot: str) -> None:
        if slot in self._order:
            self._order.remove(slot)
        self._order.insert(0, slot)
        self.sig_busy_changed.emit()
