"""The project's labeling guidelines (markdown, editable) and criteria, shown beside the pair being labeled."""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QPushButton, QStackedWidget,
                               QTextBrowser, QVBoxLayout, QWidget)

GUIDELINES_KEY = "guidelines"
CRITERIA_KEY = "criteria"

DEFAULT_GUIDELINES = """\
## How to judge a pair

Pick the response you would rather receive.

1. **Correct** beats fluent: check facts, arithmetic and code.
2. **Helpful**: it answers the question that was asked, completely but without padding.
3. **Safe**: a request a good assistant should decline is declined politely, with a reason.
4. **Clear**: well organised, readable, no repetition.

- *Tie* (`3`): both are about equally good.
- *Both bad* (`4`): neither is acceptable; say why with a note (`N`).
- *Much better* (`Shift` + choice): the gap is large, not a matter of taste.
- *Edit* (`E`): fix a response; your text becomes a demonstration and wins the pair.
"""


def load_guidelines(project) -> str:
    text = project.get_setting(GUIDELINES_KEY)
    return text if isinstance(text, str) and text.strip() else DEFAULT_GUIDELINES


def save_guidelines(project, text: str) -> None:
    project.set_setting(GUIDELINES_KEY, text)


def load_criteria(project) -> list[str]:
    """The project's criteria names (empty: one overall choice per pair)."""
    value = project.get_setting(CRITERIA_KEY, []) or []
    return [str(c) for c in value if str(c).strip()] if isinstance(value, list) else []


def save_criteria(project, names: list[str]) -> list[str]:
    """Store the criteria (trimmed, deduplicated, in order) and return them."""
    clean: list[str] = []
    for name in names:
        name = name.strip()
        if name and name not in clean:
            clean.append(name)
    project.set_setting(CRITERIA_KEY, clean)
    return clean


class GuidelinesPanel(QWidget):
    """Markdown guidelines with an Edit/Save toggle, and the project's criteria list."""

    sig_criteria_changed = Signal(list)
    """The criteria were edited and saved (the new list of names)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("guidelinesPanel")
        self.project = None
        self.viewer = QTextBrowser()
        self.viewer.setOpenExternalLinks(True)
        self.editor = QPlainTextEdit()
        self.editor.setPlaceholderText("Markdown: what makes a response better, worse, or unacceptable")
        self.criteria_edit = QLineEdit()
        self.criteria_edit.setPlaceholderText("e.g. helpfulness, harmlessness (empty: one overall choice)")
        self.criteria_label = QLabel()
        self.criteria_label.setWordWrap(True)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.viewer)
        self.stack.addWidget(self._edit_page())
        self.edit_button = QPushButton("Edit")
        self.edit_button.setToolTip("Edit the guidelines and criteria")
        self.edit_button.clicked.connect(self.toggle_edit)
        head = QHBoxLayout()
        title = QLabel("<b>Guidelines</b>")
        head.addWidget(title)
        head.addStretch(1)
        head.addWidget(self.edit_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 0, 0, 0)
        layout.addLayout(head)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.criteria_label)

    def _edit_page(self) -> QWidget:
        page = QWidget()
        box = QVBoxLayout(page)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.editor, 1)
        box.addWidget(QLabel("Criteria (comma-separated, one choice each per pair):"))
        box.addWidget(self.criteria_edit)
        return page

    def set_project(self, project) -> None:
        self.project = project
        self.stack.setCurrentIndex(0)
        self.edit_button.setText("Edit")
        self.edit_button.setEnabled(project is not None)
        self._show(load_guidelines(project) if project is not None else "",
                   load_criteria(project) if project is not None else [])

    def _show(self, text: str, criteria: list[str]) -> None:
        self.viewer.setMarkdown(text)
        self.criteria_label.setText("Criteria: " + ", ".join(criteria) if criteria else "")
        self.criteria_label.setVisible(bool(criteria))

    @property
    def editing(self) -> bool:
        return self.stack.currentIndex() == 1

    @Slot()
    def toggle_edit(self) -> None:
        """Enter edit mode, or save and leave it."""
        if self.project is None:
            return
        if not self.editing:
            self.editor.setPlainText(load_guidelines(self.project))
            self.criteria_edit.setText(", ".join(load_criteria(self.project)))
            self.stack.setCurrentIndex(1)
            self.edit_button.setText("Save")
            self.editor.setFocus()
            return
        save_guidelines(self.project, self.editor.toPlainText())
        old = load_criteria(self.project)
        criteria = save_criteria(self.project, self.criteria_edit.text().split(","))
        self.stack.setCurrentIndex(0)
        self.edit_button.setText("Edit")
        self._show(load_guidelines(self.project), criteria)
        if criteria != old:
            self.sig_criteria_changed.emit(criteria)
