"""The Runs view: every training run of the project with its stage, status, lineage and results.

Select a run to see its lineage drawn as a chain (base model, then SFT, RM or DPO, then PPO, with
the reward model a PPO run trained against); open its curves in the dashboard, overlay it on the
run shown there, open a reward model's report, or delete it with its checkpoints after confirming.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QAbstractItemView, QFrame, QHBoxLayout, QHeaderView, QLabel, QMessageBox,
                               QPushButton, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from rlhf_desktop.core.errors import ProjectError
from rlhf_desktop.store import Project
from rlhf_desktop.store import runs as run_store

COLUMNS = ("ID", "Name", "Stage", "Status", "Lineage", "Duration", "Final metrics", "Created")
STATUS_COLOURS = {"done": "#2e7d32", "running": "#1565c0", "paused": "#ef6c00", "failed": "#c62828",
                  "stopped": "#6d4c41", "queued": "#616161"}
# The headline metrics per stage, first present wins within each group.
HEADLINE = {
    "sft": (("loss", "train_loss"), ("mean_token_accuracy", "eval_mean_token_accuracy")),
    "rm": (("eval_accuracy", "accuracy"), ("eval_loss", "loss")),
    "dpo": (("rewards/margins",), ("rewards/accuracies",), ("loss",)),
    "ppo": (("objective/scores",), ("objective/kl",), ("completions/mean_length",)),
}


def _parse(stamp: str | None) -> dt.datetime | None:
    if not stamp:
        return None
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration_text(run: dict[str, Any], now: dt.datetime | None = None) -> str:
    """'12m 05s' from started to finished (or to now while it runs); '' before it started."""
    start = _parse(run.get("started_at"))
    if start is None:
        return ""
    end = _parse(run.get("finished_at")) or now or dt.datetime.now(dt.timezone.utc)
    seconds = max(0, int((end - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"


def metrics_text(run: dict[str, Any]) -> str:
    """The stage's headline final metrics, e.g. 'eval_accuracy 0.93 · eval_loss 0.21'."""
    final = run.get("final_metrics") or {}
    parts = []
    for group in HEADLINE.get(run.get("stage", ""), ()):
        key = next((k for k in group if isinstance(final.get(k), (int, float))), None)
        if key is not None:
            parts.append(f"{key} {final[key]:.4g}")
    return " · ".join(parts)


def run_label(run: dict[str, Any]) -> str:
    return f"{run['stage'].upper()} #{run['id']}" + (f" {run['name']}" if run.get("name") else "")


def lineage_chain(project: Project, run_id: int) -> list[tuple[str, str, int | None]]:
    """[(text, status, run id or None)] from the base model down to the run; a PPO run's reward model last."""
    chain = run_store.lineage(project, run_id)
    base = Path(chain[0]["base_model"]).name if chain and chain[0]["base_model"] else "base model"
    links: list[tuple[str, str, int | None]] = [(base, "", None)]
    links += [(run_label(r), r["status"], int(r["id"])) for r in chain]
    reward_id = (chain[-1].get("config") or {}).get("reward_run_id") if chain else None
    if reward_id is not None:
        try:
            reward = run_store.get_run(project, int(reward_id))
            links.append((f"reward: {run_label(reward)}", reward["status"], int(reward["id"])))
        except ProjectError:  # a deleted reward run leaves the rest of the chain readable
            links.append((f"reward: RM #{reward_id} (deleted)", "", None))
    return links


class RunsView(QWidget):
    """A table of runs, the selected run's lineage chain, and actions on it."""

    sig_open_run = Signal(int)
    """Show this run's curves in the dashboard."""
    sig_compare_run = Signal(int)
    """Overlay this run on the dashboard's current run."""
    sig_open_rm_report = Signal(int)
    """Show this reward-model run's report."""
    sig_run_deleted = Signal(int)
    """A run (and its checkpoints) was deleted."""

    def __init__(self, state: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("runsView")
        self.state = state
        self.project: Project | None = None
        self.is_active: Callable[[int], bool] | None = None  # set by the main window: is a job running it?
        self.tree = QTreeWidget()
        self.tree.setObjectName("runsTable")
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.tree.header().setStretchLastSection(True)
        self.tree.itemSelectionChanged.connect(self._selection_changed)
        self.tree.itemDoubleClicked.connect(lambda *_: self._emit(self.sig_open_run))
        self.chain = QHBoxLayout()
        chain_box = QFrame()
        chain_box.setObjectName("lineageChain")
        chain_box.setLayout(self.chain)
        self.buttons: dict[str, QPushButton] = {}
        bar = QHBoxLayout()
        for key, text, tip, slot in (
                ("open", "Open curves", "Show this run in the dashboard", lambda: self._emit(self.sig_open_run)),
                ("compare", "Compare", "Overlay this run on the dashboard's run", lambda: self._emit(self.sig_compare_run)),
                ("report", "Reward-model report", "Accuracy, calibration and length bias of this reward model",
                 lambda: self._emit(self.sig_open_rm_report)),
                ("delete", "Delete…", "Delete the run and its checkpoints", self.delete_selected),
                ("refresh", "Refresh", "Read the runs again", self.refresh)):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            bar.addWidget(button)
            self.buttons[key] = button
        bar.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.tree, 1)
        layout.addWidget(QLabel("Lineage of the selected run:"))
        layout.addWidget(chain_box)
        self._selection_changed()
        if state is not None and hasattr(state, "sig_project_changed"):
            state.sig_project_changed.connect(self.set_project)
            self.set_project(getattr(state, "project", None))

    def set_project(self, project: Project | None) -> None:
        self.project = project
        self.refresh()

    def refresh(self) -> None:
        """Read the runs again, keeping the selection."""
        keep = self.selected_run_id()
        self.tree.clear()
        runs = run_store.list_runs(self.project) if self.project is not None else []
        for run in reversed(runs):  # newest first
            item = QTreeWidgetItem([str(run["id"]), run.get("name") or "", run["stage"].upper(), run["status"],
                                    self._lineage_text(run), duration_text(run), metrics_text(run),
                                    (run.get("created_at") or "")[:16].replace("T", " ")])
            item.setData(0, Qt.ItemDataRole.UserRole, int(run["id"]))
            item.setData(0, Qt.ItemDataRole.UserRole + 1, run["stage"])
            item.setForeground(3, QBrush(QColor(STATUS_COLOURS.get(run["status"], "#424242"))))
            item.setToolTip(4, self._lineage_text(run))
            if run.get("error"):
                item.setToolTip(3, run["error"])
            self.tree.addTopLevelItem(item)
            if keep == run["id"]:
                item.setSelected(True)
        self._selection_changed()

    def _lineage_text(self, run: dict[str, Any]) -> str:
        return " → ".join(text for text, _status, _id in lineage_chain(self.project, run["id"]))

    def selected_run_id(self) -> int | None:
        items = self.tree.selectedItems()
        return int(items[0].data(0, Qt.ItemDataRole.UserRole)) if items else None

    def select_run(self, run_id: int) -> None:
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            item.setSelected(int(item.data(0, Qt.ItemDataRole.UserRole)) == int(run_id))

    def _emit(self, signal: Any) -> None:
        run_id = self.selected_run_id()
        if run_id is not None:
            signal.emit(run_id)

    def _selection_changed(self) -> None:
        run_id = self.selected_run_id()
        stage = self.tree.selectedItems()[0].data(0, Qt.ItemDataRole.UserRole + 1) if run_id is not None else None
        for key in ("open", "compare", "delete"):
            self.buttons[key].setEnabled(run_id is not None)
        self.buttons["report"].setEnabled(stage == "rm")
        self._draw_chain(run_id)

    def _draw_chain(self, run_id: int | None) -> None:
        """The lineage as chips joined by arrows; a chip selects its run."""
        while self.chain.count():
            widget = self.chain.takeAt(0).widget()
            if widget is not None:
                widget.setParent(None)  # off the chain at once; Qt frees it later
                widget.deleteLater()
        if run_id is None or self.project is None:
            self.chain.addWidget(QLabel("—"))
            self.chain.addStretch(1)
            return
        for i, (text, status, link_id) in enumerate(lineage_chain(self.project, run_id)):
            if i:
                self.chain.addWidget(QLabel("→"))
            chip = QPushButton(f"{text}" + (f"  ({status})" if status else ""))
            chip.setFlat(link_id is None)
            colour = STATUS_COLOURS.get(status, "#424242")
            chip.setStyleSheet(f"QPushButton {{ color: {colour}; font-weight: {'bold' if link_id == run_id else 'normal'};"
                               " padding: 3px 8px; }")
            if link_id is not None:
                chip.clicked.connect(lambda _c=False, rid=link_id: self.select_run(rid))
            self.chain.addWidget(chip)
        self.chain.addStretch(1)

    def delete_selected(self) -> bool:
        """Delete the selected run and its checkpoint files after the user confirms."""
        run_id = self.selected_run_id()
        if run_id is None or self.project is None:
            return False
        run = run_store.get_run(self.project, run_id)
        active = self.is_active(run_id) if self.is_active is not None else run["status"] in ("running", "paused")
        if active:
            QMessageBox.information(self, "Run in progress", f"{run_label(run)} is {run['status']}: stop it first.")
            return False
        checkpoints = len(run_store.list_checkpoints(self.project, run_id))
        answer = QMessageBox.question(
            self, "Delete run",
            f"Delete {run_label(run)} with its metrics, samples and {checkpoints} checkpoint"
            f"{'s' if checkpoints != 1 else ''}? The files are removed from disk; this cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return False
        run_store.delete_run(self.project, run_id, delete_files=True)
        self.refresh()
        self.sig_run_deleted.emit(run_id)
        return True
