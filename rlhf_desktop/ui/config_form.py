"""A form generated from a config dataclass: one editor per field, tooltips from its metadata "help".

Bools become check boxes, ints spin boxes, fields with a "choices" tuple in their metadata combo
boxes, everything else a line edit whose text goes through `core.config.from_dict` (which coerces
"1e-4", "q_proj,v_proj" and "" for optional fields).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLineEdit, QSpinBox, QWidget

from rlhf_desktop.core.config import from_dict

INT_MAX = 2**31 - 1


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


class ConfigForm(QWidget):
    """Editors for every field of a config dataclass; `config()` builds and validates it."""

    sig_changed = Signal()
    """A field's value changed (typing, ticking, spinning)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.cls: type | None = None
        self.editors: dict[str, QWidget] = {}
        self.layout_ = QFormLayout(self)
        self.layout_.setContentsMargins(0, 0, 0, 0)

    def set_class(self, cls: type, values: dict[str, Any] | None = None) -> None:
        """Rebuild the editors for `cls`, filled with its defaults overlaid by `values`."""
        while self.layout_.rowCount():
            self.layout_.removeRow(0)
        self.cls, self.editors = cls, {}
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            editor = self._editor(hints.get(f.name), f.metadata.get("choices"))
            editor.setObjectName(f"field_{f.name}")
            editor.setToolTip(str(f.metadata.get("help", "")))
            self.editors[f.name] = editor
            self.layout_.addRow(f.name, editor)
            self.layout_.labelForField(editor).setToolTip(editor.toolTip())
        self.set_values(self.defaults() | dict(values or {}))

    def _editor(self, kind: Any, choices: Any = None) -> QWidget:
        if choices:
            editor = QComboBox()
            editor.addItems([str(c) for c in choices])
            editor.currentTextChanged.connect(self.sig_changed)
        elif kind is bool:
            editor = QCheckBox()
            editor.toggled.connect(self.sig_changed)
        elif kind is int:
            editor = QSpinBox()
            editor.setRange(0, INT_MAX)
            editor.valueChanged.connect(self.sig_changed)
        else:
            editor = QLineEdit()
            editor.textChanged.connect(self.sig_changed)
        return editor

    def defaults(self) -> dict[str, Any]:
        return dataclasses.asdict(self.cls())  # type: ignore[misc]

    def set_values(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            editor = self.editors.get(name)
            if isinstance(editor, QCheckBox):
                editor.setChecked(bool(value))
            elif isinstance(editor, QSpinBox):
                editor.setValue(int(value))
            elif isinstance(editor, QComboBox):
                editor.setCurrentText(_text(value))
            elif isinstance(editor, QLineEdit):
                editor.setText(_text(value))

    def values(self) -> dict[str, Any]:
        """The raw values (text for line edits)."""
        out: dict[str, Any] = {}
        for name, editor in self.editors.items():
            if isinstance(editor, QCheckBox):
                out[name] = editor.isChecked()
            elif isinstance(editor, QSpinBox):
                out[name] = editor.value()
            elif isinstance(editor, QComboBox):
                out[name] = editor.currentText()
            else:
                out[name] = editor.text().strip()  # type: ignore[attr-defined]
        return out

    def config(self) -> Any:
        """The config dataclass from the editors; raises ConfigError naming the field to change."""
        return from_dict(self.cls, self.values(), source="the hyperparameter form")  # type: ignore[arg-type]
