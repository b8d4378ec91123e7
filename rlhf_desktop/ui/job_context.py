"""The job side of `ui.jobs`: a JobContext whose reports reach the UI, and worker-thread setup."""

from __future__ import annotations

import gc
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, Mapping

from rlhf_desktop.core.context import JobContext

if TYPE_CHECKING:
    from rlhf_desktop.ui.jobs import _Worker


class QtJobContext(JobContext):
    """A JobContext whose reports reach the UI. Called from the worker thread only.

    report/progress/stream go to locked buffers drained by the runner's timer; status, log,
    samples and checkpoint are rare and go out as queued signals at once.
    """

    def __init__(self, worker: "_Worker") -> None:
        super().__init__()
        self._worker = worker
        self._lock = threading.Lock()
        self._metrics: list[tuple[int, dict[str, float]]] = []
        self._progress: tuple[float, float | None] | None = None
        self._stream: dict[int, list[str]] = {}

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        row = {str(k): float(v) for k, v in metrics.items()}  # float(): never a tensor across threads
        with self._lock:
            self._metrics.append((int(step), row))

    def progress(self, done: float, total: float | None) -> None:
        with self._lock:
            self._progress = (float(done), None if total is None else float(total))

    def stream(self, row: int, delta: str) -> None:
        """Streamed text for output `row` (e.g. generation's on_token callback)."""
        with self._lock:
            self._stream.setdefault(int(row), []).append(delta)

    def status(self, text: str) -> None:
        self._worker.sig_status.emit(self._worker.job_id, str(text))

    def log(self, text: str) -> None:
        self._worker.sig_log.emit(self._worker.job_id, str(text))

    def samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        self._worker.sig_samples.emit(self._worker.job_id, int(step), [dict(r) for r in rows])

    def checkpoint(self, step: int, path: str, kind: str = "adapter",
                   metrics: Mapping[str, float] | None = None) -> None:
        info = {"step": int(step), "path": str(path), "kind": kind,
                "metrics": {k: float(v) for k, v in (metrics or {}).items()}}
        self._worker.sig_checkpoint.emit(self._worker.job_id, info)

    def drain(self) -> tuple[list[tuple[int, dict[str, float]]], tuple[float, float | None] | None,
                             dict[int, str]]:
        """Take everything buffered since the last drain (GUI thread)."""
        with self._lock:
            metrics, self._metrics = self._metrics, []
            progress, self._progress = self._progress, None
            stream, self._stream = self._stream, {}
        return metrics, progress, {row: "".join(parts) for row, parts in stream.items()}


def prepare_torch_thread() -> None:
    """Leave one core for the GUI (torch's intra-op pool is process wide, so set it once)."""
    torch = sys.modules.get("torch")
    if torch is not None and not getattr(prepare_torch_thread, "done", False):
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
        prepare_torch_thread.done = True  # type: ignore[attr-defined]


def free_memory() -> None:
    """Collect garbage and return cached CUDA memory (after a failure or a model swap)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
