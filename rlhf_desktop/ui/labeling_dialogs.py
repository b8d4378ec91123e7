"""The labeling view's dialogs: edit a response (it becomes a demonstration), a note on a label."""

from __future__ import annotations

from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QPlainTextEdit, QRadioButton,
                               QVBoxLayout, QWidget)

from rlhf_desktop.modeling.pairs import ReadyPair


class EditDialog(QDialog):
    """Rewrite the left or the right response."""

    def __init__(self, pair: ReadyPair, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Edit a response: your text becomes the preferred answer")
        self.pair = pair
        self.left_choice = QRadioButton("Left")
        self.right_choice = QRadioButton("Right")
        self.left_choice.setChecked(True)
        self.editor = QPlainTextEdit(pair.left_text)
        self.editor.document().setModified(False)
        self.left_choice.toggled.connect(self._switch)
        head = QHBoxLayout()
        head.addWidget(QLabel("Edit:"))
        head.addWidget(self.left_choice)
        head.addWidget(self.right_choice)
        head.addStretch(1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        box = QVBoxLayout(self)
        box.addLayout(head)
        box.addWidget(self.editor, 1)
        box.addWidget(buttons)
        self.resize(720, 480)

    def _switch(self, left: bool) -> None:
        if not self.editor.document().isModified():  # never throw away the operator's typing
            self.editor.setPlainText(self.pair.left_text if left else self.pair.right_text)
            self.editor.document().setModified(False)

    def side(self) -> str:
        return "left" if self.left_choice.isChecked() else "right"

    def text(self) -> str:
        return self.editor.toPlainText()


class NoteDialog(QDialog):
    """A free-text note on the pair's label."""

    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Note on this pair")
        self.editor = QPlainTextEdit(text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        box = QVBoxLayout(self)
        box.addWidget(self.editor)
        box.addWidget(buttons)

    def text(self) -> str:
        return self.editor.toPlainText()
