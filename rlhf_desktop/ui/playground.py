"""The Playground view: type a prompt, set sampling options, watch the answers stream in."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QFont, QKeySequence, QShortcut, QTextCursor
from PySide6.QtWidgets import (QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPlainTextEdit,
                               QPushButton, QSpinBox, QSplitter, QTabWidget, QVBoxLayout, QWidget)

from rlhf_desktop.core.context import JobContext
from rlhf_desktop.ui import settings
from rlhf_desktop.ui.state import AppState

DEFAULT_PROMPT = "How do I make a cake?"
# (key, label, minimum, maximum, step, decimals or None for ints, default, tooltip)
OPTIONS = [
    ("temperature", "Temperature", 0.0, 2.0, 0.05, 2, 0.7, "0 always picks the likeliest token (deterministic)"),
    ("top_p", "Top-p", 0.01, 1.0, 0.05, 2, 0.9, "Sample from the smallest set of tokens holding this much probability"),
    ("top_k", "Top-k", 0, 1000, 5, None, 50, "Sample from this many likeliest tokens (0: no limit)"),
    ("repetition_penalty", "Repetition penalty", 0.5, 2.0, 0.05, 2, 1.0, "Above 1 discourages repeats (1: off)"),
    ("max_new_tokens", "Max new tokens", 1, 8192, 32, None, 256, "The longest answer, in tokens"),
    ("seed", "Seed", -1, 2**31 - 1, 1, None, -1, "Fixed seed for reproducible answers (random: a new draw)"),
    ("n", "Answers (n)", 1, 16, 1, None, 1, "How many answers to sample in one batch"),
]


def generate_job(ctx: JobContext, loaded: Any, prompt: str, sampling: Any, n: int,
                 system_prompt: str | None) -> dict[str, Any]:
    """Worker side: generate `n` answers to `prompt`, streaming into the context; count tokens."""
    from rlhf_desktop.modeling.generation import generate

    on_token = getattr(ctx, "stream", None)  # a QtJobContext streams; other contexts just wait
    started = time.perf_counter()
    answers = generate(loaded, [prompt], sampling, n=n, on_token=on_token, ctx=ctx, system_prompt=system_prompt)[0]
    seconds = time.perf_counter() - started
    tokens = sum(len(loaded.tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
    return {"answers": answers, "tokens": tokens, "seconds": seconds}


class PlaygroundView(QWidget):
    """Prompt, system prompt, sampling options, Generate/Stop, and one answer pane per sample."""

    sig_generation_finished = Signal(object)
    """A generation ended: {answers, tokens, seconds}."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.runner = state.jobs.runner("generate")
        self.spins: dict[str, QSpinBox | QDoubleSpinBox] = {}
        self.panes: list[QPlainTextEdit] = []
        self._build()
        self.runner.sig_stream.connect(self.on_stream)
        self.runner.sig_finished.connect(self._on_finished)
        self.runner.sig_cancelled.connect(lambda: self._on_ended("Stopped"))
        self.runner.sig_failed.connect(lambda _info: self._on_ended("Failed (see the error message)"))
        self.runner.sig_running_changed.connect(self._update_buttons)
        self.runner.sig_status.connect(self._update_buttons)  # "stopping…" disables Stop
        state.sig_model_changed.connect(self._update_buttons)
        state.jobs.sig_busy_changed.connect(self._update_buttons)
        self._update_buttons()

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        self.system_edit = QPlainTextEdit()
        self.system_edit.setObjectName("systemPrompt")
        self.system_edit.setPlaceholderText("Optional: instructions for the model (the system message)")
        self.system_edit.setMaximumHeight(64)
        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setObjectName("promptEdit")
        self.prompt_edit.setPlaceholderText("Type a prompt, then press Ctrl+Enter")
        self.prompt_edit.setPlainText(settings.get_value("playground/prompt", DEFAULT_PROMPT, str))
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("generateButton")
        self.generate_button.setDefault(True)
        self.generate_button.setToolTip("Generate answers (Ctrl+Enter)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip("Stop generating (Esc)")
        self.generate_button.clicked.connect(self.generate)
        self.stop_button.clicked.connect(self.stop)
        for keys, slot in (("Ctrl+Return", self.generate), ("Ctrl+Enter", self.generate), ("Escape", self.stop)):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)

        buttons = QHBoxLayout()
        self.hint_label = QLabel()
        self.hint_label.setObjectName("hintLabel")
        buttons.addWidget(self.hint_label, 1)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.generate_button)
        inputs = QWidget()
        column = QVBoxLayout(inputs)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(_caption("System prompt"))
        column.addWidget(self.system_edit)
        column.addWidget(_caption("Prompt"))
        column.addWidget(self.prompt_edit, 1)
        column.addLayout(buttons)

        self.answer_tabs = QTabWidget()
        self.answer_tabs.setObjectName("answerTabs")
        self.answer_tabs.setTabBarAutoHide(True)
        self.answer_tabs.setDocumentMode(True)
        self._set_pane_count(1)
        self.stats_label = QLabel("")
        self.stats_label.setObjectName("statsLabel")
        outputs = QWidget()
        out_column = QVBoxLayout(outputs)
        out_column.setContentsMargins(0, 0, 0, 0)
        out_column.addWidget(_caption("Answer"))
        out_column.addWidget(self.answer_tabs, 1)
        out_column.addWidget(self.stats_label)

        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(inputs)
        left.addWidget(outputs)
        left.setStretchFactor(0, 2)
        left.setStretchFactor(1, 3)
        left.setChildrenCollapsible(False)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 10, 10, 10)
        layout.setSpacing(12)
        layout.addWidget(left, 1)
        layout.addWidget(self._build_options())

    def _build_options(self) -> QGroupBox:
        box = QGroupBox("Sampling")
        box.setObjectName("samplingBox")
        box.setFixedWidth(250)
        form = QFormLayout(box)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        for key, label, low, high, step, decimals, default, tip in OPTIONS:
            spin: QSpinBox | QDoubleSpinBox
            if decimals is None:
                spin = QSpinBox()
                spin.setRange(int(low), int(high))
                spin.setValue(settings.get_value(f"playground/{key}", default, int))
            else:
                spin = QDoubleSpinBox()
                spin.setDecimals(decimals)
                spin.setRange(low, high)
                spin.setValue(settings.get_value(f"playground/{key}", default, float))
            spin.setSingleStep(step)
            spin.setObjectName(f"{key}Spin")
            spin.setToolTip(tip)
            spin.setAlignment(Qt.AlignmentFlag.AlignRight)
            if key == "seed":
                spin.setSpecialValueText("random")
            self.spins[key] = spin
            form.addRow(label, spin)
        reset = QPushButton("Reset to Defaults")
        reset.setObjectName("resetOptionsButton")
        reset.setToolTip("Restore the default sampling options")
        reset.clicked.connect(self.reset_options)
        form.addRow(reset)
        return box

    @Slot()
    def reset_options(self) -> None:
        for key, _label, _low, _high, _step, _decimals, default, _tip in OPTIONS:
            self.spins[key].setValue(default)

    # -- actions ------------------------------------------------------------------------------
    def sampling(self) -> Any:
        """The SamplingConfig set in the form."""
        from rlhf_desktop.modeling.generation import SamplingConfig

        seed = int(self.spins["seed"].value())
        return SamplingConfig(
            temperature=float(self.spins["temperature"].value()), top_p=float(self.spins["top_p"].value()),
            top_k=int(self.spins["top_k"].value()), max_new_tokens=int(self.spins["max_new_tokens"].value()),
            seed=None if seed < 0 else seed, repetition_penalty=float(self.spins["repetition_penalty"].value()))

    @Slot()
    def generate(self) -> int | None:
        """Start generating with the loaded model; return the job id (None when it cannot start)."""
        prompt = self.prompt_edit.toPlainText().strip()
        if self.state.model is None or not prompt or self.runner.running:
            return None
        sampling = self.sampling()
        n = int(self.spins["n"].value())
        self._remember()
        self._set_pane_count(n)
        for pane in self.panes:
            pane.clear()
        self.stats_label.setText("Generating…")
        system = self.system_edit.toPlainText().strip() or None
        return self.runner.start("Generating", generate_job, self.state.model, prompt, sampling, n, system)

    @Slot()
    def stop(self) -> None:
        self.runner.cancel()

    def _remember(self) -> None:
        settings.set_value("playground/prompt", self.prompt_edit.toPlainText())
        for key, spin in self.spins.items():
            settings.set_value(f"playground/{key}", spin.value())

    # -- results ------------------------------------------------------------------------------
    def _set_pane_count(self, n: int) -> None:
        while len(self.panes) < n:
            pane = QPlainTextEdit()
            pane.setReadOnly(True)
            pane.setObjectName(f"answerPane{len(self.panes)}")
            pane.setPlaceholderText("The answer appears here as it is generated.")
            self.panes.append(pane)
        while self.answer_tabs.count() > n:
            self.answer_tabs.removeTab(self.answer_tabs.count() - 1)
        for i in range(self.answer_tabs.count(), n):
            self.answer_tabs.addTab(self.panes[i], f"Answer {i + 1}")

    @Slot(object)
    def on_stream(self, batch: dict[int, str]) -> None:
        """Append streamed text: {row: new text} (row j is answer j)."""
        for row, text in batch.items():
            if 0 <= row < len(self.panes):
                cursor = self.panes[row].textCursor()
                cursor.movePosition(QTextCursor.MoveOperation.End)
                cursor.insertText(text)
                self.panes[row].setTextCursor(cursor)

    @Slot(object)
    def _on_finished(self, result: dict[str, Any]) -> None:
        for pane, answer in zip(self.panes, result["answers"]):
            if pane.toPlainText() != answer:  # the final decode is authoritative
                pane.setPlainText(answer)
        seconds = max(result["seconds"], 1e-9)
        self.stats_label.setText(f"{result['tokens']} tokens in {seconds:.1f} s · "
                                 f"{result['tokens'] / seconds:.1f} tokens/s")
        self.sig_generation_finished.emit(result)

    def _on_ended(self, text: str) -> None:
        self.stats_label.setText(text)

    @Slot()
    def _update_buttons(self, *_: Any) -> None:
        loading = self.state.jobs.runner("model").running
        running = self.runner.running
        ready = self.state.model is not None and not loading
        self.generate_button.setEnabled(ready and not running)
        self.stop_button.setEnabled(running and not self.runner.stopping)
        if loading:
            self.hint_label.setText("Loading the model…")
        elif self.state.model is None:
            self.hint_label.setText("Load a model from the Model menu to start.")
        elif running:
            self.hint_label.setText("Esc to stop")
        else:
            self.hint_label.setText("Ctrl+Enter to generate")


def _caption(text: str) -> QLabel:
    label = QLabel(text)
    font = QFont(label.font())
    font.setBold(True)
    label.setFont(font)
    return label
