"""The status bar: project, model, device and memory, plus a busy indicator with Cancel."""

from __future__ import annotations

import sys
from typing import Any

import psutil
from PySide6.QtCore import QTimer, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QStatusBar, QToolButton, QWidget

from rlhf_desktop.ui.jobs import JobRunner
from rlhf_desktop.ui.state import AppState

MEMORY_INTERVAL_MS = 2000


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KB'; binary units, one decimal from KB up."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


def cuda_memory() -> tuple[int, int] | None:
    """(allocated, reserved) bytes on the current CUDA device, when torch already uses CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return int(torch.cuda.memory_allocated()), int(torch.cuda.memory_reserved())


class BusyIndicator(QWidget):
    """The running job's name, a progress bar (busy when the total is unknown) and Cancel."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("busyIndicator")
        self.label = QLabel()
        self.bar = QProgressBar()
        self.bar.setFixedWidth(140)
        self.bar.setMaximumHeight(14)
        self.bar.setTextVisible(False)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Stop the running job")
        self.cancel_button.setAutoRaise(True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 6, 0)
        layout.setSpacing(6)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel_button)
        self.runner: JobRunner | None = None
        self.cancel_button.clicked.connect(self._cancel)
        self.hide()

    def show_runner(self, runner: JobRunner | None) -> None:
        """Follow `runner` (None hides the indicator)."""
        self.runner = runner
        if runner is None:
            self.hide()
            return
        self.label.setText(runner.name + ("  (stopping…)" if runner.stopping else ""))
        self.cancel_button.setEnabled(not runner.stopping)
        self.bar.setRange(0, 0)  # busy until the job reports a total
        self.show()

    @Slot(object, float, object)
    def on_progress(self, runner: JobRunner, done: float, total: Any) -> None:
        if runner is not self.runner:
            return
        if total:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * min(1.0, done / total)))
        else:
            self.bar.setRange(0, 0)

    @Slot(object, str)
    def on_status(self, runner: JobRunner, text: str) -> None:
        if runner is self.runner and runner is not None:
            self.label.setText(f"{self.runner.name}: {text}")
            self.cancel_button.setEnabled(not self.runner.stopping)

    def _cancel(self) -> None:
        if self.runner is not None:
            self.runner.cancel()


class AppStatusBar(QStatusBar):
    """Permanent widgets: busy indicator, project, model, device (+dtype), memory (every 2 s)."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.busy = BusyIndicator()
        self.project_label = self._label("projectLabel", "The open project folder")
        self.model_label = self._label("modelLabel", "The loaded model")
        self.device_label = self._label("deviceLabel", "Where the model runs, and its weights' dtype")
        self.memory_label = self._label("memoryLabel", "This process's memory (and GPU memory when used)")
        self.addPermanentWidget(self.busy)
        for label in (self.project_label, self.model_label, self.device_label, self.memory_label):
            self.addPermanentWidget(label)
        state.sig_project_changed.connect(self.on_project)
        state.sig_model_changed.connect(self.on_model)
        state.sig_model_loading.connect(self.on_model_loading)
        state.jobs.sig_busy_changed.connect(self.on_busy)
        state.jobs.sig_progress.connect(self.busy.on_progress)
        state.jobs.sig_status.connect(self.busy.on_status)
        self.on_project(state.project)
        self.on_model(state.model)
        self._timer = QTimer(self)
        self._timer.setInterval(MEMORY_INTERVAL_MS)
        self._timer.timeout.connect(self.update_memory)
        self._timer.start()
        self.update_memory()

    def _label(self, name: str, tip: str) -> QLabel:
        label = QLabel()
        label.setObjectName(name)
        label.setToolTip(tip)
        label.setContentsMargins(8, 0, 8, 0)
        return label

    @Slot(object)
    def on_project(self, project: Any) -> None:
        if project is None:
            self.project_label.setText("No project")
            self.project_label.setToolTip("No project is open (File > Open project)")
        else:
            self.project_label.setText(f"Project: {project.folder.name}")
            self.project_label.setToolTip(str(project.folder))

    @Slot(str)
    def on_model_loading(self, spec: str) -> None:
        self.model_label.setText(f"Loading {spec}…")

    @Slot(object)
    def on_model(self, loaded: Any) -> None:
        if loaded is None:
            self.model_label.setText("No model")
            self.model_label.setToolTip("Load one from the Model menu")
            self.device_label.setText("")
            self.device_label.hide()
            return
        self.model_label.setText(f"Model: {loaded.name}")
        self.model_label.setToolTip(f"{loaded.name}\n{loaded.source} ({loaded.kind})")
        dtype = str(loaded.dtype).removeprefix("torch.")
        self.device_label.setText(f"{loaded.device} · {dtype}")
        self.device_label.setToolTip(_describe_device(loaded.device) + f", weights in {dtype}")
        self.device_label.show()

    @Slot()
    def on_busy(self) -> None:
        running = self.state.jobs.running()
        self.busy.show_runner(running[0] if running else None)
        if not self.state.jobs.runner("model").running:
            self.on_model(self.state.model)  # drop "Loading…" after a failed or cancelled load

    @Slot()
    def update_memory(self) -> None:
        rss = psutil.Process().memory_info().rss
        text = f"RAM {format_bytes(rss)}"
        tip = f"Process memory (RSS): {format_bytes(rss)}"
        gpu = cuda_memory()
        if gpu is not None:
            text += f" · GPU {format_bytes(gpu[0])}"
            tip += f"\nCUDA allocated {format_bytes(gpu[0])}, reserved {format_bytes(gpu[1])}"
        self.memory_label.setText(text)
        self.memory_label.setToolTip(tip)


def _describe_device(device: str) -> str:
    from rlhf_desktop.modeling.device import describe_device  # imports torch: only once a model exists

    return describe_device(device)
