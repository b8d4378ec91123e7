"""Browse: every comparison in a table (filter by outcome, criterion, source, date; full-text search);
open one to read both responses, change its label or delete it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QDate, QModelIndex, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDateEdit, QFormLayout, QHBoxLayout,
                               QHeaderView, QLabel, QLineEdit, QMessageBox, QPushButton, QSplitter, QTableView,
                               QTextBrowser, QVBoxLayout, QWidget)

from rlhf_desktop.ui.errors import show_error

OUTCOMES = ("left", "right", "tie", "both_bad", "skipped")
PAGE = 200
SEARCH_DELAY_MS = 300


def local_time(stamp: str) -> str:
    """The store's UTC timestamp as local 'YYYY-MM-DD HH:MM'."""
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d %H:%M")
    except (ValueError, AttributeError):
        return str(stamp)


class ComparisonsModel(QAbstractTableModel):
    """Comparisons matching the filters, newest first, fetched a page at a time."""

    COLUMNS = (("id", "#"), ("created_at", "Date"), ("prompt", "Prompt"), ("outcome", "Outcome"),
               ("strength", "Strength"), ("criterion", "Criterion"), ("source", "Source"), ("note", "Note"))

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.project = None
        self.filters: dict[str, Any] = {}
        self.rows: list[dict[str, Any]] = []
        self.total = 0

    def reload(self, project: Any, filters: dict[str, Any]) -> None:
        from rlhf_desktop.store.browse import count_comparisons, list_comparisons

        self.beginResetModel()
        self.project, self.filters = project, dict(filters)
        if project is None:
            self.rows, self.total = [], 0
        else:
            self.total = count_comparisons(project, **self.filters)
            self.rows = list_comparisons(project, **self.filters, limit=PAGE, offset=0)
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(self.COLUMNS)

    def canFetchMore(self, parent: QModelIndex = QModelIndex()) -> bool:  # noqa: N802 - Qt override
        return not parent.isValid() and len(self.rows) < self.total

    def fetchMore(self, parent: QModelIndex = QModelIndex()) -> None:  # noqa: N802 - Qt override
        from rlhf_desktop.store.browse import list_comparisons

        more = list_comparisons(self.project, **self.filters, limit=PAGE, offset=len(self.rows))
        if more:
            self.beginInsertRows(QModelIndex(), len(self.rows), len(self.rows) + len(more) - 1)
            self.rows.extend(more)
            self.endInsertRows()
        else:
            self.total = len(self.rows)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, key = self.rows[index.row()], self.COLUMNS[index.column()][0]
        if role == Qt.ItemDataRole.DisplayRole:
            value = row.get(key)
            if key == "created_at":
                return local_time(value)
            if key == "prompt":
                return " ".join(str(value).split())[:160]
            if key == "strength":
                return "much better" if value == 2 else ""
            return "" if value is None else str(value)
        if role == Qt.ItemDataRole.ToolTipRole and key in ("prompt", "note"):
            return str(row.get(key) or "")[:2000]
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.COLUMNS[section][1]
        return None

    def replace_row(self, row: int, values: dict[str, Any]) -> None:
        self.rows[row].update(values)
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.COLUMNS) - 1))

    def remove_row(self, row: int) -> None:
        self.beginRemoveRows(QModelIndex(), row, row)
        del self.rows[row]
        self.total -= 1
        self.endRemoveRows()


