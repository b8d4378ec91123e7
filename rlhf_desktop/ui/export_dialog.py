"""File > Export checkpoint: choose a run, one of its checkpoints, what to export and where; the export
runs in a worker with progress, asks before replacing an existing folder, and reports errors clearly.

The main window connects its menu action to `open_export_dialog(parent, project_dir)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QMessageBox, QProgressBar, QPushButton, QVBoxLayout, QWidget)

from rlhf_desktop.core.errors import ProjectError
from rlhf_desktop.ui.errors import show_error
from rlhf_desktop.ui.jobs import JobRunner

KIND_TEXT = {
    "merged": ("Merged model", "The LoRA adapter merged into the base: a complete model folder that "
                               "AutoModelForCausalLM opens anywhere."),
    "adapter": ("LoRA adapter only", "The adapter weights alone (small); load the base model and call "
                                     "PeftModel.from_pretrained(base, folder)."),
    "reward": ("Reward model", "A merged sequence-classification model with one output: "
                               "AutoModelForSequenceClassification opens it."),
}


def export_job(ctx: Any, folder: str, run_id: int, checkpoint_id: int | None, kind: str, out: str,
               overwrite: bool) -> dict:
    """The worker's job: training.export.export_model with the worker's context."""
    from rlhf_desktop.training.export import export_model

    return export_model(folder, run_id, checkpoint_id, kind, out, overwrite=overwrite, ctx=ctx)


class ExportDialog(QDialog):
    """Choose run, checkpoint, kind and folder; export in a worker."""

    sig_exported = Signal(object)
    """An export finished: {path, files}."""

    def __init__(self, project_dir: str | Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("exportDialog")
        self.setWindowTitle("Export checkpoint")
        self.project_dir = Path(project_dir)
        self.runner = JobRunner("export", self)
        self.runner.sig_progress.connect(self._on_progress)
        self.result: dict | None = None
        self._auto_out = True
        self._runs: list[dict] = []
        self._build()
        self.runner.sig_status.connect(self.status.setText)
        self.runner.sig_running_changed.connect(self._on_running)
        self._load_runs()

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        self.run_combo = QComboBox()
        self.run_combo.setObjectName("exportRun")
        self.checkpoint_combo = QComboBox()
        self.checkpoint_combo.setObjectName("exportCheckpoint")
        self.kind_combo = QComboBox()
        self.kind_combo.setObjectName("exportKind")
        self.kind_help = QLabel()
        self.kind_help.setWordWrap(True)
        self.kind_help.setObjectName("exportKindHelp")
        self.kind_help.setStyleSheet("color: palette(mid);")
        self.out_edit = QLineEdit()
        self.out_edit.setObjectName("exportFolder")
        self.out_edit.textEdited.connect(self._on_out_edited)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Run", self.run_combo)
        form.addRow("Checkpoint", self.checkpoint_combo)
        form.addRow("Export as", self.kind_combo)
        form.addRow("Folder", out_row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.status = QLabel("Choose what to export.")
        self.status.setObjectName("exportStatus")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.buttons = QDialogButtonBox()
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.setObjectName("exportButton")
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.export_button.clicked.connect(self.start_export)
        self.close_button.clicked.connect(self._close_or_cancel)
        box = QVBoxLayout(self)
        box.addLayout(form)
        box.addWidget(self.kind_help)
        box.addWidget(self.progress)
        box.addWidget(self.status)
        box.addWidget(self.buttons)
        self.run_combo.currentIndexChanged.connect(self._on_run_changed)
        self.checkpoint_combo.currentIndexChanged.connect(lambda _i: self._suggest_out())
        self.kind_combo.currentIndexChanged.connect(self._on_kind_changed)
        self.resize(560, self.sizeHint().height())

    # -- choices ------------------------------------------------------------------------------
    def _load_runs(self) -> None:
        from rlhf_desktop.store import runs as store
        from rlhf_desktop.store.project import Project

        with Project.open(self.project_dir) as project:
            self._runs = []
            for run in store.list_runs(project):
                ckpts = [c for c in store.list_checkpoints(project, run["id"]) if Path(c["abs_path"]).is_dir()]
                if ckpts:
                    self._runs.append({**run, "checkpoints": ckpts})
        self.run_combo.clear()
        for run in self._runs:
            name = f" “{run['name']}”" if run["name"] else ""
            self.run_combo.addItem(f"Run {run['id']} · {run['stage'].upper()}{name} · {run['status']}", run["id"])
        if not self._runs:
            self.status.setText("This project has no checkpoints yet: train a stage first.")
        self.run_combo.setCurrentIndex(len(self._runs) - 1)  # the newest run
        self._update_enabled()

    def current_run(self) -> dict | None:
        index = self.run_combo.currentIndex()
        return self._runs[index] if 0 <= index < len(self._runs) else None

    def _on_run_changed(self, _index: int) -> None:
        run = self.current_run()
        self.checkpoint_combo.blockSignals(True)
        self.checkpoint_combo.clear()
        for ckpt in (run or {}).get("checkpoints", []):
            self.checkpoint_combo.addItem(f"step {ckpt['step']}  (checkpoint {ckpt['id']})", ckpt["id"])
        self.checkpoint_combo.setCurrentIndex(self.checkpoint_combo.count() - 1)  # the latest
        self.checkpoint_combo.blockSignals(False)
        self.kind_combo.blockSignals(True)
        self.kind_combo.clear()
        for kind in self._kinds(run):
            self.kind_combo.addItem(KIND_TEXT[kind][0], kind)
        self.kind_combo.blockSignals(False)
        self._on_kind_changed(0)

    @staticmethod
    def _kinds(run: dict | None) -> list[str]:
        if run is None:
            return []
        lora = any(Path(c["abs_path"], "adapter_config.json").is_file() for c in run["checkpoints"])
        first = "reward" if run["stage"] == "rm" else "merged"
        return [first, "adapter"] if lora else [first]

    def _on_kind_changed(self, _index: int) -> None:
        kind = self.kind_combo.currentData()
        self.kind_help.setText(KIND_TEXT[kind][1] if kind else "")
        self._suggest_out()
        self._update_enabled()

    def _suggest_out(self) -> None:
        run, kind = self.current_run(), self.kind_combo.currentData()
        if not self._auto_out or run is None or kind is None:
            return
        ckpt = next((c for c in run["checkpoints"] if c["id"] == self.checkpoint_combo.currentData()),
                    run["checkpoints"][-1])
        self.out_edit.setText(str(self.project_dir / "exports" / f"run-{run['id']}-step-{ckpt['step']}-{kind}"))

    def _on_out_edited(self, _text: str) -> None:
        self._auto_out = False

    def _browse(self) -> None:
        start = str(Path(self.out_edit.text()).parent) if self.out_edit.text() else str(self.project_dir)
        folder = QFileDialog.getExistingDirectory(self, "Export into this folder", start)
        if folder:
            name = Path(self.out_edit.text()).name or "export"
            self.out_edit.setText(str(Path(folder) / name))
            self._auto_out = False

    def _update_enabled(self) -> None:
        idle = not self.runner.running
        for widget in (self.run_combo, self.checkpoint_combo, self.kind_combo, self.out_edit):
            widget.setEnabled(idle)
        self.export_button.setEnabled(idle and self.current_run() is not None and self.kind_combo.count() > 0)
        self.close_button.setText("Close" if idle else "Cancel")

    # -- exporting ----------------------------------------------------------------------------
    def confirm_overwrite(self, target: Path) -> bool:
        """Ask before replacing an existing folder (tests replace QMessageBox.question)."""
        answer = QMessageBox.question(
            self, "Replace the existing folder?",
            f"{target}\nalready exists. Replace it with this export?\n\n"
            "Only a model folder or an earlier export can be replaced.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def start_export(self) -> int | None:
        """Start the export in the worker (after asking when the folder exists); the job id or None."""
        run, kind = self.current_run(), self.kind_combo.currentData()
        text = self.out_edit.text().strip()
        if run is None or kind is None:
            return None
        if not text:
            show_error(self, ProjectError("no folder to export into", where="Folder",
                                          hint="type a folder path or press Browse…"))
            return None
        target = Path(text).expanduser()
        overwrite = False
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            if not self.confirm_overwrite(target):
                self.status.setText("Not exported: the folder exists.")
                return None
            overwrite = True
        self.result = None
        self.progress.setValue(0)
        self.status.setText("Starting…")
        job = self.runner.start(f"Exporting run {run['id']}", export_job, str(self.project_dir), run["id"],
                                self.checkpoint_combo.currentData(), kind, str(target), overwrite,
                                on_finished=self._on_done, on_failed=self._on_failed,
                                on_cancelled=lambda: self.status.setText("Cancelled: nothing was written."))
        self._update_enabled()
        return job

    def _on_progress(self, done: float, total: object) -> None:
        if total:
            self.progress.setValue(int(1000 * done / float(total)))

    def _on_running(self, _running: bool) -> None:
        self._update_enabled()

    def _on_done(self, result: dict) -> None:
        self.result = result
        self.progress.setValue(1000)
        self.status.setText(f"Exported {len(result['files'])} files to {result['path']}")
        self.sig_exported.emit(result)

    def _on_failed(self, info: dict) -> None:
        self.progress.setValue(0)
        self.status.setText(f"Export failed: {info.get('message', '')}")
        show_error(self, info)

    def _close_or_cancel(self) -> None:
        if self.runner.running:
            self.runner.cancel()
        else:
            self.reject()

    def done(self, code: int) -> None:  # noqa: D401 - Qt override: never close under a running export
        if self.runner.running:
            self.runner.cancel()
            self.runner.wait(30.0)
        super().done(code)


def open_export_dialog(parent: QWidget | None, project_dir: str | Path | None) -> ExportDialog | None:
    """Show the Export checkpoint dialog for the open project (window-modal, not blocking); None without one."""
    if project_dir is None:
        show_error(parent, ProjectError("no project is open", hint="open or create a project first (File menu)"))
        return None
    dialog = ExportDialog(project_dir, parent)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog
