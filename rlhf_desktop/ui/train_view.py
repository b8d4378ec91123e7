"""The Train view (issues 4 and 5): choose a stage, a starting point and hyperparameters; run it in a worker.

The run goes through `training.runner.start_run` in the "train" job slot; the worker opens its own
project connection (start_run does), never the GUI's. Loss and the stage's main metric are drawn
live in two small plots whose curves are created once; the full dashboard follows `sig_run_started`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar,
                               QPushButton, QScrollArea, QSplitter, QVBoxLayout, QWidget)

from rlhf_desktop.core.errors import UserError
from rlhf_desktop.store import runs as run_store
from rlhf_desktop.training.common import ModelRef
from rlhf_desktop.training.runner import STAGE_TITLES, models_from_checkpoint, stage_config_class, start_run
from rlhf_desktop.ui.config_form import ConfigForm
from rlhf_desktop.ui.errors import show_error
from rlhf_desktop.ui.plots import PALETTE, style_plot

STAGES = (("sft", "Supervised fine-tuning (SFT)"), ("rm", "Reward model"), ("dpo", "DPO"), ("ppo", "PPO"))
PRESET_TITLES = {"quick-cpu-demo": "Quick CPU demo", "standard-gpu": "Standard GPU"}
# PPORunConfig has no PRESETS of its own (yet): the same two presets in its own field names.
PPO_PRESETS = {
    "quick-cpu-demo": {"max_steps": 20, "batch_size": 4, "mini_batches": 1, "ppo_epochs": 2, "response_length": 32,
                       "max_prompt_length": 128, "save_every": 10, "device": "cpu"},
    "standard-gpu": {"max_steps": 200, "batch_size": 16, "mini_batches": 2, "ppo_epochs": 4, "response_length": 128,
                     "max_prompt_length": 256, "save_every": 50, "device": "auto"},
}
LOSS_KEYS = {"ppo": ("loss/policy_avg",)}
MAIN_METRICS = {"sft": (("mean_token_accuracy",), "token accuracy"),
                "rm": (("accuracy", "eval_accuracy"), "reward accuracy"),
                "dpo": (("rewards/margins", "eval_rewards/margins"), "DPO reward margin"),
                "ppo": (("objective/scores", "objective/rlhf_reward"), "reward-model score")}
RESUMABLE = ("stopped", "failed", "paused")
WARN_STYLE, OK_STYLE = "color: #c62828; font-weight: bold;", "color: #2e7d32;"


def presets_for(stage: str) -> dict[str, dict[str, Any]]:
    """The stage's presets by name (its config class's PRESETS, PPO's from here)."""
    return getattr(stage_config_class(stage), "PRESETS", None) or (PPO_PRESETS if stage == "ppo" else {})


def train_job(ctx: Any, project_dir: str, stage: str, config: Any, models: ModelRef | None,
              parent_checkpoint_id: int | None, resume_run_id: int | None, reward_run_id: int | None,
              notify: Any) -> dict[str, Any]:
    """Worker side: one recorded run; returns the RunOutcome as a plain dict."""
    outcome = start_run(project_dir, stage, config, models, parent_checkpoint_id=parent_checkpoint_id, ctx=ctx,
                        resume_run_id=resume_run_id, reward_run_id=reward_run_id, on_created=notify)
    return {**dataclasses.asdict(outcome), "stage": stage}


