"""The live dashboard, offscreen: 10,000-step synthetic streams, alarms, samples behind a click, overlays."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QImage

from rlhf_desktop.store import runs as run_store
from rlhf_desktop.training.alarms import AlarmConfig, synthetic_ppo_rows
from rlhf_desktop.ui.dashboard import DRAIN_INTERVAL_MS, PANELS_PER_TICK, Y_MOVES_PER_TICK, Dashboard
from rlhf_desktop.ui.dashboard_ranges import MIN_LIVE_X_WINDOW
from rlhf_desktop.ui.dashboard_settings import AlarmSettingsDialog

N = 10_000


@pytest.fixture
def dash(qtbot):
    widget = Dashboard()
    qtbot.addWidget(widget)
    widget.resize(1200, 800)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def feed(dash, run_id, rows, batch=500):
    for start in range(0, len(rows), batch):
        dash.append_metrics(run_id, rows[start:start + batch])
        dash.flush()


def panel(dash, title):
    return next(p for p in dash.panels if p.title == title)


def test_the_timer_drains_batches_and_curves_hold_every_point(dash, qtbot):
    rows = synthetic_ppo_rows(N, "clean")
    dash.begin_run(1, "ppo", name="clean")
    dash.append_metrics(1, rows[:100])  # buffered only: nothing drawn until the timer fires
    assert dash.curve(1, "objective/kl") is None
    qtbot.waitUntil(lambda: dash.curve(1, "objective/kl") is not None, timeout=20 * DRAIN_INTERVAL_MS)
    feed(dash, 1, rows[100:])
    for key in ("objective/scores", "objective/rlhf_reward", "objective/kl", "response_length", "objective/entropy",
                "loss/policy_avg", "loss/value_avg", "policy/clipfrac_avg", "val/clipfrac_avg", "val/ratio", "lr"):
        x, y = dash.curve(1, key).getOriginalDataset()
        assert len(x) == N and len(y) == N, key
        assert np.array_equal(x, np.arange(1, N + 1))
        assert np.array_equal(y, [m[key] for _s, _w, m in rows])
    smoothed = panel(dash, "KL").curves[(1, "objective/kl")][1]
    assert len(smoothed.getOriginalDataset()[1]) == N and smoothed.isVisible()
    assert {p.title for p in dash.panels} >= {"Reward", "KL", "Response length", "Entropy", "Policy loss",
                                              "Value loss", "Clip fraction", "val/ratio", "Learning rate"}
    plot = panel(dash, "KL").plot
    assert plot.clipToViewMode() and plot.downsampleMode()[1:] == (True, "peak")
    assert dash.alarms[1] == [] and dash.log_view.toPlainText() == ""


def test_a_timer_tick_redraws_a_few_plots_and_the_next_ticks_the_rest(dash):
    dash.begin_run(2, "ppo")
    dash.append_metrics(2, synthetic_ppo_rows(50, "clean"))
    dash._tick()
    drawn = [p.title for p in dash.panels if p.curves]
    assert len(drawn) == PANELS_PER_TICK
    ticks = 1
    while dash._dirty:
        dash._tick()
        ticks += 1
    assert ticks == -(-len(dash.panels) // PANELS_PER_TICK)  # every plot drawn, none twice
    assert all(len(p.curves) >= 1 for p in dash.panels)
    # y ranges follow the data one plot a tick (each move re-renders an axis), then the timer stops
    windows = [p.y_window for p in dash.panels]
    for _ in range(len(dash.panels) + 1):
        if not dash._timer.isActive():
            break
        dash._tick()
        now = [p.y_window for p in dash.panels]
        assert sum(a != b for a, b in zip(windows, now)) <= Y_MOVES_PER_TICK
        windows = now
    assert not dash._timer.isActive() and not dash._y_pending
    assert all(w is not None for w in windows)
    for p in dash.panels:  # every plot's data inside its range
        y = np.concatenate([raw.getOriginalDataset()[1] for raw, _s in p.curves.values()])
        assert p.y_window[0] <= y.min() and y.max() <= p.y_window[1], p.title


def test_a_live_runs_layout_is_set_before_its_rows_and_stays_put_while_they_stream(dash):
    """Axes laid out ahead of the data: titles (with their legends) never change mid-run, the x axis
    spans MIN_LIVE_X_WINDOW steps before the first row, and y ranges keep headroom, so a stream of
    rows rarely re-renders axes (bench/dashboard.py measures what that buys)."""
    dash.begin_run(3, "ppo")
    titles = [p.plot.titleLabel.text for p in dash.panels]
    assert "rlhf reward" in panel(dash, "Reward").plot.titleLabel.text  # the legend, from the stage's series
    x0 = dash.panels[0].view_box.viewRange()[0]
    assert x0[0] <= 0 and x0[1] >= MIN_LIVE_X_WINDOW[0]
    rows = synthetic_ppo_rows(40, "clean")
    moves = {p.title: 0 for p in dash.panels}
    for p in dash.panels:
        p.view_box.sigYRangeChanged.connect(lambda *_a, t=p.title: moves.__setitem__(t, moves[t] + 1))
    for row in rows:
        dash.append_metrics(3, [row])
        dash._tick()
    for _ in range(len(dash.panels)):
        dash._tick()
    assert [p.plot.titleLabel.text for p in dash.panels] == titles
    assert dash.panels[0].view_box.viewRange()[0] == x0  # 40 steps fit the first window
    assert all(p.curves for p in dash.panels)
    assert max(moves.values()) <= 4, moves  # 40 rows, a handful of y moves (nice bounds, headroom)


def test_finishing_a_live_run_draws_its_last_rows_and_shows_how_it_ended(dash):
    dash.begin_run(4, "ppo", max_length=64)
    dash.append_metrics(4, synthetic_ppo_rows(300, "length_hacking"))  # buffered, no tick yet
    dash.finish_run("stopped")
    assert len(dash.curve(4, "objective/kl").getOriginalDataset()[0]) == 300  # drawn before it ended
    assert "length_hacking" in {a.kind for a in dash.alarms[4]}  # and its rows were still checked
    assert dash.live is None and "(stopped)" in dash.run_label.text() and "live" not in dash.run_label.text()
    lo, hi = dash.panels[0].view_box.viewRange()[0]
    assert lo <= 1 and 300 <= hi < 320  # the x axis fits the finished run, no room left to grow into


@pytest.mark.parametrize("scenario, kinds, panel_title", [
    ("length_hacking", ["length_hacking"], "Response length"),
    ("kl_spike", ["kl_high", "kl_spike"], "KL"),
    ("clean", [], None),
])
def test_alarms_fire_on_hacking_and_kl_spikes_and_stay_silent_on_a_clean_run(dash, qtbot, scenario, kinds,
                                                                             panel_title):
    dash.set_alarm_config(AlarmConfig.from_dict({"actions": {"kl_spike": "pause"}}), persist=False)
    warned, paused = [], []
    dash.sig_warning.connect(warned.append)
    dash.sig_alarm.connect(paused.append)
    dash.begin_run(7, "ppo", max_length=256)
    feed(dash, 7, synthetic_ppo_rows(N, scenario))
    fired = sorted(a["kind"] for a in warned + paused)
    assert fired == kinds
    assert [a["kind"] for a in paused] == (["kl_spike"] if scenario == "kl_spike" else [])
    assert all(a["run_id"] == 7 for a in warned + paused)
    if panel_title:
        markers = panel(dash, panel_title).markers
        assert markers and markers[0].value() == pytest.approx(warned[0]["step"])
        assert scenario.split("_")[0].lower() in dash.log_view.toPlainText().lower()
        assert dash.tabs.tabText(1).startswith("Run log (")
    else:
        log = dash.log_view.toPlainText()
        assert all(not p.markers for p in dash.panels) and "[WARN]" not in log and "[PAUSE]" not in log


def test_clicking_a_step_opens_its_samples(dash, qtbot):
    dash.begin_run(3, "ppo")
    feed(dash, 3, synthetic_ppo_rows(100, "clean"))
    for step in (10, 20, 30, 40):
        dash.append_samples(3, step, [{"prompt": f"prompt {step}-{i}", "response": f"response {step}-{i}",
                                       "score": step / 10, "kl": 0.1} for i in range(4)])
    dash.flush()
    assert dash.samples_panel.step == 40  # following the latest step
    dash.select_step(21)  # what a click calls: the nearest step that has samples
    assert dash.samples_panel.step == 20 and len(dash.samples_panel.rows) == 4
    assert "nearest to clicked step 21" in dash.samples_panel.header.text()
    assert dash.samples_panel.table.item(0, 2).text() == "prompt 20-0"
    assert "response 20-0" in dash.samples_panel.detail.toPlainText()
    dash.append_samples(3, 50, [{"prompt": "late", "response": "late"}])
    dash.flush()
    assert dash.samples_panel.step == 20  # a clicked step stays until "Follow latest"
    # a real mouse click on the KL plot at step 30
    kl = panel(dash, "KL")
    kl.plot.setXRange(0, 100, padding=0)
    qtbot.wait(50)
    scene = kl.view_box.mapViewToScene(QPointF(30, float(np.mean(kl.view_box.viewRange()[1]))))
    with qtbot.waitSignal(dash.sig_step_selected, timeout=2000) as signal:
        qtbot.mouseClick(dash.glw.viewport(), Qt.MouseButton.LeftButton, pos=dash.glw.mapFromScene(scene))
    assert abs(signal.args[0] - 30) <= 1
    assert dash.samples_panel.step == 30
    assert all(p.selected.isVisible() for p in dash.panels)
    dash.samples_panel.latest_button.click()
    assert dash.samples_panel.step == 50


def test_hover_shows_values_and_controls_redraw(dash, qtbot):
    rows = synthetic_ppo_rows(500, "clean")
    dash.begin_run(4, "ppo")
    feed(dash, 4, rows)
    qtbot.wait(50)  # let the layout place the plots
    kl = panel(dash, "KL")
    scene = kl.view_box.mapViewToScene(QPointF(250, 1.0))
    dash._on_hover((scene,))
    assert f"objective/kl = {rows[249][2]['objective/kl']:.5g} (step 250)" in dash.readout.text()
    assert kl.cursor.isVisible()
    dash.set_smoothing(0.0)
    assert not kl.curves[(4, "objective/kl")][1].isVisible()
    dash.smooth_slider.setValue(90)
    assert dash.smoothing == pytest.approx(0.9) and kl.curves[(4, "objective/kl")][1].isVisible()
    dash.set_x_axis("wall")
    kl = panel(dash, "KL")
    x, _y = dash.curve(4, "objective/kl").getOriginalDataset()
    assert x[0] == 0.0 and x[-1] == pytest.approx(rows[-1][1] - rows[0][1])
    assert dash.runs[4].nearest_step(100.0, wall=True) == 201  # 0.5 s a step
    dash.set_log_y(True)
    assert all(p.plot.getAxis("left").logMode for p in dash.panels)


def test_stages_get_their_own_panels_and_unknown_runs_are_inferred(dash):
    dash.append_metrics(11, [(1, 0.0, {"loss": 1.0, "rewards/margins": 0.1, "rewards/accuracies": 0.5,
                                       "rewards/chosen": 0.1, "rewards/rejected": 0.0, "learning_rate": 1e-5})])
    dash.flush()
    assert dash.stage == "dpo" and dash.current == 11
    assert [p.title for p in dash.panels][:3] == ["Loss", "Reward margin", "Reward accuracy"]
    dash.begin_run(12, "rm")
    feed(dash, 12, [(i, float(i), {"loss": 1 / i, "accuracy": 0.5, "margin": 0.1, "eval_accuracy": 0.6,
                                   "grad_norm": 1.0, "custom/thing": 3.0}) for i in range(1, 30)])
    assert [p.title for p in dash.panels] == ["Loss", "Accuracy", "Margin", "Learning rate", "Grad norm"]
    assert "held-out" in panel(dash, "Accuracy").plot.titleLabel.text
    dash.extra_combo.setCurrentText("custom/thing")  # a metric no panel shows
    assert dash.panels[-1].title == "custom/thing" and len(dash.curve(12, "custom/thing").getOriginalDataset()[0]) == 29


def _stored_ppo_run(project, rows, name, samples=True):
    run_id = run_store.create_run(project, "ppo", {"response_length": 256}, "base", name=name)
    run_store.set_run_status(project, run_id, "running")
    run_store.add_metrics(project, run_id, rows)
    if samples:
        for step in (100, 200):
            run_store.add_samples(project, run_id, step, [{"prompt": f"{name} prompt at {step}",
                                                          "response": "text", "score": 1.0, "kl": 0.5}])
    run_store.set_run_status(project, run_id, "done")
    return run_id


def test_two_runs_overlay_and_export(dash, project, tmp_path):
    first = _stored_ppo_run(project, synthetic_ppo_rows(300, "clean", seed=1), "first")
    second = _stored_ppo_run(project, synthetic_ppo_rows(400, "clean", seed=2), "second")
    dash.show_run(project.folder, second)
    assert dash.current == second and dash.live is None
    assert dash.samples_panel.step == 200  # the latest stored samples
    assert dash.add_overlay(first)
    kl = panel(dash, "KL")
    mine, theirs = kl.curves[(second, "objective/kl")], kl.curves[(first, "objective/kl")]
    assert len(mine[0].getOriginalDataset()[0]) == 400 and len(theirs[0].getOriginalDataset()[0]) == 300
    assert theirs[1].opts["pen"].color().lightness() > mine[1].opts["pen"].color().lightness()  # fainter
    assert "vs #1 first" in dash.run_label.text()
    dash.set_x_axis("wall")  # overlays follow the axis too
    kl = panel(dash, "KL")
    assert kl.curves[(first, "objective/kl")][0].getOriginalDataset()[0][0] == 0.0
    assert [a.text() for a in dash.export_actions()] == ["Export plots as PNG…", "Export plots as SVG…",
                                                         "Export metrics as CSV…"]
    png, svg = dash.export_png(tmp_path / "plots.png"), dash.export_svg(tmp_path / "plots.svg")
    assert not QImage(str(png)).isNull() and QImage(str(png)).width() > 500
    assert "<svg" in svg.read_text()
    assert dash.export_csv(tmp_path / "metrics.csv") == 700
    with open(tmp_path / "metrics.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert {r["run_id"] for r in table} == {str(first), str(second)}
    assert float(table[0]["objective/kl"]) == pytest.approx(synthetic_ppo_rows(400, "clean", seed=2)[0][2]["objective/kl"])
    dash.clear_overlays()
    assert (first, "objective/kl") not in kl.curves
    dash.compare_check.setChecked(True)  # "Compare earlier runs" finds the first run in the store
    assert dash.overlays == [first]


def test_a_stored_runs_alarms_are_marked_without_signals(dash, project):
    run_id = _stored_ppo_run(project, synthetic_ppo_rows(3000, "length_hacking"), "ramble", samples=False)
    fired = []
    dash.sig_warning.connect(fired.append)
    dash.sig_alarm.connect(fired.append)
    dash.show_run(project, run_id)
    assert [a.kind for a in dash.alarms[run_id]] == ["length_hacking"]
    assert panel(dash, "Response length").markers and panel(dash, "Reward").markers
    assert "[history]" in dash.log_view.toPlainText() and fired == []


def test_send_a_rollout_to_labeling_with_one_key(dash, project, qtbot):
    run_id = _stored_ppo_run(project, synthetic_ppo_rows(250, "clean"), "run")
    dash.show_run(project, run_id)
    dash.select_step(100)
    before = project.counts()["prompts"]
    dash.samples_panel.table.setFocus()
    with qtbot.waitSignal(dash.sig_send_to_labeling, timeout=2000) as signal:
        qtbot.keyClick(dash.samples_panel.table, Qt.Key.Key_L)
    assert signal.args == ["run prompt at 100"]
    assert project.counts()["prompts"] == before + 1
    assert project.query("SELECT source FROM prompts WHERE text = ?", ("run prompt at 100",))[0]["source"] == f"run-{run_id}"


def test_alarm_settings_persist_in_the_project_and_recheck_runs(dash, project, qtbot):
    run_id = _stored_ppo_run(project, synthetic_ppo_rows(200, "clean"), "run", samples=False)
    dash.show_run(project, run_id)
    assert dash.alarms[run_id] == []
    dialog = AlarmSettingsDialog(dash.alarm_config)
    qtbot.addWidget(dialog)
    dialog._boxes["kl_max"].setValue(1.0)  # the clean run's KL rises to ~3
    dialog._actions["kl_high"].setCurrentIndex(1)
    config = dialog.config()
    assert config.kl_max == 1.0 and config.actions["kl_high"] == "pause"
    dash.set_alarm_config(config)
    assert [a.kind for a in dash.alarms[run_id]] == ["kl_high"]
    assert project.get_setting("alarms")["kl_max"] == 1.0
    again = Dashboard()
    qtbot.addWidget(again)
    again.set_project(project)
    assert again.alarm_config == config


def test_a_training_job_streams_into_the_dashboard(dash, qtbot):
    from rlhf_desktop.ui.jobs import JobRunner

    rows = synthetic_ppo_rows(300, "clean")

    def job(ctx):
        for step, _wall, metrics in rows:
            ctx.report(step, metrics)
            if step % 100 == 0:
                ctx.samples(step, [{"prompt": f"p{step}", "response": "r", "score": 1.0, "kl": 0.1}])
        ctx.log("job done")
        return "ok"

    runner = JobRunner("train", show_errors=False)
    dash.attach_job(runner, 5, "ppo")
    with qtbot.waitSignal(runner.sig_finished, timeout=20_000):
        runner.start("fake PPO", job)
    qtbot.waitUntil(lambda: not dash._timer.isActive(), timeout=5_000)
    assert len(dash.curve(5, "objective/kl").getOriginalDataset()[0]) == 300
    assert dash.samples_panel.step == 300 and "job done" in dash.log_view.toPlainText()
    dash.detach_job()
    runner.start("again", job)
    assert runner.wait(20)
    dash.flush()
    assert len(dash.runs[5].steps) == 300  # detached: the second job's rows went nowhere


def test_a_live_run_starts_with_the_rows_its_job_stored_before_the_dashboard_attached(dash, project):
    rows = synthetic_ppo_rows(60, "clean")
    run_id = run_store.create_run(project, "ppo", {"response_length": 64}, "base", name="fast")
    run_store.add_metrics(project, run_id, rows[:40])  # written by the job before "run started" was handled
    dash.set_project(project)
    dash.begin_run(run_id, "ppo")
    dash.append_metrics(run_id, rows[30:])  # the stream overlaps what the store already had
    dash.flush()
    x, _y = dash.curve(run_id, "objective/kl").getOriginalDataset()
    assert list(x) == list(range(1, 61))  # every step once, in order
