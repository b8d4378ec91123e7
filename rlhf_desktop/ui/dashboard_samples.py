"""The dashboard's samples pane: the rollouts (or evaluation generations) of one step.

A table of the step's rows (score, KL, prompt, response) beside the full text of the selected
row. Press L (or the button) to send the selected rollout's prompt to the labeling queue.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPlainTextEdit,
                               QPushButton, QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout,
                               QWidget)

COLUMNS = ("Score", "KL", "Prompt", "Response")


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


class SamplesPanel(QWidget):
    """Rows of one step; emits sig_send_prompt(text) when the user sends a rollout to labeling."""

    sig_send_prompt = Signal(str)
    """The user asked to label this rollout's prompt (L)."""
    sig_latest_requested = Signal()
    """The user asked to follow the latest step again."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.step: int | None = None
        self.rows: list[dict[str, Any]] = []
        self.header = QLabel("No samples yet: rollouts appear here as the run reports them.")
        self.header.setObjectName("samplesHeader")
        self.latest_button = QPushButton("Follow latest")
        self.latest_button.setToolTip("Show the newest step's samples as they arrive")
        self.latest_button.clicked.connect(self.sig_latest_requested)
        self.send_button = QPushButton("Send to labeling (L)")
        self.send_button.setToolTip("Add the selected rollout's prompt to the project for labeling")
        self.send_button.clicked.connect(self.send_selected)
        self.send_button.setEnabled(False)
        top = QHBoxLayout()
        top.addWidget(self.header, 1)
        top.addWidget(self.latest_button)
        top.addWidget(self.send_button)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("samplesTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.table.setColumnWidth(2, 220)
        self.table.itemSelectionChanged.connect(self._show_selected)
        self.detail = QPlainTextEdit()
        self.detail.setReadOnly(True)
        self.detail.setPlaceholderText("Select a row to read the whole prompt and response.")
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(self.detail)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        shortcut = QShortcut(QKeySequence("L"), self)
        shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        shortcut.activated.connect(self.send_selected)

    def show_rows(self, step: int | None, rows: list[dict[str, Any]], note: str = "") -> None:
        """Fill the table with `rows` of `step` (note: e.g. "clicked step 812")."""
        self.step, self.rows = step, list(rows)
        self.table.setRowCount(len(self.rows))
        for i, row in enumerate(self.rows):
            cells = (_fmt(row.get("score")), _fmt(row.get("kl")), _one_line(row.get("prompt", ""), 80),
                     _one_line(row.get("response", "")))
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if j < 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(i, j, item)
        where = f"Step {step}" if step is not None else "No step"
        count = f"{len(self.rows)} sample{'s' if len(self.rows) != 1 else ''}"
        self.header.setText(f"{where}: {count}" + (f" ({note})" if note else ""))
        if self.rows:
            self.table.selectRow(0)
        self._show_selected()  # selectRow(0) is silent when row 0 was already selected
        self.send_button.setEnabled(bool(self.rows))

    def selected_row(self) -> dict[str, Any] | None:
        index = self.table.currentRow()
        return self.rows[index] if 0 <= index < len(self.rows) else None

    def send_selected(self) -> None:
        row = self.selected_row()
        if row is not None and str(row.get("prompt", "")).strip():
            self.sig_send_prompt.emit(str(row["prompt"]))

    def _show_selected(self) -> None:
        row = self.selected_row()
        if row is None:
            self.detail.clear()
            return
        parts = [f"Step {self.step} · score {_fmt(row.get('score')) or '—'} · KL {_fmt(row.get('kl')) or '—'}",
                 "", "PROMPT", str(row.get("prompt", "")), "", "RESPONSE", str(row.get("response", ""))]
        extra = row.get("extra") or {}
        if extra:
            parts += ["", "EXTRA"] + [f"{k}: {v}" for k, v in extra.items()]
        self.detail.setPlainText("\n".join(parts))
