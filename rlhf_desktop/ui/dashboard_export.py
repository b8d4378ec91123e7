"""Exporting what a plot widget shows: the plots as PNG or SVG, the metrics as CSV.

`ExportMixin` serves the Dashboard (and `RMReportView` through `export_graphics`); the actions
from `export_actions()` can go into the main window's menus as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyqtgraph as pg
import pyqtgraph.exporters  # noqa: F401 - registers ImageExporter / SVGExporter on pg.exporters
from PySide6.QtCore import QRectF
from PySide6.QtGui import QAction, QPainter
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import QFileDialog, QMenu, QToolButton, QWidget

from rlhf_desktop.core.errors import ProjectError
from rlhf_desktop.ui.dashboard_data import write_csv
from rlhf_desktop.ui.errors import show_error
from rlhf_desktop.ui.plots import vector_export

FILTERS = {"png": "PNG image (*.png)", "svg": "SVG drawing (*.svg)", "csv": "CSV table (*.csv)"}


def _write_svg(item: Any, path: Path) -> None:
    """Render the item's part of its scene through Qt's SVG generator (vector output).

    pyqtgraph's SVGExporter rewrites Qt's path data and fails on Qt 6.12's format
    ("not enough values to unpack" in correctCoordinates), so Qt writes the file as it draws it.
    """
    source = item.sceneBoundingRect()
    generator = QSvgGenerator()
    generator.setFileName(str(path))
    generator.setSize(source.size().toSize())
    generator.setViewBox(QRectF(0, 0, source.width(), source.height()))
    generator.setTitle("rlhf-desktop plots")
    painter = QPainter()
    if not painter.begin(generator):
        raise OSError(13, "cannot open the file for writing")
    try:
        item.scene().render(painter, QRectF(0, 0, source.width(), source.height()), source)
    finally:
        painter.end()


def export_graphics(item: Any, path: str | Path, kind: str, width: int | None = None) -> Path:
    """Write a pyqtgraph item (a GraphicsLayout or PlotItem) to PNG or SVG; return the path."""
    path = Path(path)
    if kind not in ("png", "svg"):
        raise ValueError(f"unknown export kind {kind!r}")
    try:
        with vector_export(item.scene()):
            if kind == "png":
                exporter = pg.exporters.ImageExporter(item)
                if width:
                    exporter.parameters()["width"] = int(width)
                exporter.export(str(path))
            else:
                _write_svg(item, path)
    except OSError as exc:
        raise ProjectError(f"cannot write the file: {exc.strerror}", where=str(path),
                           hint="choose another folder") from None
    if not path.is_file():
        raise ProjectError("the export wrote nothing", where=str(path), hint="choose another folder or file name")
    return path


def ask_save_path(parent: QWidget, kind: str, folder: Path | None, name: str) -> str:
    """A save dialog for `kind` (png, svg, csv); '' when cancelled."""
    start = str((folder or Path.home()) / f"{name}.{kind}")
    path, _filter = QFileDialog.getSaveFileName(parent, f"Export {kind.upper()}", start, FILTERS[kind])
    if path and not path.lower().endswith(f".{kind}"):
        path += f".{kind}"
    return path


class ExportMixin:
    """Export actions of the Dashboard: plots (PNG, SVG) and metrics (CSV)."""

    def export_actions(self) -> list[QAction]:
        """Actions for a menu: export plots as PNG, as SVG, and metrics as CSV (created once)."""
        actions = getattr(self, "_export_action_list", None)
        if actions is None:
            actions = []
            for kind, text in (("png", "Export plots as PNG…"), ("svg", "Export plots as SVG…"),
                               ("csv", "Export metrics as CSV…")):
                action = QAction(text, self)
                action.setObjectName(f"actionExportDashboard{kind.upper()}")
                action.triggered.connect(lambda _checked=False, k=kind: self.export_dialog(k))
                actions.append(action)
            self._export_action_list = actions
        return actions

    def _export_button(self) -> QToolButton:
        button = QToolButton()
        button.setText("Export")
        button.setToolTip("Export the plots (PNG, SVG) or the metrics (CSV)")
        button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(button)
        for action in self.export_actions():
            menu.addAction(action)
        button.setMenu(menu)
        return button

    def export_png(self, path: str | Path, width: int | None = None) -> Path:
        return export_graphics(self.glw.ci, path, "png", width)

    def export_svg(self, path: str | Path) -> Path:
        return export_graphics(self.glw.ci, path, "svg")

    def export_csv(self, path: str | Path) -> int:
        """The shown runs' metrics (current, then overlays) as one wide CSV; returns the rows written."""
        shown = [self.runs[r] for r in [self.current, *self.overlays] if r is not None]
        try:
            return write_csv(str(path), shown)
        except OSError as exc:
            raise ProjectError(f"cannot write the file: {exc.strerror}", where=str(path),
                               hint="choose another folder") from None

    def export_dialog(self, kind: str) -> str:
        """Ask where, then export; errors go to the error dialog. Returns the path ('' if cancelled)."""
        if self.current is None:
            self.append_log("Nothing to export yet: open or start a run first.")
            return ""
        folder = self.project.exports_dir if self.project is not None else None
        stage = self.runs[self.current].stage or "run"
        path = ask_save_path(self, kind, folder, f"run-{self.current}-{stage}")
        if not path:
            return ""
        try:
            {"png": self.export_png, "svg": self.export_svg, "csv": self.export_csv}[kind](path)
        except ProjectError as exc:
            show_error(self, exc)
            return ""
        self.append_log(f"Exported {kind.upper()} to {path}")
        return path
