"""The Train view offscreen with the tiny model: form, presets, memory line, start/pause/resume/stop/resume-run."""

from __future__ import annotations

import pytest

from rlhf_desktop.modeling.loading import load_model
from rlhf_desktop.store import Project
from rlhf_desktop.store import runs as run_store
from rlhf_desktop.ui.state import AppState
from rlhf_desktop.ui.train_view import TrainView
from test_training_support import seed_preferences

pytestmark = [pytest.mark.qt_log_level_fail("WARNING"),
              pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")]
FAST = {"device": "cpu", "max_length": 160, "per_device_batch_size": 4, "save_every": 50}
RUN_MS = 120_000


@pytest.fixture
def view(qtbot, tmp_path, tiny_model_dir):
    state = AppState()
    project = Project.create(tmp_path / "proj")
    seed_preferences(project, n=12, heldout_every=4, demonstrations=4)
    state.set_project(project)
    state.set_model(load_model(str(tiny_model_dir)))
    w = TrainView(state)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.runner.cancel()
    assert w.runner.wait(30)
    state.close()


def _statuses(view):
    seen: list[str] = []
    view.runner.sig_status.connect(seen.append)
    return seen


def test_form_presets_tooltips_and_memory_line(view):
    assert view.start_box.itemData(0) is None and "tiny-model" in view.start_box.itemText(0)
    for stage in ("sft", "rm", "dpo", "ppo"):
        view.set_stage(stage)
        assert view.preset_box.count() == 2
        assert "learning rate" in view.form.editors["learning_rate"].toolTip().lower()
        assert view.reward_box.isVisibleTo(view) == (stage == "ppo")
        estimate = view.update_estimate()
        assert estimate is not None and estimate["total"] > 0, view.memory_label.text()
        assert "needs about" in view.memory_label.text()
    view.set_stage("sft")
    view.preset_box.setCurrentIndex(view.preset_box.findData("standard-gpu"))
    assert view.form.values()["per_device_batch_size"] == 8 and view.form.values()["leave_core_for_gui"]
    view.preset_box.setCurrentIndex(view.preset_box.findData("quick-cpu-demo"))
    assert view.form.values()["max_steps"] == 30
    view.form.set_values({"lora_r": 0})
    assert view.update_estimate() is None and "lora_r" in view.memory_label.text()


def test_start_pause_resume_stop_then_resume_run_continues(view, qtbot):
    view.set_stage("sft")
    view.form.set_values({**FAST, "max_steps": 4})
    statuses = _statuses(view)
    started: list[tuple] = []
    view.sig_run_started.connect(lambda runner, run_id, stage: started.append((run_id, stage)))
    assert view.start() is not None
    view.pause()  # before the first step: the job waits at the first step boundary
    qtbot.waitUntil(lambda: "paused" in statuses, timeout=RUN_MS)
    run_id = started[0][0]
    assert started == [(run_id, "sft")] and view.run_id == run_id
    project = view.state.project
    assert run_store.get_run(project, run_id)["status"] == "paused"
    assert view.pause_button.text() == "Resume" and view.pause_button.isChecked()
    view.resume()
    assert not view.runner.paused
    with qtbot.waitSignal(view.sig_run_finished, timeout=RUN_MS) as finished:
        view.stop()
    first = finished.args[0]
    assert first["status"] == "stopped" and 1 <= first["steps"] < 4, first
    assert run_store.get_run(project, run_id)["status"] == "stopped"
    checkpoint = run_store.latest_checkpoint(project, run_id)
    assert checkpoint is not None and checkpoint["step"] == first["steps"]
    assert view.resume_box.currentData() == run_id and view.resume_button.isEnabled()

    with qtbot.waitSignal(view.sig_run_finished, timeout=RUN_MS) as finished:
        assert view.resume_run() is not None
    second = finished.args[0]
    assert (second["run_id"], second["status"], second["steps"]) == (run_id, "done", 4), second
    steps = [m["step"] for m in run_store.get_metrics(project, run_id)]
    assert steps == sorted(set(steps)) and steps[-1] == 4 and steps[0] <= first["steps"]
    assert [c["step"] for c in run_store.list_checkpoints(project, run_id)][-1] == 4
    assert view.progress.value() == view.progress.maximum() == 4
    assert len(view.loss_curve.getData()[0]) >= 1  # stored points of the first part, then the live ones
    assert "Run #" in view.progress_label.text() and "done" in view.progress_label.text()
    assert view.start_button.isEnabled() and not view.stop_button.isEnabled()


def test_reward_run_then_ppo_from_the_view(view, qtbot):
    view.set_stage("rm")
    view.form.set_values({**FAST, "max_steps": 2})
    with qtbot.waitSignal(view.sig_run_finished, timeout=RUN_MS) as finished:
        view.start()
    rm = finished.args[0]
    assert rm["status"] == "done" and rm["stage"] == "rm", rm
    assert view.main_curve.getData()[0] is not None and len(view.main_curve.getData()[0]) >= 1  # reward accuracy
    view.set_stage("ppo")
    assert view.reward_box.currentData() == rm["run_id"]
    assert all("Reward model" not in view.start_box.itemText(i) for i in range(view.start_box.count()))
    view.form.set_values({"device": "cpu", "max_steps": 2, "batch_size": 2, "ppo_epochs": 1, "response_length": 8,
                          "max_prompt_length": 64, "save_every": 1})
    with qtbot.waitSignal(view.sig_run_finished, timeout=RUN_MS) as finished:
        view.start()
    ppo = finished.args[0]
    assert ppo["status"] == "done" and ppo["steps"] == 2, ppo
    run = run_store.get_run(view.state.project, ppo["run_id"])
    assert run["config"]["reward_run_id"] == rm["run_id"]
    assert len(view.main_curve.getData()[0]) == 2  # objective/scores, one point per step
