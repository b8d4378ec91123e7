"""The reward-model report: "is my reward model good enough?" answered on one screen.

Held-out accuracy with its 95% interval and plain-language findings on top; below, calibration,
the margin histogram, accuracy by length difference (a length-bias probe) and reward against
response length. `show_run` scores the run's held-out pairs in a worker (`rm_report.report_for_run`);
the run box lists the project's reward-model runs, and the newest one's report is computed when the
view is first shown without one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from rlhf_desktop.core.errors import ProjectError
from rlhf_desktop.store import Project
from rlhf_desktop.store import runs as run_store
from rlhf_desktop.training.rm_report import RMReport, report_for_run
from rlhf_desktop.ui.dashboard_export import ask_save_path, export_graphics
from rlhf_desktop.ui.errors import show_error
from rlhf_desktop.ui.jobs import JobRunner
from rlhf_desktop.ui.plots import BACKGROUND, PALETTE, style_plot

CHOSEN, REJECTED = "#2ca02c", "#d62728"
NO_REPORT = "No report yet: train a reward model (Train tab), or choose a reward-model run."


class RMReportView(QWidget):
    """The report of one reward-model run (or of any RMReport given to `set_report`)."""

    sig_report_ready = Signal(object)
    """A report was computed and shown (the RMReport)."""

    def __init__(self, state: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("rmReport")
        self.state = state
        self.report: RMReport | None = None
        self.run_id: int | None = None
        self._folder: Path | None = None
        self.runner = state.jobs.runner("rm-report") if state is not None else JobRunner("rm-report", self)
        self.headline = QLabel(NO_REPORT)
        self.headline.setObjectName("rmHeadline")
        self.headline.setTextFormat(Qt.TextFormat.RichText)
        self.headline.setWordWrap(True)  # a long headline wraps instead of widening the window
        self.findings = QLabel("")
        self.findings.setWordWrap(True)
        self.findings.setTextFormat(Qt.TextFormat.RichText)
        self.findings.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.run_box = QComboBox(objectName="rmRunBox")
        self.run_box.setToolTip("The reward-model run whose held-out pairs the report scores")
        self.run_box.setMinimumContentsLength(18)
        self.run_box.activated.connect(self._on_run_chosen)
        buttons = QHBoxLayout()
        buttons.addWidget(QLabel("Run:"))
        buttons.addWidget(self.run_box)
        buttons.addWidget(self.headline, 1)
        for kind in ("png", "svg"):
            button = QToolButton()
            button.setText(f"Export {kind.upper()}")
            button.clicked.connect(lambda _c=False, k=kind: self.export_dialog(k))
            buttons.addWidget(button)
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setBackground(BACKGROUND)
        self.calibration = self._plot(0, 0, "Calibration", "predicted P(chosen preferred)", "observed rate")
        self.margins = self._plot(0, 1, "Margin histogram", "score(chosen) − score(rejected)", "pairs")
        self.by_length = self._plot(1, 0, "Accuracy by length difference", "length(chosen) − length(rejected), tokens",
                                    "accuracy")
        self.scatter = self._plot(1, 1, "Reward against response length", "response length, tokens", "reward")
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.findings)
        layout.addWidget(self.glw, 1)
        self.runner.sig_status.connect(lambda text: self.headline.setText(f"<i>{text}…</i>"))
        if state is not None and hasattr(state, "sig_project_changed"):
            state.sig_project_changed.connect(self._on_project_changed)

    # -- choosing a run -----------------------------------------------------------------------
    def refresh_runs(self) -> None:
        """Fill the run box with the project's reward-model runs that saved a checkpoint, newest first."""
        project = getattr(self.state, "project", None)
        self.run_box.clear()
        if project is None:
            return
        for run in sorted(run_store.list_runs(project, "rm"), key=lambda r: r["id"], reverse=True):
            if run_store.latest_checkpoint(project, run["id"]) is not None:
                self.run_box.addItem(f"#{run['id']} {run.get('name') or ''} ({run['status']})".replace("  ", " "),
                                     run["id"])
        index = self.run_box.findData(self.run_id) if self.run_id is not None else -1
        self.run_box.setCurrentIndex(max(index, 0))

    def _on_run_chosen(self, index: int) -> None:
        run_id = self.run_box.itemData(index)
        project = getattr(self.state, "project", None)
        if run_id is not None and project is not None and not (run_id == self.run_id and self.report is not None):
            self.show_run(project, run_id)

    def _on_project_changed(self, _project: Any) -> None:
        self.runner.cancel()
        self.report, self.run_id = None, None
        for plot in (self.calibration, self.margins, self.by_length, self.scatter):
            plot.clear()
        self.headline.setText(NO_REPORT)
        self.findings.setText("")
        self.refresh_runs()

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.refresh_runs()
        if self.report is None and not self.runner.running and self.run_box.count():
            self._on_run_chosen(0)  # the newest reward model: "is it good enough?" without a click

    def _plot(self, row: int, col: int, title: str, xlabel: str, ylabel: str) -> pg.PlotItem:
        plot = self.glw.addPlot(row=row, col=col)
        style_plot(plot, title)
        plot.setLabel("bottom", xlabel, color="#555555")
        plot.setLabel("left", ylabel, color="#555555")
        plot.setMenuEnabled(False)
        return plot

    # -- computing ----------------------------------------------------------------------------
    def show_run(self, project: Project | str | Path, run_id: int) -> int:
        """Score the run's held-out pairs in a worker and show the report; returns the job id."""
        folder = project.folder if isinstance(project, Project) else Path(project).expanduser().resolve()
        self.run_id, self._folder = int(run_id), folder
        index = self.run_box.findData(int(run_id))
        if index >= 0:
            self.run_box.setCurrentIndex(index)
        self.headline.setText(f"<i>Reward-model run #{run_id}: scoring the held-out pairs…</i>")
        self.findings.setText("")
        return self.runner.start(f"Reward-model report #{run_id}", report_for_run, str(folder), int(run_id),
                                 on_finished=lambda report, rid=int(run_id): self.set_report(report, f"run #{rid}"),
                                 on_failed=self._failed)

    def _failed(self, info: dict) -> None:
        self.headline.setText(f"<b>No report:</b> {info.get('message', '')}")
        show_error(self, info)

    # -- drawing ------------------------------------------------------------------------------
    def set_report(self, report: RMReport, title: str = "") -> None:
        """Show `report` (computed by rm_report.compute_report or report_for_run)."""
        self.report = report
        colour = "#2e7d32" if report.ci_low > 0.5 else "#c62828"
        self.headline.setText(
            f"<span style='font-size:15pt; color:{colour}'><b>{report.accuracy:.1%}</b></span> held-out accuracy "
            f"(95% CI {report.ci_low:.1%}–{report.ci_high:.1%}, {report.n} pairs)"
            f"{' · ' + title if title else ''} &nbsp;<span style='color:#666'>ECE {report.ece:.3f} · mean margin "
            f"{report.mean_margin:.3g} · 'longer wins' {report.length_baseline:.0%} · reward/length r = "
            f"{report.reward_length_corr:.2f}</span>")
        self.findings.setText("<ul style='margin:0'>" + "".join(f"<li>{f}</li>" for f in report.findings) + "</ul>")
        for plot in (self.calibration, self.margins, self.by_length, self.scatter):
            plot.clear()
        self._draw_calibration(report)
        self._draw_margins(report)
        self._draw_by_length(report)
        self._draw_scatter(report)
        self.sig_report_ready.emit(report)

    def _draw_calibration(self, report: RMReport) -> None:
        plot = self.calibration
        plot.plot([0, 1], [0, 1], pen=pg.mkPen("#999999", style=Qt.PenStyle.DashLine))
        table = report.calibration
        x = np.array([b["predicted"] for b in table])
        y = np.array([b["observed"] for b in table])
        counts = np.array([b["count"] for b in table], dtype=float)
        sizes = 6 + 14 * np.sqrt(counts / max(counts.max(), 1.0)) if len(counts) else []
        plot.plot(x, y, pen=pg.mkPen(PALETTE[0], width=2), symbol="o", symbolSize=sizes,
                  symbolBrush=pg.mkBrush(PALETTE[0]), symbolPen=None)
        plot.setXRange(0, 1, padding=0.02)
        plot.setYRange(0, 1, padding=0.02)

    def _draw_margins(self, report: RMReport) -> None:
        plot = self.margins
        edges, counts = np.array(report.margin_edges), np.array(report.margin_counts, dtype=float)
        centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
        brushes = [pg.mkBrush(CHOSEN if c > 0 else REJECTED) for c in centres]
        plot.addItem(pg.BarGraphItem(x=centres, height=counts, width=width * 0.95, brushes=brushes, pen=None))
        plot.addItem(pg.InfiniteLine(0, angle=90, pen=pg.mkPen("#333333", style=Qt.PenStyle.DashLine)))

    def _draw_by_length(self, report: RMReport) -> None:
        plot = self.by_length
        bins = report.length_bins
        x = np.arange(len(bins), dtype=float)
        acc = np.array([b["accuracy"] for b in bins])
        plot.addItem(pg.BarGraphItem(x=x, height=acc, width=0.7, brush=pg.mkBrush(PALETTE[0] + "b0"), pen=None))
        plot.addItem(pg.ErrorBarItem(x=x, y=acc, top=np.array([b["ci_high"] for b in bins]) - acc,
                                     bottom=acc - np.array([b["ci_low"] for b in bins]), beam=0.2,
                                     pen=pg.mkPen("#333333")))
        plot.addItem(pg.InfiniteLine(0.5, angle=0, pen=pg.mkPen("#999999", style=Qt.PenStyle.DashLine),
                                     label="chance", labelOpts={"position": 0.05, "color": "#777777"}))
        plot.addItem(pg.InfiniteLine(report.accuracy, angle=0, pen=pg.mkPen(PALETTE[1]),
                                     label="overall", labelOpts={"position": 0.95, "color": PALETTE[1]}))
        ticks = [(i, f"{b['low']:.0f}…{b['high']:.0f} (n={b['count']})") for i, b in enumerate(bins)]
        plot.getAxis("bottom").setTicks([ticks])
        plot.setYRange(0, 1.05, padding=0)

    def _draw_scatter(self, report: RMReport) -> None:
        plot = self.scatter
        lengths, rewards = np.array(report.lengths), np.array(report.rewards)
        chosen = np.array(report.is_chosen, dtype=bool)
        for mask, colour in ((chosen, CHOSEN), (~chosen, REJECTED)):
            plot.addItem(pg.ScatterPlotItem(lengths[mask], rewards[mask], size=6, pen=None,
                                            brush=pg.mkBrush(colour + "99")))
        # the key goes in the title: a legend inside the view would hide points
        plot.setTitle(f"Reward against response length &nbsp;<span style='color:{CHOSEN}'>● chosen</span> "
                      f"<span style='color:{REJECTED}'>● rejected</span>", color="#333333", size="10pt")

    # -- export -------------------------------------------------------------------------------
    def export_dialog(self, kind: str) -> str:
        if self.report is None:
            return ""
        folder = (self._folder / "exports") if self._folder is not None else None
        path = ask_save_path(self, kind, folder, f"rm-report-{self.run_id or 'run'}")
        if path:
            try:
                export_graphics(self.glw.ci, path, kind)
            except ProjectError as exc:
                show_error(self, exc)
                return ""
        return path
