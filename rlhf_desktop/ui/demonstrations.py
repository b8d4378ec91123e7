"""Demonstrations: pick a prompt, write or edit its ideal response (the SFT data)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem,
                               QMessageBox, QPlainTextEdit, QPushButton, QSplitter, QTabWidget, QTextBrowser,
                               QVBoxLayout, QWidget)

from rlhf_desktop.ui.errors import show_error

PROMPT_LIMIT = 1000  # prompts listed at once; the search box narrows the rest down
TEXT_ROLE = Qt.ItemDataRole.UserRole + 1


class DemonstrationsView(QWidget):
    """Prompts on the left; the chosen prompt, its demonstrations and an editor on the right."""

    sig_changed = Signal()
    """A demonstration was added, changed or deleted."""

    def __init__(self, state: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("demonstrationsView")
        self.project = None
        self.prompt_id: int | None = None
        self.demo_id: int | None = None  # the demonstration in the editor; None: a new one
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(300)
        self._search_timer.timeout.connect(self.reload_prompts)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self._prompt_side())
        split.addWidget(self._editor_side())
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(split)
        self._select_prompt(None)
        if state is not None:
            state.sig_project_changed.connect(self.set_project)
            self.set_project(state.project)

    # -- layout -------------------------------------------------------------------------------
    def _prompt_side(self) -> QWidget:
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search prompts")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.missing_only = QCheckBox("Only prompts without a demonstration")
        self.missing_only.toggled.connect(self.reload_prompts)
        self.prompt_list = QListWidget()
        self.prompt_list.currentItemChanged.connect(
            lambda item, _prev: self._select_prompt(item.data(Qt.ItemDataRole.UserRole) if item else None))
        self.prompt_count = QLabel()
        side = QWidget()
        box = QVBoxLayout(side)
        box.setContentsMargins(0, 0, 0, 0)
        for widget in (self.search, self.missing_only):
            box.addWidget(widget)
        box.addWidget(self.prompt_list, 1)
        box.addWidget(self.prompt_count)
        return side

    def _editor_side(self) -> QWidget:
        self.prompt_view = QTextBrowser()
        self.demo_list = QListWidget()
        self.demo_list.currentItemChanged.connect(
            lambda item, _prev: self._load_demo(item.data(Qt.ItemDataRole.UserRole) if item else None))
        self.editor = QPlainTextEdit()
        self.editor.setPlaceholderText("Write the response you would want the model to give (markdown).")
        self.preview = QTextBrowser()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.editor, "Write")
        self.tabs.addTab(self.preview, "Preview")
        self.tabs.currentChanged.connect(lambda i: i == 1 and self.preview.setMarkdown(self.editor.toPlainText()))
        self.new_button = QPushButton("New")
        self.new_button.clicked.connect(self.new_demo)
        self.save_button = QPushButton("Save")
        self.save_button.clicked.connect(self.save)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(self.delete)
        self.editor_title = QLabel()
        buttons = QHBoxLayout()
        buttons.addWidget(self.editor_title, 1)
        for button in (self.new_button, self.delete_button, self.save_button):
            buttons.addWidget(button)
        self.editor_side = QWidget()
        box = QVBoxLayout(self.editor_side)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(QLabel("<b>Prompt</b>"))
        box.addWidget(self.prompt_view, 2)
        box.addWidget(QLabel("<b>Demonstrations for this prompt</b>"))
        box.addWidget(self.demo_list, 1)
        box.addWidget(self.tabs, 4)
        box.addLayout(buttons)
        return self.editor_side

    # -- prompts ------------------------------------------------------------------------------
    @Slot(object)
    def set_project(self, project: Any) -> None:
        self.project = project
        self.reload_prompts()

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt override: edits in the labeling view count too
        super().showEvent(event)
        if self.project is not None:
            self.reload_prompts()

    @Slot()
    def reload_prompts(self) -> None:
        from rlhf_desktop.store.prompts import list_prompts

        self._search_timer.stop()
        keep = self.prompt_id
        self.prompt_list.blockSignals(True)
        self.prompt_list.clear()
        rows = [] if self.project is None else list_prompts(self.project, search=self.search.text().strip() or None)
        if self.missing_only.isChecked():
            rows = [r for r in rows if not r["demonstrations"]]
        for row in rows[:PROMPT_LIMIT]:
            text = " ".join(row["text"].split())
            item = QListWidgetItem(_prompt_label(text, bool(row["demonstrations"])))
            item.setData(Qt.ItemDataRole.UserRole, row["id"])
            item.setData(TEXT_ROLE, text)
            item.setToolTip(f"{row['split']} · {row['demonstrations']} demonstration(s)")
            self.prompt_list.addItem(item)
            if row["id"] == keep:
                self.prompt_list.setCurrentItem(item)
        self.prompt_list.blockSignals(False)
        shown = min(len(rows), PROMPT_LIMIT)
        self.prompt_count.setText(f"{shown} of {len(rows)} prompts" if shown < len(rows) else f"{len(rows)} prompts")
        self._select_prompt(keep if any(r["id"] == keep for r in rows) else None)

    def select_prompt(self, prompt_id: int) -> None:
        """Show `prompt_id` (it must be listed under the current search)."""
        for i in range(self.prompt_list.count()):
            if self.prompt_list.item(i).data(Qt.ItemDataRole.UserRole) == prompt_id:
                self.prompt_list.setCurrentRow(i)
                return
        raise KeyError(prompt_id)

    def _select_prompt(self, prompt_id: int | None) -> None:
        from rlhf_desktop.store.prompts import get_prompt

        self.prompt_id = prompt_id
        self.editor_side.setEnabled(prompt_id is not None)
        if prompt_id is None:
            self.prompt_view.clear()
            self.demo_list.clear()
            self._load_demo(None)
            return
        self.prompt_view.setMarkdown(get_prompt(self.project, prompt_id)["text"])
        self._fill_demos()

    def _fill_demos(self, select: int | None = None) -> None:
        from rlhf_desktop.store.demonstrations import list_demonstrations

        self.demo_list.blockSignals(True)
        self.demo_list.clear()
        chosen = None
        for demo in list_demonstrations(self.project, prompt_id=self.prompt_id):
            item = QListWidgetItem(f"#{demo['id']} · {demo['source']} · " + " ".join(demo["text"].split())[:90])
            item.setData(Qt.ItemDataRole.UserRole, demo["id"])
            self.demo_list.addItem(item)
            if demo["id"] == select or (select is None and chosen is None):
                chosen = item
        if chosen is not None:
            self.demo_list.setCurrentItem(chosen)
        self.demo_list.blockSignals(False)
        self._load_demo(chosen.data(Qt.ItemDataRole.UserRole) if chosen is not None else None)

    # -- the editor ---------------------------------------------------------------------------
    def _load_demo(self, demo_id: int | None) -> None:
        from rlhf_desktop.store.demonstrations import get_demonstration

        self.demo_id = demo_id
        text = get_demonstration(self.project, demo_id)["text"] if demo_id is not None else ""
        self.editor.setPlainText(text)
        self.preview.setMarkdown(text)
        self.tabs.setCurrentIndex(0)
        self.editor_title.setText(f"Editing demonstration #{demo_id}" if demo_id is not None else "New demonstration")
        self.delete_button.setEnabled(demo_id is not None)

    @Slot()
    def new_demo(self) -> None:
        self.demo_list.clearSelection()
        self._load_demo(None)
        self.editor.setFocus()

    @Slot()
    def save(self) -> None:
        """Save the editor's text: a new demonstration, or the one being edited."""
        from rlhf_desktop.store.demonstrations import add_demonstration, update_demonstration

        text = self.editor.toPlainText()
        if self.prompt_id is None or not text.strip():
            return
        try:
            if self.demo_id is None:
                self.demo_id = add_demonstration(self.project, self.prompt_id, text, source="written")
            else:
                update_demonstration(self.project, self.demo_id, text)
        except Exception as exc:  # noqa: BLE001
            show_error(self, exc)
            return
        self._fill_demos(select=self.demo_id)
        self._mark_prompt()
        self.sig_changed.emit()

    @Slot()
    def delete(self) -> None:
        from rlhf_desktop.store.demonstrations import delete_demonstration

        if self.demo_id is None:
            return
        answer = QMessageBox.question(self, "Delete this demonstration?", f"Demonstration #{self.demo_id} will be deleted.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            delete_demonstration(self.project, self.demo_id)
        except Exception as exc:  # noqa: BLE001
            show_error(self, exc)
            return
        self._fill_demos()
        self._mark_prompt()
        self.sig_changed.emit()

    def _mark_prompt(self) -> None:
        item = self.prompt_list.currentItem()
        if item is not None:
            item.setText(_prompt_label(item.data(TEXT_ROLE), self.demo_list.count() > 0))


def _prompt_label(text: str, has_demo: bool) -> str:
    """A prompt's line in the list: a check mark when it has a demonstration."""
    return ("✓ " if has_demo else "    ") + text[:120]
