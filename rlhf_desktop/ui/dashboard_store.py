"""The dashboard's side that talks to the project store: open runs, overlays, samples, settings.

A mixin of `Dashboard` (kept apart so the widget file stays about drawing). Everything here runs
on the GUI thread with the GUI's own Project.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlhf_desktop.core.errors import ConfigError, UserError
from rlhf_desktop.store import Project
from rlhf_desktop.store import runs as run_store
from rlhf_desktop.store.prompts import add_prompts
from rlhf_desktop.training.alarms import AlarmConfig, AlarmMonitor, config_max_length
from rlhf_desktop.ui.dashboard_data import RunData
from rlhf_desktop.ui.dashboard_settings import SETTINGS_KEY, AlarmSettingsDialog
from rlhf_desktop.ui.errors import show_error

OVERLAY_LIMIT = 3  # earlier runs overlaid by "Compare earlier runs"
ACTIVE = ("running", "paused")


class StoreMixin:
    """Project-backed operations of the Dashboard (see dashboard.py for the attributes used)."""

    def _init_store(self) -> None:
        self.project: Project | None = None
        self._own_project = False
        self._alarm_config = AlarmConfig()
        self._stored_samples: set[int] = set()  # runs whose stored samples were read

    # -- project ------------------------------------------------------------------------------
    def set_project(self, project: Project | None) -> None:
        """Use `project` (the GUI thread's); forget the runs of the previous one."""
        if project is self.project:
            return
        self._close_own_project()
        self.project, self._own_project = project, False
        self.reset()
        self._alarm_config = AlarmConfig()
        if project is not None:
            try:
                self._alarm_config = AlarmConfig.from_dict(project.get_setting(SETTINGS_KEY, {}))
            except (ConfigError, TypeError) as exc:
                self.append_log(f"Alarm settings in the project are not valid ({exc}); using the defaults.")

    def _close_own_project(self) -> None:
        if self._own_project and self.project is not None:
            self.project.close()
        self._own_project = False

    def _use_project(self, project: Project | str | Path) -> Project:
        """A Project object as given, or the folder opened (kept open, closed on the next switch)."""
        if isinstance(project, Project):
            self.set_project(project)
            return project
        folder = Path(project).expanduser().resolve()
        if self.project is not None and self.project.folder == folder:
            return self.project
        opened = Project.open(folder)
        self.set_project(opened)
        self._own_project = True
        return opened

    def reset(self) -> None:
        """Forget every run, sample and alarm; clear the plots."""
        self.runs.clear()
        self.samples.clear()
        self.alarms.clear()
        self.monitors.clear()
        self._pending.clear()
        self._pending_samples.clear()
        self._dirty.clear()
        self._stored_samples.clear()
        self.overlays, self.current, self.live, self.stage = [], None, None, None
        self.selected_step = None
        self.glw.clear()
        self.panels = []
        self.samples_panel.show_rows(None, [])
        self.run_label.setText("No run: start a training run or open one from the Runs view.")

    def _stored_run(self, run_id: int) -> dict[str, Any] | None:
        if self.project is None:
            return None
        try:
            return run_store.get_run(self.project, run_id)
        except UserError:
            return None

    def _load_run(self, run_id: int) -> RunData:
        """A run's stored metrics as RunData, its alarms re-checked (no signals: they are history)."""
        info = run_store.get_run(self.project, run_id)
        run = RunData(run_id, info["stage"], info.get("name") or "")
        rows = [(r["step"], r["wall_time"], r["metrics"]) for r in run_store.get_metrics(self.project, run_id)]
        run.add_rows(rows)
        self._max_length[run_id] = config_max_length(info.get("config") or {})
        monitor = AlarmMonitor(self.alarm_config, max_length=self._max_length[run_id])
        self.alarms[run_id] = monitor.scan((step, metrics) for step, _wall, metrics in rows)
        self.monitors[run_id] = monitor
        self.runs[run_id] = run
        return run

    # -- opening runs -------------------------------------------------------------------------
    def show_run(self, project: Project | str | Path, run_id: int) -> None:
        """Show a run's curves from the store (a running run keeps streaming in afterwards)."""
        project = self._use_project(project)
        run_id = int(run_id)
        info = run_store.get_run(project, run_id)
        self.runs.pop(run_id, None)
        self.samples.pop(run_id, None)
        self._stored_samples.discard(run_id)
        self._load_run(run_id)
        if info["status"] in ACTIVE and self.live in (None, run_id):
            self.live = run_id
        for alarm in self.alarms[run_id]:
            self.append_log(f"[history] run #{run_id} {alarm.message}")
        self.follow_latest, self.selected_step = True, None
        self._set_current(run_id)
        self.follow_latest_samples()
        if self.compare_check.isChecked():
            self.overlay_earlier_runs()

    def add_overlay(self, run_id: int) -> bool:
        """Overlay another run of the current stage in fainter pens; False when it cannot be."""
        run_id = int(run_id)
        if run_id == self.current or run_id in self.overlays:
            return run_id in self.overlays
        run = self.runs.get(run_id)
        if run is None:
            if self.project is None:
                return False
            run = self._load_run(run_id)
        if self.current is not None and run.stage != self.stage:
            self.append_log(f"Run #{run_id} is a {run.stage} run: only {self.stage} runs overlay this one.")
            return False
        if self.current is None:
            self._set_current(run_id)
            return True
        self.overlays.append(run_id)
        self._draw_run(run, None)
        self._follow_view()
        self._update_run_label()
        return True

    def overlay_earlier_runs(self, limit: int = OVERLAY_LIMIT) -> list[int]:
        """Overlay the latest `limit` other runs of the current stage that have metrics."""
        if self.project is None or self.current is None:
            return []
        others = [r["id"] for r in run_store.list_runs(self.project, self.stage)
                  if r["id"] != self.current and r["id"] not in self.overlays]
        earlier = [i for i in others if i < self.current] or others
        added = []
        for run_id in reversed(earlier):
            if len(added) >= limit:
                break
            if run_store.get_metrics(self.project, run_id) and self.add_overlay(run_id):
                added.append(run_id)
        return added

    def clear_overlays(self) -> None:
        for run_id in self.overlays:
            for panel in self.panels:
                panel.remove_run(run_id)
        self.overlays = []
        self._update_run_label()

    def _update_run_label(self) -> None:
        run = self.runs.get(self.current) if self.current is not None else None
        if run is None:
            return
        live = " (live)" if self.current == self.live else (
            f" ({self.ended[self.current]})" if self.current in self.ended else "")
        text = f"<b>{(run.stage or '?').upper()}</b> run {run.label}{live}"
        if self.overlays:
            text += " &nbsp;<span style='color:#777'>vs " + ", ".join(self.runs[r].label for r in self.overlays)
            text += " (faint)</span>"
        self.run_label.setText(text)

    def _samples_of(self, run_id: int) -> dict[int, list[dict[str, Any]]]:
        """The run's samples by step: stored ones (read once) merged with those streamed in."""
        by_step = self.samples.setdefault(run_id, {})
        if run_id not in self._stored_samples and self._stored_run(run_id) is not None:
            self._stored_samples.add(run_id)
            stored: dict[int, list[dict[str, Any]]] = {}
            for row in run_store.get_samples(self.project, run_id):
                stored.setdefault(int(row["step"]), []).append(row)
            for step, rows in stored.items():
                by_step.setdefault(step, rows)
        return by_step

    # -- labeling and settings ----------------------------------------------------------------
    def send_to_labeling(self, prompt: str) -> bool:
        """Add a rollout's prompt to the project's prompts and tell the main window (sig_send_to_labeling)."""
        if self.project is None:
            self.append_log("Open a project to send prompts to labeling.")
            return False
        report = add_prompts(self.project, [prompt], source=f"run-{self.current}")
        added = "added to the project's prompts" if report.imported else "already in the project"
        self.append_log(f"Sent to labeling ({added}): {' '.join(prompt.split())[:80]}")
        self.sig_send_to_labeling.emit(prompt)
        return True

    @property
    def alarm_config(self) -> AlarmConfig:
        return self._alarm_config

    def set_alarm_config(self, config: AlarmConfig, persist: bool = True) -> None:
        """Use new alarm thresholds: saved in the project, every loaded run re-checked."""
        config.validate()
        self._alarm_config = config
        if persist and self.project is not None:
            self.project.set_setting(SETTINGS_KEY, config.to_dict())
        self.rescan_alarms()
        self.append_log("Alarm settings changed; the runs shown were checked again.")

    def edit_alarm_settings(self) -> None:
        dialog = AlarmSettingsDialog(self.alarm_config, self)
        if dialog.exec():
            try:
                self.set_alarm_config(dialog.config())
            except ConfigError as exc:
                show_error(self, exc)