class BrowseView(QWidget):
    """The comparisons table with its filters and a detail pane (state: the shell's AppState, optional)."""

    sig_changed = Signal()
    """A label was changed or deleted here."""

    def __init__(self, state: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("browseView")
        self.project = None
        self.model = ComparisonsModel(self)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.reload)
        layout = QVBoxLayout(self)
        layout.addLayout(self._filter_bar())
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self._table())
        split.addWidget(self._detail())
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        layout.addWidget(split, 1)
        self._show_detail(None)
        if state is not None:
            state.sig_project_changed.connect(self.set_project)
            self.set_project(state.project)

    # -- layout -------------------------------------------------------------------------------
    def _filter_bar(self) -> QHBoxLayout:
        self.outcome_box = QComboBox()
        self.outcome_box.addItem("All outcomes", None)
        for outcome in OUTCOMES:
            self.outcome_box.addItem(outcome, outcome)
        self.criterion_box = QComboBox()
        self.source_box = QComboBox()
        for text, value in (("All sources", None), ("labeled here", "label"), ("imported", "import"), ("arena", "arena")):
            self.source_box.addItem(text, value)
        self.from_check, self.from_date = QCheckBox("From"), QDateEdit(QDate.currentDate().addDays(-7))
        self.to_check, self.to_date = QCheckBox("to"), QDateEdit(QDate.currentDate())
        for date_edit in (self.from_date, self.to_date):
            date_edit.setCalendarPopup(True)
            date_edit.setDisplayFormat("yyyy-MM-dd")
            date_edit.dateChanged.connect(self.reload)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search prompts, responses and notes")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.count_label = QLabel()
        for widget in (self.outcome_box, self.criterion_box, self.source_box):
            widget.currentIndexChanged.connect(self.reload)
        for check in (self.from_check, self.to_check):
            check.toggled.connect(self.reload)
        bar = QHBoxLayout()
        for widget in (self.outcome_box, self.criterion_box, self.source_box, self.from_check, self.from_date,
                       self.to_check, self.to_date):
            bar.addWidget(widget)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.count_label)
        return bar

    def _table(self) -> QTableView:
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().currentRowChanged.connect(lambda cur, _prev: self._show_detail(cur.row()))
        return self.table

    def _detail(self) -> QWidget:
        self.prompt_view = QTextBrowser()
        self.left_view, self.right_view = QTextBrowser(), QTextBrowser()
        self.left_title, self.right_title = QLabel("<b>Left</b>"), QLabel("<b>Right</b>")
        sides = QSplitter(Qt.Orientation.Horizontal)
        for title, browser in ((self.left_title, self.left_view), (self.right_title, self.right_view)):
            pane = QWidget()
            box = QVBoxLayout(pane)
            box.setContentsMargins(0, 0, 0, 0)
            box.addWidget(title)
            box.addWidget(browser, 1)
            sides.addWidget(pane)
        self.edit_outcome = QComboBox()
        for outcome in OUTCOMES:
            self.edit_outcome.addItem(outcome, outcome)
        self.edit_much = QCheckBox("much better")
        self.edit_criterion = QLineEdit()
        self.edit_note = QLineEdit()
        self.save_button = QPushButton("Save changes")
        self.save_button.clicked.connect(self.save_current)
        self.delete_button = QPushButton("Delete label…")
        self.delete_button.clicked.connect(self.delete_current)
        form = QFormLayout()
        outcome_row = QHBoxLayout()
        outcome_row.addWidget(self.edit_outcome)
        outcome_row.addWidget(self.edit_much)
        outcome_row.addStretch(1)
        form.addRow("Outcome", outcome_row)
        form.addRow("Criterion", self.edit_criterion)
        form.addRow("Note", self.edit_note)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.delete_button)
        buttons.addWidget(self.save_button)
        form.addRow(buttons)
        self.detail = QWidget()
        box = QVBoxLayout(self.detail)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.prompt_view, 1)
        box.addWidget(sides, 3)
        box.addLayout(form)
        return self.detail

    # -- data ---------------------------------------------------------------------------------
    @Slot(object)
    def set_project(self, project: Any) -> None:
        self.project = project
        self._fill_criteria()
        self.reload()

    def _fill_criteria(self) -> None:
        self.criterion_box.blockSignals(True)
        current = self.criterion_box.currentData()
        self.criterion_box.clear()
        self.criterion_box.addItem("All criteria", None)
        if self.project is not None:
            for row in self.project.query("SELECT DISTINCT criterion FROM comparisons ORDER BY criterion"):
                self.criterion_box.addItem(row["criterion"] or "(none)", row["criterion"])
        found = self.criterion_box.findData(current)
        self.criterion_box.setCurrentIndex(max(found, 0))
        self.criterion_box.blockSignals(False)

    def filters(self) -> dict[str, Any]:
        """The filters as list_comparisons keywords."""
        return {"outcome": self.outcome_box.currentData(), "criterion": self.criterion_box.currentData(),
                "source": self.source_box.currentData(),
                "date_from": self.from_date.date().toPython() if self.from_check.isChecked() else None,
                "date_to": self.to_date.date().toPython() if self.to_check.isChecked() else None,
                "search": self.search.text().strip() or None}

    @Slot()
    def reload(self) -> None:
        self._search_timer.stop()
        try:
            self.model.reload(self.project, self.filters())
        except Exception as exc:  # noqa: BLE001 - a bad filter or a busy database: say so, keep the view
            show_error(self, exc)
            return
        self.count_label.setText(f"{self.model.total} comparison{'s' if self.model.total != 1 else ''}")
        self._show_detail(None)

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt override: labels may have changed meanwhile
        super().showEvent(event)
        if self.project is not None:
            self._fill_criteria()
            self.reload()

    def _selected(self) -> tuple[int, dict[str, Any]] | None:
        row = self.table.currentIndex().row()
        return (row, self.model.rows[row]) if 0 <= row < len(self.model.rows) else None

    def _show_detail(self, row: int | None) -> None:
        data = self.model.rows[row] if row is not None and 0 <= row < len(self.model.rows) else None
        self.detail.setEnabled(data is not None)
        if data is None:
            for view in (self.prompt_view, self.left_view, self.right_view):
                view.clear()
            return
        self.prompt_view.setMarkdown(data["prompt"])
        self.left_view.setMarkdown(data["left_text"])
        self.right_view.setMarkdown(data["right_text"])
        won = {"left": "left", "right": "right"}.get(data["outcome"])
        self.left_title.setText("<b>Left</b>" + (" ✓ preferred" if won == "left" else ""))
        self.right_title.setText("<b>Right</b>" + (" ✓ preferred" if won == "right" else ""))
        self.edit_outcome.setCurrentIndex(max(self.edit_outcome.findData(data["outcome"]), 0))
        self.edit_much.setChecked(data["strength"] == 2)
        self.edit_criterion.setText(data["criterion"])
        self.edit_note.setText(data["note"])

    @Slot()
    def save_current(self) -> None:
        """Write the detail pane's outcome, strength, criterion and note to the selected comparison."""
        from rlhf_desktop.store.labels import update_label

        selected = self._selected()
        if selected is None:
            return
        row, data = selected
        outcome = self.edit_outcome.currentData()
        fields = {"outcome": outcome, "strength": 2 if self.edit_much.isChecked() and outcome in ("left", "right") else 1,
                  "criterion": self.edit_criterion.text().strip(), "note": self.edit_note.text().strip()}
        try:
            updated = update_label(self.project, data["id"], **fields)
        except Exception as exc:  # noqa: BLE001
            show_error(self, exc)
            return
        self.model.replace_row(row, {k: updated[k] for k in fields})
        self._show_detail(row)
        self.sig_changed.emit()

    @Slot()
    def delete_current(self) -> None:
        from rlhf_desktop.store.labels import delete_label

        selected = self._selected()
        if selected is None:
            return
        row, data = selected
        answer = QMessageBox.question(self, "Delete this label?",
                                      f"Comparison #{data['id']} ({data['outcome']}) will be deleted. "
                                      "The two responses stay in the project.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            delete_label(self.project, data["id"])
        except Exception as exc:  # noqa: BLE001
            show_error(self, exc)
            return
        self.model.remove_row(row)
        self.count_label.setText(f"{self.model.total} comparison{'s' if self.model.total != 1 else ''}")
        self._show_detail(self.table.currentIndex().row() if self.model.rows else None)
        self.sig_changed.emit()
