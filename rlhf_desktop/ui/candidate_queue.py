"""The candidate queue: a background worker keeps N labeling pairs ready so the operator never waits.

The worker lives in its own QThread with its own Project connection (an SQLite connection belongs
to one thread) and a reference to the loaded model. It first takes pairs generated earlier and
never labeled (`pending_pairs`), then generates batches of `prompts_per_batch` new pairs with
`fill_pairs` whenever ready + in transit < depth (on a CPU, batching is what keeps generation ahead
of an operator: see bench/labeling_ui.py). With a ranking in the settings (uncertainty or
disagreement, once a reward model exists) it loads that reward model once and keeps the best pairs
of a larger pool instead (training/sampling_strategies.py). It pauses when the operator has not labeled for `idle_stop_s`, and stops, mid
generation, on a model change or on close. The GUI side only ever touches the ready deque.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QVBoxLayout, QWidget

from rlhf_desktop.core.context import JobContext
from rlhf_desktop.core.errors import Cancelled
from rlhf_desktop.modeling.pairs import PairSettings, ReadyPair, pending_pairs
from rlhf_desktop.modeling.stack import import_ml_stack
from rlhf_desktop.training.sampling_strategies import fill_for_settings, load_scorers
from rlhf_desktop.ui.config_form import ConfigForm
from rlhf_desktop.ui.errors import error_info, log_error


class _Demand:
    """What the worker should do, shared between the GUI thread and the worker (under a lock)."""

    def __init__(self, depth: int, idle_s: float) -> None:
        self.cond = threading.Condition()
        self.depth = depth
        self.idle_s = idle_s
        self.ready = 0  # pairs in the GUI's deque
        self.in_transit = 0  # emitted by the worker, not yet received by the GUI
        self.last_activity = time.monotonic()
        self.shown_keys: set[str] = set()  # pair keys the GUI holds (never handed out twice)

    def wanted(self) -> int:
        return self.depth - self.ready - self.in_transit

    def idle(self) -> bool:
        return time.monotonic() - self.last_activity > self.idle_s


class _QueueWorker(QObject):
    """Fills the queue in its thread until stopped; every signal carries plain data."""

    sig_pair = Signal(int, object)
    """(worker token, ReadyPair already stored) for the GUI's deque."""
    sig_status = Signal(int, str)
    """(token, 'generating' | 'ready' | 'paused: operator idle' | 'no prompts left to pair')."""
    sig_failed = Signal(int, object)
    """(token, {title, message, where, hint, traceback, kind}): the worker stopped on an error."""
    sig_finished = Signal(int)
    """(token): the worker left its loop (stopped, failed or out of prompts)."""

    def __init__(self, token: int, folder: Path, loaded: Any, settings: PairSettings, demand: _Demand,
                 checkpoint_id: int | None) -> None:
        super().__init__()
        self.token = token
        self.folder = folder
        self.loaded = loaded
        self.settings = settings
        self.demand = demand
        self.checkpoint_id = checkpoint_id
        self.ctx = JobContext()
        self._exclude: set[int] = set()  # prompts whose candidates stayed identical
        self._emitted: set[str] = set()  # pair keys this worker handed out
        self._scorers: list | None = None  # reward models of the settings' ranking, loaded on first use

    @Slot()
    def run(self) -> None:
        from rlhf_desktop.store import Project

        project = None
        try:
            import_ml_stack()  # one thread at a time imports transformers (see modeling/stack.py)
            torch = sys.modules["torch"]  # leave a core for the GUI (the shell's jobs do the same)
            torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
            project = Project.open(self.folder)
            self._loop(project)
        except Cancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported to the GUI, the app lives on
            info = error_info(exc)
            del exc
            self.sig_failed.emit(self.token, info)
        finally:
            if project is not None:
                project.close()
            self.loaded = None
            # Let the thread's event loop end (sig_finished is direct to quit). The worker stays in
            # its thread (moving it back to the GUI thread from here can deadlock with the GUI
            # delivering its queued signals); the queue drops it once the thread has ended.
            self.sig_finished.emit(self.token)

    def _emit(self, pair: ReadyPair) -> None:
        self._emitted.add(pair.pair_key)
        with self.demand.cond:
            self.demand.in_transit += 1
        self.sig_pair.emit(self.token, pair)

    def _loop(self, project) -> None:
        model = getattr(self.loaded, "name", "") or ""
        state = ""
        while not self.ctx.should_stop():
            with self.demand.cond:
                want = self.demand.wanted()
                if want <= 0 or self.demand.idle():
                    new = "paused: operator idle" if want > 0 else "ready"
                    if new != state:
                        state = new
                        self.sig_status.emit(self.token, state)
                    self.demand.cond.wait(0.25)
                    continue
                skip = self.demand.shown_keys | self._emitted
            # Pairs stored earlier and never labeled (a previous session, `generate-pairs`) go first.
            stored = pending_pairs(project, model, limit=want, exclude_keys=skip)
            for pair in stored:
                self._emit(pair)
            if stored:
                continue
            if self.settings.ranking != "none" and self._scorers is None:
                self.sig_status.emit(self.token, f"loading reward model for {self.settings.ranking} ranking")
                self._scorers = load_scorers(project, self.settings.ranking, self.ctx)  # once per worker
            state = "generating" if self.settings.ranking == "none" else f"generating ({self.settings.ranking})"
            self.sig_status.emit(self.token, state)
            # Always a full batch, even when fewer are wanted: the batch costs little more than one
            # pair, and extra pairs are stored (never lost), so the deque may end above its depth.
            report = fill_for_settings(project, self.loaded, self.settings.prompts_per_batch, self.settings,
                                       scorers=self._scorers or (), checkpoint_id=self.checkpoint_id,
                                       ctx=self.ctx, on_pair=self._emit, exclude=self._exclude)
            if report.pairs == 0 and not self.ctx.should_stop():
                self.sig_status.emit(self.token, "no prompts left to pair")
                return


