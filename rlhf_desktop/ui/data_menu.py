"""File menu actions that move data in and out of the project: starter prompts, imports, exports.

Every import previews first (nothing written), shows the counts and the errors with their line
numbers in a confirmation dialog, and imports only when the user agrees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox, QWidget

from rlhf_desktop.core.errors import ProjectError, UserError
from rlhf_desktop.store import io_demonstrations, io_preferences, io_prompts
from rlhf_desktop.store.prompts import ImportReport, load_starter_prompts
from rlhf_desktop.ui.errors import show_error
from rlhf_desktop.ui.export_dialog import open_export_dialog

IMPORTS: dict[str, tuple[str, Callable[..., ImportReport]]] = {
    "prompts": ("prompts", io_prompts.import_prompts),
    "preferences": ("preference pairs", io_preferences.import_preferences),
    "demonstrations": ("demonstrations", io_demonstrations.import_demonstrations),
}
OPEN_FILTER = "Data files (*.jsonl *.json *.csv *.parquet *.txt);;All files (*)"
EXPORT_FILTERS = {"JSON Lines (*.jsonl)": "jsonl", "Parquet (*.parquet)": "parquet",
                  "Hugging Face dataset folder (*)": "hf"}
MAX_ERRORS_SHOWN = 50


def build_data_actions(window: Any, menu: QMenu) -> None:
    """Add the data actions to `menu` (the File menu) of `window` (a MainWindow)."""
    for text, name, slot, tip in (
            ("Load &Starter Prompts", "actionLoadStarterPrompts", lambda: load_starter(window),
             "Add the bundled starter prompts to the project (twice adds nothing)"),
            ("Import &Prompts…", "actionImportPrompts", lambda: import_file(window, "prompts"),
             "Import prompts from JSONL, CSV, Parquet or text"),
            ("Import P&references…", "actionImportPreferences", lambda: import_file(window, "preferences"),
             "Import preference pairs (TRL's chosen/rejected format) as labels"),
            ("Import &Demonstrations…", "actionImportDemonstrations", lambda: import_file(window, "demonstrations"),
             "Import prompt/completion demonstrations"),
            ("&Export Preferences…", "actionExportPreferences", lambda: export_preferences(window),
             "Write the labels as a preference dataset (JSONL, Parquet or a Hugging Face folder)"),
            ("Export &Checkpoint…", "actionExportCheckpoint",
             lambda: open_export_dialog(window, _folder(window)), "Export a run's checkpoint as a model")):
        window._action(menu, text, name, slot, tip=tip)


def _folder(window: Any) -> Path | None:
    return window.state.project.folder if window.state.project is not None else None


def _project(window: Any) -> Any:
    if window.state.project is None:
        show_error(window, ProjectError("no project is open", hint="open or create a project first (File menu)"))
    return window.state.project


def load_starter(window: Any) -> ImportReport | None:
    """Add the starter prompts; the status bar says how many were new."""
    project = _project(window)
    if project is None:
        return None
    try:
        report = load_starter_prompts(project)
    except UserError as exc:
        show_error(window, exc)
        return None
    window.status.showMessage(f"Loaded {report.imported} starter prompts ({report.skipped} already in the project)",
                              8000)
    return report


def describe(report: ImportReport, noun: str, name: str) -> tuple[str, str]:
    """(summary, detail) of a preview: counts, then each error with its line number."""
    summary = (f"{name}: {report.imported} {noun} to import, {report.skipped} duplicates skipped, "
               f"{len(report.errors)} lines with errors.")
    lines = [f"line {line}: {reason}" for line, reason in report.errors[:MAX_ERRORS_SHOWN]]
    if len(report.errors) > MAX_ERRORS_SHOWN:
        lines.append(f"… and {len(report.errors) - MAX_ERRORS_SHOWN} more")
    return summary, "\n".join(lines)


def confirm(parent: QWidget, title: str, summary: str, detail: str) -> bool:
    box = QMessageBox(QMessageBox.Icon.Question, title, summary + "\n\nImport the good rows?",
                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, parent)
    box.setDefaultButton(QMessageBox.StandardButton.Yes)
    if detail:
        box.setDetailedText(detail)
    return QMessageBox.StandardButton(box.exec()) == QMessageBox.StandardButton.Yes


def import_file(window: Any, kind: str) -> ImportReport | None:
    """Ask for a file, preview the import, confirm, import; returns the real import's report."""
    project = _project(window)
    if project is None:
        return None
    noun, fn = IMPORTS[kind]
    path, _ = QFileDialog.getOpenFileName(window, f"Import {noun}", str(project.folder.parent), OPEN_FILTER)
    if not path:
        return None
    try:
        preview = fn(project, path, preview=True)
        summary, detail = describe(preview, noun, Path(path).name)
        if preview.imported == 0:
            QMessageBox.information(window, f"Import {noun}", summary + (f"\n\n{detail}" if detail else ""))
            return None
        if not confirm(window, f"Import {noun}", summary, detail):
            return None
        report = fn(project, path)
    except UserError as exc:
        show_error(window, exc)
        return None
    window.status.showMessage(f"Imported {report.imported} {noun} from {Path(path).name}", 8000)
    return report


def export_preferences(window: Any) -> dict[str, Any] | None:
    """Ask for a target and format, then write the preference dataset."""
    project = _project(window)
    if project is None:
        return None
    path, chosen = QFileDialog.getSaveFileName(window, "Export preferences",
                                               str(project.folder.parent / "preferences.jsonl"),
                                               ";;".join(EXPORT_FILTERS))
    if not path:
        return None
    fmt = EXPORT_FILTERS.get(chosen, "parquet" if path.endswith(".parquet") else "jsonl")
    try:
        result = io_preferences.export_preferences(project, path, fmt)
    except UserError as exc:
        show_error(window, exc)
        return None
    window.status.showMessage(f"Exported {result['rows']} preference pairs to {result['path']}", 8000)
    return result