def model_folder(spec: str) -> Path | None:
    """The HF folder a model spec names, without converting anything (None when not at hand)."""
    if spec == "default":
        from rlhf_desktop.modeling.default_model import default_model_dir, is_default_converted

        return default_model_dir() if is_default_converted() else None
    path = Path(spec)
    return path if (path / "config.json").is_file() else None


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class TrainView(QWidget):
    """Start, pause, resume, stop and resume-from-checkpoint runs of every stage."""

    sig_run_started = Signal(object, int, str)
    """(the JobRunner, run id, stage): a run's row exists and its job is running."""
    sig_run_finished = Signal(object)
    """The RunOutcome of a run as a dict (run_id, status, steps, final_metrics, error, stage)."""
    _sig_created = Signal(int)  # emitted from the worker (queued to the GUI thread)

    def __init__(self, state: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trainView")
        self.state = state
        self.runner = state.jobs.runner("train")
        self.run_id: int | None = None
        self.stage = "sft"
        self._resuming = False
        self._t0: tuple[float, float] | None = None  # (monotonic time, step) of the first progress
        self._series: dict[str, tuple[list[float], list[float]]] = {"loss": ([], []), "main": ([], [])}
        self._estimate_timer = QTimer(self, singleShot=True, interval=250)
        self._estimate_timer.timeout.connect(self.update_estimate)
        self._build()
        self._connect()
        state.sig_project_changed.connect(lambda *_: self.refresh_choices())
        state.sig_model_changed.connect(lambda *_: self.refresh_choices())
        self.set_stage("sft")

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        self.stage_box = QComboBox(objectName="stageBox")
        for key, title in STAGES:
            self.stage_box.addItem(title, key)
        self.start_box = QComboBox(objectName="startPointBox")
        self.reward_box = QComboBox(objectName="rewardRunBox")
        self.reward_label = QLabel("Reward model")
        self.preset_box = QComboBox(objectName="presetBox")
        self.form = ConfigForm()
        scroll = QScrollArea(widgetResizable=True)
        scroll.setWidget(self.form)
        self.memory_label = QLabel(objectName="memoryLabel", wordWrap=True)
        top = QFormLayout()
        top.addRow("Stage", self.stage_box)
        top.addRow("Start from", self.start_box)
        top.addRow(self.reward_label, self.reward_box)
        top.addRow("Preset", self.preset_box)
        settings = QGroupBox("Run settings")
        left = QVBoxLayout(settings)
        left.addLayout(top)
        left.addWidget(scroll, 1)
        left.addWidget(self.memory_label)
        self.start_button = QPushButton("Start", objectName="startButton")
        self.pause_button = QPushButton("Pause", objectName="pauseButton", checkable=True)
        self.stop_button = QPushButton("Stop", objectName="stopButton")
        self.resume_box = QComboBox(objectName="resumeRunBox")
        self.resume_box.setPlaceholderText("no stopped or failed run to resume")
        self.resume_button = QPushButton("Resume run", objectName="resumeRunButton")
        self.resume_button.setToolTip("Continue a stopped or failed run from its last checkpoint")
        buttons = QHBoxLayout()
        for w in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(w)
        buttons.addStretch(1)
        buttons.addWidget(self.resume_box, 1)
        buttons.addWidget(self.resume_button)
        self.progress = QProgressBar(objectName="trainProgress", textVisible=True)
        self.progress_label = QLabel("No run yet", objectName="progressLabel")
        self.loss_plot, self.loss_curve = self._plot("loss", PALETTE[0])
        self.main_plot, self.main_curve = self._plot("main metric", PALETTE[1])
        plots = QHBoxLayout()
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.main_plot)
        self.log_view = QPlainTextEdit(objectName="trainLog", readOnly=True)
        self.log_view.setMaximumBlockCount(5000)
        run_box = QWidget()
        right = QVBoxLayout(run_box)
        right.addLayout(buttons)
        right.addWidget(self.progress)
        right.addWidget(self.progress_label)
        right.addLayout(plots, 2)
        right.addWidget(self.log_view, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(settings)
        split.addWidget(run_box)
        split.setStretchFactor(1, 2)
        QVBoxLayout(self).addWidget(split)

    def _plot(self, title: str, pen: str) -> tuple[pg.PlotWidget, pg.PlotDataItem]:
        widget = pg.PlotWidget(background="w")
        widget.setMinimumHeight(140)
        item = widget.getPlotItem()
        style_plot(item, title)
        item.setClipToView(True)
        item.setDownsampling(auto=True, mode="peak")
        item.setMenuEnabled(False)
        return widget, item.plot(pen=pg.mkPen(pen, width=2))

    def _connect(self) -> None:
        self.stage_box.currentIndexChanged.connect(lambda _: self.set_stage(self.stage_box.currentData()))
        self.preset_box.currentIndexChanged.connect(lambda _: self.apply_preset(self.preset_box.currentData()))
        self.start_box.currentIndexChanged.connect(lambda _: self._estimate_timer.start())
        self.form.sig_changed.connect(self._estimate_timer.start)
        self.start_button.clicked.connect(self.start)
        self.pause_button.toggled.connect(self._toggle_pause)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume_run)
        self._sig_created.connect(self._on_created)
        self.runner.sig_progress.connect(self._on_progress)
        self.runner.sig_metrics.connect(self._on_metrics)
        self.runner.sig_log.connect(self.append_log)
        self.runner.sig_status.connect(lambda text: self.append_log(f"[{text}]"))
        self.runner.sig_running_changed.connect(self._update_buttons)
        self.runner.sig_paused_changed.connect(self._on_paused)
        self._update_buttons()

    # -- choices ------------------------------------------------------------------------------
    def set_stage(self, stage: str) -> None:
        """Show `stage`'s starting points, presets and hyperparameter form."""
        self.stage = stage
        self.stage_box.setCurrentIndex(self.stage_box.findData(stage))
        ppo = stage == "ppo"
        self.reward_box.setVisible(ppo)
        self.reward_label.setVisible(ppo)
        self.form.set_class(stage_config_class(stage))
        self.preset_box.blockSignals(True)
        self.preset_box.clear()
        for name in presets_for(stage):
            self.preset_box.addItem(PRESET_TITLES.get(name, name), name)
        self.preset_box.blockSignals(False)
        self.apply_preset(self.preset_box.currentData())
        self.main_plot.getPlotItem().setTitle(MAIN_METRICS[stage][1])
        self.refresh_choices()

    def apply_preset(self, name: str | None) -> None:
        """Fill the form with the defaults plus preset `name`; the GUI always leaves a core free."""
        values = {**self.form.defaults(), **presets_for(self.stage).get(name or "", {})}
        values["leave_core_for_gui"] = True
        self.form.set_values(values)
        self._estimate_timer.start()

    def base_spec(self) -> str:
        """The base model: the loaded model's folder, else the embedded default."""
        model = self.state.model
        source = str(getattr(model, "source", "") or "")
        return source if model is not None and (Path(source) / "config.json").is_file() else "default"

    def refresh_choices(self) -> None:
        """Refill the starting points, reward-model runs and resumable runs from the project."""
        project = self.state.project
        name = Path(self.base_spec()).name if self.base_spec() != "default" else "default (SmolLM2-135M-Instruct)"
        runs = {r["id"]: r for r in run_store.list_runs(project)} if project is not None else {}
        self._refill(self.start_box, [(f"Base model: {name}", None)] + [
            (f"Run #{c['run_id']} {STAGE_TITLES[runs[c['run_id']]['stage']]} · step {c['step']}", c["id"])
            for c in (run_store.list_checkpoints(project) if project is not None else [])
            if c["run_id"] in runs and (runs[c["run_id"]]["stage"] != "rm" or self.stage == "rm")])
        self._refill(self.reward_box, [(f"Run #{r['id']} {r.get('name') or ''} ({r['status']})", r["id"])
                                       for r in runs.values() if r["stage"] == "rm"], prefer_last=True)
        self._refill(self.resume_box, [(f"#{r['id']} {STAGE_TITLES[r['stage']]} · {r['status']}", r["id"])
                                       for r in runs.values() if r["status"] in RESUMABLE], prefer_last=True)
        self._update_buttons()

    @staticmethod
    def _refill(box: QComboBox, items: list[tuple[str, Any]], prefer_last: bool = False) -> None:
        current = box.currentData()
        box.blockSignals(True)
        box.clear()
        for text, data in items:
            box.addItem(text, data)
        index = box.findData(current) if current is not None else -1
        box.setCurrentIndex(index if index >= 0 else (box.count() - 1 if prefer_last else 0))
        box.blockSignals(False)

    def update_estimate(self) -> dict | None:
        """Recompute the memory line; returns estimate_memory's dict (None when not possible)."""
        from rlhf_desktop.training.memory import estimate_memory

        try:
            config = self.form.config()
            folder = self._start_folder()
            if folder is None:
                self.memory_label.setText("Memory estimate: load a model folder (or the default model) first")
                self.memory_label.setStyleSheet("")
                return None
            estimate = estimate_memory(self.stage, config, folder)
        except UserError as exc:
            self.memory_label.setText(f"Settings: {exc}")
            self.memory_label.setStyleSheet(WARN_STYLE)
            return None
        self.memory_label.setText(f"Memory: {estimate['message']}")
        self.memory_label.setStyleSheet(OK_STYLE if estimate["fits"] else WARN_STYLE)
        return estimate

    def _start_folder(self) -> Path | None:
        checkpoint_id = self.start_box.currentData()
        if checkpoint_id is None or self.state.project is None:
            return model_folder(self.base_spec())
        ref, _ = models_from_checkpoint(self.state.project, checkpoint_id)
        return model_folder(ref.base)

    # -- control ------------------------------------------------------------------------------
    def start(self) -> int | None:
        """Start a new run of the chosen stage; returns the job id (None when refused)."""
        project = self.state.project
        if project is None or self.runner.running:
            return None
        try:
            config = self.form.config()
        except UserError as exc:
            show_error(self, exc)
            return None
        checkpoint_id = self.start_box.currentData()
        models = None if checkpoint_id is not None else ModelRef(base=self.base_spec())
        reward = self.reward_box.currentData() if self.stage == "ppo" else None
        return self._launch(f"Training {STAGE_TITLES[self.stage]}", self.stage, config, models, checkpoint_id,
                            None, reward)

    def resume_run(self) -> int | None:
        """Continue the run chosen in the resume box from its last checkpoint."""
        run_id = self.resume_box.currentData()
        if self.state.project is None or run_id is None or self.runner.running:
            return None
        stage = run_store.get_run(self.state.project, run_id)["stage"]
        return self._launch(f"Resuming {STAGE_TITLES[stage]} #{run_id}", stage, None, None, None, run_id, None)

    def _launch(self, name: str, stage: str, config: Any, models: Any, checkpoint_id: Any, resume_id: Any,
                reward: Any) -> int:
        self._resuming = resume_id is not None
        self.run_id, self._t0 = None, None
        self.progress.setRange(0, 0)
        self.progress_label.setText("starting…")
        self.append_log(f"— {name}")
        self.main_plot.getPlotItem().setTitle(MAIN_METRICS[stage][1])
        self._run_stage = stage
        self._clear_plots()
        return self.runner.start(name, train_job, str(self.state.project.folder), stage, config, models,
                                 checkpoint_id, resume_id, reward, self._sig_created.emit,
                                 on_finished=self._on_finished, on_failed=self._on_failed)

    def _toggle_pause(self, on: bool) -> None:
        self.runner.pause() if on else self.runner.resume()

    def pause(self) -> None:
        self.pause_button.setChecked(True)

    def resume(self) -> None:
        self.pause_button.setChecked(False)

    def stop(self) -> None:
        """Stop at the next step: the run writes a checkpoint and ends as stopped."""
        self.runner.cancel()  # a paused job wakes up to see the stop
        self._on_paused_quiet()

    # -- job signals --------------------------------------------------------------------------
    def _on_created(self, run_id: int) -> None:
        if not self.runner.running:
            return
        self.run_id = run_id
        if self._resuming and self.state.project is not None:
            for row in run_store.get_metrics(self.state.project, run_id):
                self._add_point(row["step"], row["metrics"])
            self._redraw()
        self.sig_run_started.emit(self.runner, run_id, self._run_stage)

    def _on_progress(self, done: float, total: Any) -> None:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = (now, done)
        if total:
            self.progress.setRange(0, int(total))
            self.progress.setValue(int(done))
            self.progress.setFormat("step %v / %m")
        rate = (done - self._t0[1]) / (now - self._t0[0]) if now > self._t0[0] and done > self._t0[1] else 0.0
        eta = f" · ETA {_clock((total - done) / rate)}" if total and rate > 0 else ""
        self.progress_label.setText(f"step {int(done)}{f' / {int(total)}' if total else ''} · "
                                    f"elapsed {_clock(self.runner.elapsed)}{eta}")

    def _on_metrics(self, rows: list) -> None:
        for step, metrics in rows:
            self._add_point(step, metrics)
        self._redraw()

    def _add_point(self, step: int, metrics: dict) -> None:
        stage = getattr(self, "_run_stage", self.stage)
        for series, keys in (("loss", LOSS_KEYS.get(stage, ("loss",))), ("main", MAIN_METRICS[stage][0])):
            value = next((metrics[k] for k in keys if metrics.get(k) is not None), None)
            if value is not None:
                self._series[series][0].append(float(step))
                self._series[series][1].append(float(value))

    def _redraw(self) -> None:
        self.loss_curve.setData(*self._series["loss"])
        self.main_curve.setData(*self._series["main"])

    def _clear_plots(self) -> None:
        self._series = {"loss": ([], []), "main": ([], [])}
        self._redraw()

    def append_log(self, text: str) -> None:
        self.log_view.appendPlainText(text.rstrip())

    def _on_paused(self, paused: bool) -> None:
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(paused)
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pause_button.blockSignals(False)
        self.append_log("[paused]" if paused else "[resumed]")

    def _on_finished(self, outcome: dict) -> None:
        done = outcome["status"] == "done"
        self.progress.setRange(0, max(1, self.progress.maximum()))
        if done:
            self.progress.setValue(self.progress.maximum())
        text = f"Run #{outcome['run_id']} {outcome['status']} after {outcome['steps']} steps"
        if outcome.get("error"):
            text += f": {outcome['error']}"
        self.progress_label.setText(text)
        self.progress_label.setStyleSheet("" if outcome["status"] in ("done", "stopped") else WARN_STYLE)
        self.append_log(text)
        self.refresh_choices()
        index = self.resume_box.findData(outcome["run_id"])
        if index >= 0:
            self.resume_box.setCurrentIndex(index)
        self.sig_run_finished.emit(outcome)

    def _on_failed(self, info: dict) -> None:
        self.progress.setRange(0, 1)
        self.progress_label.setText(f"Not started: {info.get('message', '')}")
        self.progress_label.setStyleSheet(WARN_STYLE)
        self.append_log(f"[failed] {info.get('message', '')}")
        show_error(self, info)

    def _update_buttons(self, *_: Any) -> None:
        running = self.runner.running
        has_project = self.state.project is not None
        self.start_button.setEnabled(has_project and not running)
        self.resume_button.setEnabled(has_project and not running and self.resume_box.count() > 0)
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        for box in (self.stage_box, self.start_box, self.reward_box, self.preset_box, self.form):
            box.setEnabled(not running)
        if not running:
            self._on_paused_quiet()

    def _on_paused_quiet(self) -> None:
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(False)
        self.pause_button.setText("Pause")
        self.pause_button.blockSignals(False)

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt override: runs may have changed meanwhile
        super().showEvent(event)
        if not self.runner.running:
            self.refresh_choices()