class CandidateQueue(QObject):
    """Ready pairs for the labeling view, refilled by a worker thread. GUI thread only."""

    sig_depth_changed = Signal(int)
    """The number of ready pairs changed."""
    sig_pair_arrived = Signal()
    """A new pair reached the deque (a waiting view can show it now)."""
    sig_status = Signal(str)
    """The worker's state in a few words."""
    sig_failed = Signal(object)
    """The worker stopped on an error: {title, message, where, hint, traceback, kind}."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ready: collections.deque[ReadyPair] = collections.deque()
        self._thread: QThread | None = None
        self._worker: _QueueWorker | None = None
        self._retired: list[tuple[QThread, _QueueWorker]] = []
        self._token = 0
        self._taken: set[str] = set()  # keys of pairs handed to the view (never handed out twice)
        self.settings = PairSettings()
        self._demand = _Demand(self.settings.queue_depth, self.settings.idle_stop_s)
        self.folder: Path | None = None
        self.loaded: Any = None
        self.checkpoint_id: int | None = None
        self.status = "stopped"

    # -- configuration ------------------------------------------------------------------------
    def configure(self, folder: str | Path | None, loaded: Any, settings: PairSettings | None = None,
                  checkpoint_id: int | None = None) -> None:
        """Point the queue at a project and a model; restarts the worker when both are set.

        Ready pairs from another project or model are dropped from the deque (they stay stored
        and come back through `pending_pairs` when that model is loaded again).
        """
        folder = Path(folder) if folder is not None else None
        changed = folder != self.folder or loaded is not self.loaded
        self.stop()
        if changed:
            self._ready.clear()
            if folder != self.folder:
                self._taken.clear()
            self._sync_ready()
        self.folder, self.loaded, self.checkpoint_id = folder, loaded, checkpoint_id
        if settings is not None:
            self.settings = settings
        if folder is not None and loaded is not None:
            self.start()

    def start(self) -> None:
        """Start (or restart) the worker for the configured project and model."""
        if self._worker is not None or self.folder is None or self.loaded is None:
            return
        with self._demand.cond:
            self._demand.depth = self.settings.queue_depth
            self._demand.idle_s = self.settings.idle_stop_s
            self._demand.in_transit = 0
            self._demand.last_activity = time.monotonic()
        checkpoint = self.checkpoint_id if self.checkpoint_id is not None else getattr(self.loaded, "checkpoint_id", None)
        self._token += 1
        worker = _QueueWorker(self._token, self.folder, self.loaded, self.settings, self._demand, checkpoint)
        thread = QThread()
        thread.setObjectName("candidate-queue")
        worker.moveToThread(thread)
        worker.sig_pair.connect(self._on_pair)
        worker.sig_status.connect(self._on_worker_status)
        worker.sig_failed.connect(self._on_failed)
        worker.sig_finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        worker.sig_finished.connect(self._on_finished)
        thread.started.connect(worker.run)
        self._thread, self._worker = thread, worker
        thread.start()
        self._on_status("starting")

    def stop(self, timeout_ms: int = 10_000) -> bool:
        """Ask the worker to stop (mid generation) and wait for its thread; False on timeout."""
        if self._worker is None:
            return True
        thread, worker = self._thread, self._worker
        self._thread = self._worker = None
        worker.ctx.request_stop()
        with self._demand.cond:
            self._demand.cond.notify_all()
        self._token += 1  # pairs still in transit are ignored; they stay stored as pending pairs
        done = thread.wait(timeout_ms)
        if not done:
            self._retired.append((thread, worker))  # never terminated; reaped on a later stop
            log_error({"title": "Candidate queue", "message": "the worker did not stop in time"})
        self._retired = [(t, w) for t, w in self._retired if not t.wait(0)]
        self._on_status("stopped")
        return done

    @property
    def running(self) -> bool:
        return self._worker is not None

    # -- the deque ----------------------------------------------------------------------------
    def depth(self) -> int:
        return len(self._ready)

    def pop(self) -> ReadyPair | None:
        """The next ready pair, or None when the queue is empty."""
        pair = self._ready.popleft() if self._ready else None
        if pair is not None and pair.pair_key:
            self._taken.add(pair.pair_key)
        self._sync_ready()
        return pair

    def push_front(self, pair: ReadyPair) -> None:
        """Put a pair back at the head (the view showed it, then undo brought back an older one)."""
        self._ready.appendleft(pair)
        self._taken.discard(pair.pair_key)
        self._sync_ready()

    def mark_shown(self, pair: ReadyPair) -> None:
        """A pair reached the screen by another way (undo): the worker must not hand it out again."""
        if pair.pair_key and pair.pair_key not in self._taken:
            self._taken.add(pair.pair_key)
            self._sync_ready()

    def note_activity(self) -> None:
        """The operator labeled: wake a worker paused for idleness."""
        with self._demand.cond:
            self._demand.last_activity = time.monotonic()
            self._demand.cond.notify_all()

    def _sync_ready(self) -> None:
        with self._demand.cond:
            self._demand.ready = len(self._ready)
            self._demand.shown_keys = {p.pair_key for p in self._ready if p.pair_key} | self._taken
            self._demand.cond.notify_all()
        self.sig_depth_changed.emit(len(self._ready))

    @Slot(int, object)
    def _on_pair(self, token: int, pair: ReadyPair) -> None:
        if token != self._token:
            return
        with self._demand.cond:
            self._demand.in_transit = max(0, self._demand.in_transit - 1)
        self._ready.append(pair)
        self._sync_ready()
        self.sig_pair_arrived.emit()

    @Slot(str)
    def _on_status(self, text: str) -> None:
        self.status = text
        self.sig_status.emit(text)

    @Slot(int, str)
    def _on_worker_status(self, token: int, text: str) -> None:
        if token == self._token:
            self._on_status(text)

    @Slot(int, object)
    def _on_failed(self, token: int, info: dict) -> None:
        log_error(info)
        if token != self._token:
            return
        self._on_status(f"stopped: {info.get('message', 'error')}")
        self.sig_failed.emit(info)

    @Slot(int)
    def _on_finished(self, token: int) -> None:
        if token == self._token and self._thread is not None:
            self._thread.wait(5000)  # the worker has left run(): this returns at once
            self._thread = self._worker = None


class PairSettingsDialog(QDialog):
    """Edit the project's PairSettings (sampling of candidates, queue depth, ranking): a ConfigForm."""

    def __init__(self, settings: PairSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Pair generation settings")
        self.form = ConfigForm()
        self.form.set_class(PairSettings, dataclasses.asdict(settings))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form)
        layout.addWidget(buttons)

    def result_settings(self) -> PairSettings:
        """The edited settings, validated (ConfigError names the field to change)."""
        return self.form.config()
