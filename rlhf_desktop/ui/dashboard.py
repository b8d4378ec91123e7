"""The live training dashboard: every stage's curves, the samples behind each point, alarms.

Metric rows reach the dashboard in batches (`append_metrics`, `append_samples`: cheap, they only
buffer); its own 150 ms timer drains the buffers and redraws once per tick, feeding the live run's
rows to an `AlarmMonitor` on the way. A finished run is opened with `show_run`; earlier runs of the
same stage overlay in fainter pens. Click a curve to read that step's rollouts; press L on a
rollout to send its prompt to labeling.

    dash = Dashboard(state)
    dash.begin_run(run_id, "ppo", max_length=64)
    runner.sig_metrics.connect(lambda rows: dash.append_metrics(run_id, rows))
    dash.sig_alarm.connect(lambda alarm: runner.pause())
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QSlider,
                               QSplitter, QTabWidget, QToolButton, QVBoxLayout, QWidget)

from rlhf_desktop.store import runs as run_store
from rlhf_desktop.training.alarms import KIND_TITLES, Alarm, AlarmMonitor, config_max_length
from rlhf_desktop.ui.dashboard_data import PANELS, PanelSpec, RunData, infer_stage, panel_keys
from rlhf_desktop.ui.dashboard_export import ExportMixin
from rlhf_desktop.ui.dashboard_pointer import PointerMixin
from rlhf_desktop.ui.dashboard_ranges import RangesMixin
from rlhf_desktop.ui.dashboard_samples import SamplesPanel
from rlhf_desktop.ui.dashboard_store import StoreMixin
from rlhf_desktop.ui.plots import BACKGROUND, MetricPanel

DRAIN_INTERVAL_MS = 150  # 6-7 redraws a second at most, whatever the step rate
PANELS_PER_TICK = 3  # plots redrawn per timer tick; the others follow on the next ticks
Y_MOVES_PER_TICK = 1  # y ranges moved per timer tick (a move re-renders an axis); the others follow
COLUMNS = 3
DEFAULT_SMOOTHING = 0.6


class Dashboard(RangesMixin, PointerMixin, StoreMixin, ExportMixin, QWidget):
    """Curves of the current run (live or finished) and overlays, samples, alarms and the run log."""

    sig_alarm = Signal(object)
    """An alarm whose action is "pause" fired on the live run (Alarm.to_dict()): pause the run."""
    sig_warning = Signal(object)
    """An alarm whose action is "warn" fired on the live run (Alarm.to_dict())."""
    sig_send_to_labeling = Signal(str)
    """A rollout's prompt was added to the project for labeling (the prompt text)."""
    sig_step_selected = Signal(int)
    """The user clicked a curve: the step whose samples are now shown."""

    def __init__(self, state: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("dashboard")
        self.state = state
        self.runs: dict[int, RunData] = {}
        self.samples: dict[int, dict[int, list[dict[str, Any]]]] = {}
        self.alarms: dict[int, list[Alarm]] = {}
        self.monitors: dict[int, AlarmMonitor] = {}
        self.current: int | None = None
        self.live: int | None = None
        self.overlays: list[int] = []
        self.stage: str | None = None
        self.panels: list[MetricPanel] = []
        self.extra_key = ""
        self.wall = False
        self.smoothing = DEFAULT_SMOOTHING
        self.log_y = False
        self.selected_step: int | None = None
        self.follow_latest = True
        self.follow_view = True  # False once the user zooms or pans, until Fit
        self._x_window: tuple[float, float] | None = None
        self._pending: dict[int, list[tuple]] = {}
        self._dirty: dict[int, set[str]] = {}  # run -> keys with rows not drawn yet
        self._y_pending: dict[int, None] = {}  # panels (by index, in order) whose y range may have to move
        self._shown_keys: set[str] = set()  # every key some plot shows
        self._next_panel = 0
        self._pending_samples: list[tuple[int, int, list[dict[str, Any]]]] = []
        self._max_length: dict[int, float | None] = {}
        self._planned_steps: float | None = None  # max_steps of the live run, when its config says
        self.ended: dict[int, str] = {}  # run -> how its live job ended (shown in the run label)
        self._attached: list[tuple[Any, Any]] = []  # (signal, slot) of the followed job
        self._init_store()
        self._build_ui()
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_INTERVAL_MS)
        self._timer.timeout.connect(self._tick)
        if state is not None and hasattr(state, "sig_project_changed"):
            state.sig_project_changed.connect(self.set_project)
            if getattr(state, "project", None) is not None:
                self.set_project(state.project)

    # -- layout -------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.run_label = QLabel("No run: start a training run or open one from the Runs view.")
        self.run_label.setObjectName("dashboardRunLabel")
        self.x_combo = QComboBox()
        self.x_combo.addItems(["Steps", "Wall time"])
        self.x_combo.setToolTip("x axis: training steps, or seconds since the run started")
        self.x_combo.currentIndexChanged.connect(lambda i: self.set_x_axis("wall" if i else "step"))
        self.smooth_slider = QSlider(Qt.Orientation.Horizontal)
        self.smooth_slider.setRange(0, 99)
        self.smooth_slider.setValue(int(DEFAULT_SMOOTHING * 100))
        self.smooth_slider.setFixedWidth(110)
        self.smooth_slider.setToolTip("EMA smoothing weight (0: raw only); the raw curve stays faint behind")
        self.smooth_label = QLabel(f"{DEFAULT_SMOOTHING:.2f}")
        self.smooth_slider.valueChanged.connect(lambda v: self.set_smoothing(v / 100.0))
        self.log_check = QCheckBox("Log y")
        self.log_check.toggled.connect(self.set_log_y)
        self.compare_check = QCheckBox("Compare earlier runs")
        self.compare_check.setToolTip("Overlay the latest earlier runs of the same stage in fainter pens")
        self.compare_check.toggled.connect(self._toggle_compare)
        self.extra_combo = QComboBox()
        self.extra_combo.setToolTip("Plot one more metric the stage's panels do not show")
        self.extra_combo.addItem("More metrics…")
        self.extra_combo.setMaximumWidth(200)
        self.extra_combo.currentTextChanged.connect(self._choose_extra)
        fit = QToolButton()
        fit.setText("Fit")
        fit.setToolTip("Reset zoom and pan on every plot")
        fit.clicked.connect(self.fit)
        alarms = QToolButton()
        alarms.setText("Alarms…")
        alarms.setToolTip("Alarm thresholds, and whether each alarm warns or pauses the run")
        alarms.clicked.connect(self.edit_alarm_settings)
        bar = QHBoxLayout()
        bar.addWidget(self.run_label, 1)
        for widget in (QLabel("x:"), self.x_combo, QLabel("Smoothing"), self.smooth_slider, self.smooth_label,
                       self.log_check, self.compare_check, self.extra_combo, fit, alarms, self._export_button()):
            bar.addWidget(widget)
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setBackground(BACKGROUND)
        self.glw.setObjectName("dashboardPlots")
        self.glw.ci.setSpacing(4)
        self.readout = QLabel(" ")
        self.readout.setObjectName("dashboardReadout")
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.samples_panel = SamplesPanel()
        self.samples_panel.sig_send_prompt.connect(self.send_to_labeling)
        self.samples_panel.sig_latest_requested.connect(self.follow_latest_samples)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setObjectName("dashboardLog")
        self.tabs = QTabWidget()
        self.tabs.addTab(self.samples_panel, "Samples")
        self.tabs.addTab(self.log_view, "Run log")
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.glw, 1)
        top_layout.addWidget(self.readout)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(self.tabs)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(bar)
        layout.addWidget(split, 1)
        self._hover = pg.SignalProxy(self.glw.scene().sigMouseMoved, rateLimit=30, slot=self._on_hover)
        self.glw.scene().sigMouseClicked.connect(self._on_click)

    # -- live input (GUI thread; cheap: buffering only) ----------------------------------------
    def begin_run(self, run_id: int, stage: str | None = None, name: str = "",
                  max_length: float | None = None) -> None:
        """Show `run_id` as the live run; its rows come through append_metrics/append_samples."""
        run_id = int(run_id)
        info = self._stored_run(run_id)
        stage = stage or (info or {}).get("stage")
        run = self.runs.get(run_id) or RunData(run_id, stage, name or (info or {}).get("name", ""))
        run.stage = run.stage or stage
        self.runs[run_id] = run
        if max_length is None and info is not None:
            max_length = config_max_length(info.get("config") or {})
        self._max_length[run_id] = max_length
        planned = ((info or {}).get("config") or {}).get("max_steps")
        self._planned_steps = float(planned) if isinstance(planned, (int, float)) and planned > 0 else None
        self.monitors[run_id] = AlarmMonitor(self.alarm_config, max_length=max_length)
        self.alarms.setdefault(run_id, [])
        self.live = run_id
        self.follow_latest, self.selected_step = True, None
        self.samples_panel.show_rows(None, [])
        self._set_current(run_id)
        if info is not None and not len(run.steps) and self.project is not None:
            # Rows the job reported before the dashboard was attached are in the store already
            # (a short run can finish before its "run started" signal is handled): take them first.
            stored = [(r["step"], r["wall_time"], r["metrics"]) for r in run_store.get_metrics(self.project, run_id)]
            if stored:
                self._pending[run_id] = stored + self._pending.get(run_id, [])
                self._wake()

    def append_metrics(self, run_id: int, rows: Sequence[tuple]) -> None:
        """Buffer metric rows of a run: (step, wall_time, metrics) or (step, metrics)."""
        if int(run_id) not in self.runs and int(run_id) not in self._pending:
            self._pending[int(run_id)] = []
            if self.live is None or self.live not in self.runs:
                self.live = int(run_id)
        now = time.time()  # rows without a wall time (JobRunner.sig_metrics) arrived now
        self._pending.setdefault(int(run_id), []).extend(r if len(r) == 3 else (r[0], now, r[1]) for r in rows)
        self._wake()

    def append_samples(self, run_id: int, step: int, rows: Sequence[dict[str, Any]]) -> None:
        """Buffer sample rows (prompt, response, score, kl, extra) of one step."""
        self._pending_samples.append((int(run_id), int(step), [dict(r) for r in rows]))
        self._wake()

    def append_log(self, text: str) -> None:
        """A line for the run log (the job's log lines, alarms)."""
        self.log_view.appendPlainText(text)

    def attach_job(self, runner: Any, run_id: int, stage: str | None = None, max_length: float | None = None) -> None:
        """Follow a JobRunner's training job: its metrics, samples and log feed this dashboard."""
        self.detach_job()
        self.begin_run(run_id, stage, max_length=max_length)
        rid = int(run_id)
        self._attached = [(runner.sig_metrics, lambda rows: self.append_metrics(rid, rows)),
                          (runner.sig_samples, lambda step, rows: self.append_samples(rid, step, rows)),
                          (runner.sig_log, self.append_log)]
        for signal, slot in self._attached:
            signal.connect(slot)

    def detach_job(self) -> None:
        """Stop following the job attached by attach_job (its later rows are not shown)."""
        for signal, slot in self._attached:
            signal.disconnect(slot)
        self._attached = []

    def finish_run(self, status: str) -> None:
        """The followed job ended (done, stopped, failed): draw what is buffered, then show the run as
        finished, its x axis fitted to its steps."""
        self.detach_job()
        self.flush()
        if self.live is not None:
            self.ended[self.live] = status
            self.live = None
            self._x_window = None
            self._follow_x()
        self._update_run_label()

    def _wake(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    # -- the drain (timer) --------------------------------------------------------------------
    def flush(self, panels: int | None = None) -> None:
        """Take everything buffered (series, alarms, samples) and redraw.

        `panels` caps how many plots are redrawn in this call; the timer passes PANELS_PER_TICK so
        one tick's work stays small while a worker competes for the CPU and the GIL, and the other
        plots follow on the next ticks. None (the default) redraws every plot with new data.
        """
        pending, self._pending = self._pending, {}
        samples, self._pending_samples = self._pending_samples, []
        for run_id, raw in pending.items():
            self._ingest(run_id, [(int(step), float(wall), metrics) for step, wall, metrics in raw])
        for run_id, step, rows in samples:
            self.samples.setdefault(run_id, {})[step] = rows
            if run_id == self.current and self.follow_latest:
                self.samples_panel.show_rows(step, rows, "latest")
        self._draw_dirty(panels)
        if not self._dirty and not self._pending and not self._pending_samples and not self._y_pending:
            self._timer.stop()

    def _tick(self) -> None:
        self.flush(PANELS_PER_TICK)

    def _ingest(self, run_id: int, rows: list[tuple[int, float, dict[str, float]]]) -> None:
        run = self.runs.get(run_id)
        if run is None:
            self.begin_run(run_id)
            run = self.runs[run_id]
        last = run.steps.view()[-1] if len(run.steps) else -float("inf")
        kept = []
        for row in rows:  # a run read from the store, then streamed: each step once, in order
            if row[0] > last:
                kept.append(row)
                last = row[0]
        rows = kept
        if not rows:
            return
        if run.stage is None:
            run.stage = infer_stage(k for r in rows for k in r[2])
            if run_id == self.current:
                self._set_current(run_id)
        keys = run.add_rows(rows)
        monitor = self.monitors.get(run_id)
        if monitor is not None and run_id == self.live:
            for step, _wall, metrics in rows:
                for alarm in monitor.feed(step, metrics):
                    self._raise_alarm(run_id, alarm)
        if run_id == self.current or run_id in self.overlays:
            shown = keys & self._shown_keys
            if shown:
                self._dirty.setdefault(run_id, set()).update(shown)
            self._update_extra_choices()

    def _draw_dirty(self, limit: int | None) -> None:
        """Redraw the plots whose series got rows, at most `limit` of them, round robin.

        With a limit (a timer tick), a tick that has to move the shared x window does only that: the
        move re-renders every plot, the new rows are drawn on the next tick.
        """
        if limit is not None and self._dirty and self._follow_x():
            return
        if not self._dirty or not self.panels:
            self._dirty.clear()
            self._follow_y(None if limit is None else Y_MOVES_PER_TICK)
            return
        count, drawn, start = len(self.panels), 0, self._next_panel
        for offset in range(count):
            index = (start + offset) % count
            if limit is not None and drawn >= limit:
                self._next_panel = index  # the next tick starts where this one stopped
                break
            panel = self.panels[index]
            work = [(run_id, keys & panel.shown_keys) for run_id, keys in self._dirty.items()]
            work = [(run_id, keys) for run_id, keys in work if keys]
            for run_id, keys in work:
                self._draw_panel(panel, self.runs[run_id], keys)
                self._dirty[run_id] -= keys
            if work:
                drawn += 1
                if self.follow_view and not self.log_y:
                    self._y_pending[index] = None
        self._dirty = {run_id: keys for run_id, keys in self._dirty.items() if keys}
        self._follow_y(None if limit is None else Y_MOVES_PER_TICK)
        self._follow_x()

    def _raise_alarm(self, run_id: int, alarm: Alarm) -> None:
        self.alarms.setdefault(run_id, []).append(alarm)
        if run_id == self.current:
            self._mark(run_id, alarm)
        self.append_log(f"[{alarm.action.upper()}] run #{run_id} {alarm.message}")
        self._update_log_title()
        info = {**alarm.to_dict(), "run_id": run_id}
        (self.sig_alarm if alarm.action == "pause" else self.sig_warning).emit(info)

    # -- display ------------------------------------------------------------------------------
    def _set_current(self, run_id: int) -> None:
        run = self.runs[run_id]
        self.current = run_id
        if run.stage != self.stage or not self.panels:
            self.stage = run.stage
            self.overlays = [r for r in self.overlays if self.runs[r].stage == run.stage and r != run_id]
        self.overlays = [r for r in self.overlays if r != run_id]
        self._update_run_label()
        self._rebuild()
        self._update_extra_choices()
        self._update_log_title()

    def _specs(self) -> list[PanelSpec]:
        specs = list(PANELS.get(self.stage or "", ()))
        if self.extra_key:
            specs.append(PanelSpec(self.extra_key, ((self.extra_key, (self.extra_key,)),)))
        return specs

    def _rebuild(self) -> None:
        """Recreate the panels for the current stage and draw every shown run into them."""
        self.glw.clear()
        self.panels = []
        specs = self._specs()
        last_row = (len(specs) - 1) // COLUMNS
        for i, spec in enumerate(specs):
            panel = MetricPanel(self.glw.ci, i // COLUMNS, i % COLUMNS, spec.title)
            panel.spec = spec
            panel.shown_keys = {k for _label, candidates in spec.series for k in candidates}
            panel.set_legend([label for label, _candidates in spec.series])
            panel.prepare(len(spec.series))
            panel.set_log(self.log_y)
            if i // COLUMNS == last_row or i + COLUMNS >= len(specs):
                panel.plot.setLabel("bottom", "seconds since start" if self.wall else "step", color="#555555")
            else:  # x is shared (linked): read on the lowest plot of each column; an axis fewer per
                panel.plot.hideAxis("bottom")  # plot to re-render when the x window grows
            if self.panels:
                panel.plot.setXLink(self.panels[0].plot)
            panel.view_box.sigRangeChangedManually.connect(self._user_moved_view)
            self.panels.append(panel)
        self._shown_keys = set().union(*(p.shown_keys for p in self.panels)) if self.panels else set()
        self._x_window, self._dirty, self._y_pending = None, {}, {}
        for run_id in [*self.overlays, self.current]:
            if run_id is not None:
                self._draw_run(self.runs[run_id], None)
        self._follow_view()
        self._redraw_markers()
        self._place_selected()

    def _draw_run(self, run: RunData, keys: set[str] | None) -> None:
        """Hand the run's series (all, or those in `keys`) to their plots' curves."""
        for panel in self.panels:
            self._draw_panel(panel, run, keys)

    def _draw_panel(self, panel: MetricPanel, run: RunData, keys: set[str] | None) -> None:
        overlay = run.run_id != self.current
        run.set_smoothing(self.smoothing)
        for index, (label, candidates) in enumerate(panel.spec.series):
            key = next((k for k in candidates if k in run.series), None)
            if key is None or (keys is not None and key not in keys):
                continue
            series = run.series[key]
            smooth = series.smooth.view() if self.smoothing > 0 else None
            text = label if not overlay else f"{label} {run.label}"
            # an overlay shows only its smoothed curve when there is one: less clutter
            panel.set_series(run.run_id, key, text, index, overlay, run.x_of(series, self.wall),
                             series.y.view(), smooth, show_raw=not (overlay and smooth is not None))

    def curve(self, run_id: int, key: str) -> pg.PlotDataItem | None:
        """The raw curve of `key` for a run (None when not plotted)."""
        for panel in self.panels:
            pair = panel.curves.get((int(run_id), key))
            if pair is not None:
                return pair[0]
        return None

    def set_x_axis(self, mode: str) -> None:
        """"step" or "wall" (seconds since each run's first row)."""
        self.wall = mode == "wall"
        self.x_combo.blockSignals(True)
        self.x_combo.setCurrentIndex(1 if self.wall else 0)
        self.x_combo.blockSignals(False)
        self._rebuild()
        self.fit()

    def set_smoothing(self, weight: float) -> None:
        """EMA weight in [0, 1): 0 shows raw curves only."""
        self.smoothing = max(0.0, min(0.99, float(weight)))
        self.smooth_label.setText(f"{self.smoothing:.2f}")
        for panel in self.panels:
            for (run_id, key) in list(panel.curves):
                index = next((i for i, (_l, c) in enumerate(panel.spec.series) if key in c), 0)
                panel.restyle(run_id, key, index, run_id != self.current, self.smoothing > 0)
        for run_id in [*self.overlays, self.current]:
            if run_id is not None:
                self._draw_run(self.runs[run_id], None)

    def set_log_y(self, on: bool) -> None:
        self.log_y = bool(on)
        for panel in self.panels:
            panel.set_log(self.log_y)
            panel.y_window = None
            if self.log_y:
                panel.plot.enableAutoRange(y=True)
        self._follow_view()

    def fit(self) -> None:
        """Reset zoom and pan: y autoranges, x follows the data again."""
        self.follow_view, self._x_window = True, None
        for panel in self.panels:
            panel.y_window = None
            panel.plot.enableAutoRange(y=True)
        self._follow_view()

    def _choose_extra(self, text: str) -> None:
        key = "" if text.startswith("More metrics") else text
        if key != self.extra_key:
            self.extra_key = key
            self._rebuild()

    def _update_extra_choices(self) -> None:
        run = self.runs.get(self.current) if self.current is not None else None
        if run is None:
            return
        shown = panel_keys(self.stage or "")
        extra = sorted(k for k in run.series if k not in shown)
        have = [self.extra_combo.itemText(i) for i in range(1, self.extra_combo.count())]
        if extra != have:
            self.extra_combo.blockSignals(True)
            self.extra_combo.clear()
            self.extra_combo.addItem("More metrics…")
            self.extra_combo.addItems(extra)
            self.extra_combo.setCurrentText(self.extra_key or "More metrics…")
            self.extra_combo.blockSignals(False)

    # -- alarms on the plots ------------------------------------------------------------------
    def _x_of_step(self, run: RunData, step: int) -> float:
        if not self.wall:
            return float(step)
        steps = run.steps.view()
        i = int(min(max(steps.searchsorted(step), 0), len(steps) - 1)) if len(steps) else 0
        return float(run.walls.view()[i] - (run.t0 or 0.0)) if len(steps) else 0.0

    def _mark(self, run_id: int, alarm: Alarm) -> None:
        run = self.runs[run_id]
        targets = [p for p in self.panels if (run_id, alarm.metric) in p.curves]
        if alarm.kind == "length_hacking":
            targets += [p for p in self.panels if p.title == "Reward" and p not in targets]
        for panel in targets or self.panels[:1]:
            panel.add_marker(self._x_of_step(run, alarm.step), alarm.action, KIND_TITLES[alarm.kind])

    def _redraw_markers(self) -> None:
        for panel in self.panels:
            panel.clear_markers()
        if self.current is not None:
            for alarm in self.alarms.get(self.current, []):
                self._mark(self.current, alarm)

    def _update_log_title(self) -> None:
        count = len(self.alarms.get(self.current, [])) if self.current is not None else 0
        self.tabs.setTabText(1, f"Run log ({count} alarm{'s' if count != 1 else ''})" if count else "Run log")

    def rescan_alarms(self) -> None:
        """Re-check every loaded run with the current alarm settings (no signals for past alarms)."""
        for run_id, run in self.runs.items():
            kept = [a for a in self.alarms.get(run_id, []) if a.kind == "non_finite"]  # NaNs are not in series
            monitor = AlarmMonitor(self.alarm_config, max_length=self._max_length.get(run_id))
            self.alarms[run_id] = sorted(kept + monitor.scan(run.rows()), key=lambda a: a.step)
            self.monitors[run_id] = monitor
        self._redraw_markers()
        self._update_log_title()

    def _toggle_compare(self, on: bool) -> None:
        if on:
            self.overlay_earlier_runs()
        else:
            self.clear_overlays()

