"""The job context: how a long-running plain function reports progress and learns it should stop.

Every long job (model conversion, generation, training) is a plain function taking a context.
The GUI, the CLI and the tests each provide one; the function never knows which.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, Mapping

from rlhf_desktop.core.errors import Cancelled


class JobContext:
    """Thread-safe pause/stop flags plus reporting hooks that subclasses route somewhere.

    The job calls `report`, `status`, `progress`, `samples` and `log`, and checks `should_stop()`
    (or `check()`, which raises Cancelled) at safe points; `wait_if_paused()` blocks while paused.
    The controller (GUI thread, CLI signal handler, a test) calls `pause`, `resume`, `request_stop`.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()

    # -- controller side -------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused job must wake up to see the stop

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    # -- job side --------------------------------------------------------------------------
    def should_stop(self) -> bool:
        return self._stop.is_set()

    def check(self) -> None:
        """Raise Cancelled when a stop was requested."""
        if self._stop.is_set():
            raise Cancelled()

    def wait_if_paused(self, on_pause: Callable[[], None] | None = None) -> bool:
        """Block while paused; return True when the job should stop."""
        if not self._running.is_set():
            if on_pause is not None:
                on_pause()
            self.status("paused")
            while not self._running.wait(0.1):
                pass
            if not self._stop.is_set():
                self.status("resumed")
        return self._stop.is_set()

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        """One training step's metrics: a flat dict of Python floats."""

    def status(self, text: str) -> None:
        """A short human-readable state change ("loading model", "saving checkpoint")."""

    def progress(self, done: float, total: float | None) -> None:
        """Fraction of the job done; total None means unknown (busy indicator)."""

    def samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        """Example outputs at a step (rollouts, evaluation generations)."""

    def log(self, text: str) -> None:
        """A line for the run log."""

    def checkpoint(self, step: int, path: str, kind: str = "adapter",
                   metrics: Mapping[str, float] | None = None) -> None:
        """A checkpoint folder was written completely at `path` (absolute) for `step`."""


class RecordingContext(JobContext):
    """Keeps everything it is told: for tests and for callers that read results afterwards."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.statuses: list[str] = []
        self.progress_values: list[tuple[float, float | None]] = []
        self.sample_rows: list[tuple[int, list[dict[str, Any]]]] = []
        self.lines: list[str] = []
        self.checkpoints: list[tuple[int, str, str]] = []
        self.on_report: Callable[[int, dict[str, float]], None] | None = None

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        self.metrics.append((step, dict(metrics)))
        if self.on_report is not None:
            self.on_report(step, dict(metrics))

    def status(self, text: str) -> None:
        self.statuses.append(text)

    def progress(self, done: float, total: float | None) -> None:
        self.progress_values.append((done, total))

    def samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        self.sample_rows.append((step, list(rows)))

    def log(self, text: str) -> None:
        self.lines.append(text)

    def checkpoint(self, step: int, path: str, kind: str = "adapter",
                   metrics: Mapping[str, float] | None = None) -> None:
        self.checkpoints.append((step, path, kind))


class ConsoleContext(JobContext):
    """Prints progress for the CLI on stderr (stdout stays for results)."""

    def __init__(self, stream=None, every: float = 1.0) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.every = every
        self._last = 0.0

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        shown = " ".join(f"{k}={v:.4g}" for k, v in list(metrics.items())[:8])
        self._print(f"step {step}: {shown}")

    def status(self, text: str) -> None:
        self._print(text)

    def progress(self, done: float, total: float | None) -> None:
        now = time.monotonic()
        if total and (now - self._last >= self.every or done >= total):
            self._last = now
            self._print(f"  {100.0 * done / total:5.1f}%")

    def log(self, text: str) -> None:
        self._print(text)
