"""The Qt binding we depend on must not leak references to None on void calls.

PySide6 6.12.0 on CPython 3.11 takes one reference from None on every C++ method returning void
and never gives it back; a few seconds of painting then abort the process ("none_dealloc").
pyproject.toml excludes that release; this test fails if a leaking binding is installed again.
"""

import sys

from PySide6.QtWidgets import QLabel


def test_void_calls_do_not_leak_none(qtbot):
    label = QLabel()
    qtbot.addWidget(label)
    before = sys.getrefcount(None)
    for _ in range(2000):
        label.setText("x")
        label.setVisible(False)
    assert sys.getrefcount(None) - before < 100
