"""The Runs view (lineage, delete after confirmation) and the reward-model report view, offscreen."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtWidgets import QFrame, QMessageBox, QPushButton

from rlhf_desktop.store import runs as run_store
from rlhf_desktop.training.rm_report import compute_report
from rlhf_desktop.ui.rm_report_view import RMReportView
from rlhf_desktop.ui.runs_view import RunsView, duration_text, metrics_text


def _lineage(project, base="/models/SmolLM2-135M-Instruct"):
    """base -> SFT -> PPO trained against an RM (also from the base), like the app records them."""
    sft = run_store.create_run(project, "sft", {}, base, name="warmup")
    run_store.set_run_status(project, sft, "running")
    run_store.set_run_status(project, sft, "done", final_metrics={"loss": 0.8123, "mean_token_accuracy": 0.61})
    rm = run_store.create_run(project, "rm", {}, base)
    run_store.set_run_status(project, rm, "done", final_metrics={"eval_accuracy": 0.93, "eval_loss": 0.2})
    ppo = run_store.create_run(project, "ppo", {"reward_run_id": rm}, base, parent_run_id=sft)
    run_store.set_run_status(project, ppo, "running")
    return sft, rm, ppo


@pytest.fixture
def view(qtbot, project):
    widget = RunsView()
    qtbot.addWidget(widget)
    widget.set_project(project)
    widget.show()
    return widget


def rows(view):
    tree = view.tree
    return [[tree.topLevelItem(i).text(c) for c in range(tree.columnCount())] for i in range(tree.topLevelItemCount())]


def test_runs_are_listed_newest_first_with_lineage_and_results(view, project):
    sft, rm, ppo = _lineage(project)
    view.refresh()
    table = rows(view)
    assert [r[0] for r in table] == [str(ppo), str(rm), str(sft)]
    assert table[0][2:5] == ["PPO", "running",
                             f"SmolLM2-135M-Instruct → SFT #{sft} warmup → PPO #{ppo} → reward: RM #{rm}"]
    assert table[1][6] == "eval_accuracy 0.93 · eval_loss 0.2"
    assert table[2][6] == "loss 0.8123 · mean_token_accuracy 0.61"
    view.select_run(ppo)
    chips = [b.text() for b in view.findChild(QFrame, "lineageChain").findChildren(QPushButton)]
    assert chips == ["SmolLM2-135M-Instruct", f"SFT #{sft} warmup  (done)", f"PPO #{ppo}  (running)",
                     f"reward: RM #{rm}  (done)"]
    assert not view.buttons["report"].isEnabled()
    view.select_run(rm)
    assert view.buttons["report"].isEnabled()


def test_buttons_emit_the_selected_run(view, project, qtbot):
    _sft, rm, _ppo = _lineage(project)
    view.refresh()
    view.select_run(rm)
    for key, signal in (("open", view.sig_open_run), ("compare", view.sig_compare_run),
                        ("report", view.sig_open_rm_report)):
        with qtbot.waitSignal(signal, timeout=1000) as caught:
            view.buttons[key].click()
        assert caught.args == [rm]


def test_delete_asks_first_and_removes_the_run_and_its_files(view, project, monkeypatch, qtbot):
    sft, rm, ppo = _lineage(project)
    folder = run_store.run_dir(project, sft)
    (folder / "checkpoint-10").mkdir(parents=True)
    run_store.add_checkpoint(project, sft, 10, folder / "checkpoint-10")
    view.refresh()
    view.select_run(sft)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.No)
    assert not view.delete_selected()
    assert folder.is_dir() and len(rows(view)) == 3
    assert "1 checkpoint?" in asked[0]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(view.sig_run_deleted, timeout=1000) as caught:
        assert view.delete_selected()
    assert caught.args == [sft]
    assert not folder.exists()
    assert [r[0] for r in rows(view)] == [str(ppo), str(rm)]
    assert rows(view)[0][4] == f"SmolLM2-135M-Instruct → PPO #{ppo} → reward: RM #{rm}"  # unparented, not lost
    informed = []
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: informed.append(a[2]))
    view.select_run(ppo)
    assert not view.delete_selected()  # a running run is never deleted under its job
    assert "stop it first" in informed[0]


def test_duration_and_metric_text():
    run = {"started_at": "2026-01-01T10:00:00.000Z", "finished_at": "2026-01-01T10:12:05.500Z", "stage": "ppo",
           "final_metrics": {"objective/scores": 1.23456, "objective/kl": 2.0}}
    assert duration_text(run) == "12m 05s"
    assert duration_text({**run, "finished_at": "2026-01-01T12:30:00Z"}) == "2h 30m"
    assert duration_text({"started_at": None}) == ""
    assert metrics_text(run) == "objective/scores 1.235 · objective/kl 2"


def test_rm_report_view_draws_a_report(qtbot, tmp_path):
    rng = np.random.default_rng(0)
    lc, lr = rng.integers(10, 200, 200).astype(float), rng.integers(10, 200, 200).astype(float)
    report = compute_report(0.01 * lc + rng.normal(1, 1, 200), 0.01 * lr + rng.normal(0, 1, 200), lc, lr)
    view = RMReportView()
    qtbot.addWidget(view)
    view.resize(1200, 800)
    view.show()
    with qtbot.waitSignal(view.sig_report_ready, timeout=1000):
        view.set_report(report, "run #2")
    assert f"{report.accuracy:.1%}" in view.headline.text() and "95% CI" in view.headline.text()
    assert report.findings[0] in view.findings.text()
    assert len(view.calibration.listDataItems()) == 2  # the diagonal and the reliability curve
    assert len(view.scatter.listDataItems()) == 2  # chosen and rejected
    labels = [t for _v, t in view.by_length.getAxis("bottom")._tickLevels[0]]
    assert len(labels) == len(report.length_bins) and all("n=" in t for t in labels)
    view.set_report(report)  # redrawing replaces, never stacks
    assert len(view.scatter.listDataItems()) == 2


def _stored_rm_run(project, tmp_path, name="rm-checkpoint"):
    from rlhf_desktop.modeling.tiny import make_tiny_model

    folder = tmp_path / name
    make_tiny_model(folder, kind="seqcls")
    run_id = run_store.create_run(project, "rm", {"eval_fraction": 0.1, "seed": 0}, str(folder))
    run_dir = run_store.run_dir(project, run_id)
    run_dir.mkdir(parents=True)
    held = [{"prompt": f"q{i}", "chosen": "good " * i, "rejected": "bad", "margin": 0.0} for i in range(1, 9)]
    (run_dir / "data.json").write_text(json.dumps({"hash": "h", "data": {"train": [], "eval": held}}))
    run_store.add_checkpoint(project, run_id, 5, folder, kind="full")
    run_store.set_run_status(project, run_id, "done")
    return run_id


def test_rm_report_view_opens_on_the_newest_reward_model_of_the_project(qtbot, project, tmp_path):
    from rlhf_desktop.ui.state import AppState

    older, newer = _stored_rm_run(project, tmp_path, "a"), _stored_rm_run(project, tmp_path, "b")
    state = AppState()
    view = RMReportView(state)
    qtbot.addWidget(view)
    state.set_project(project)
    assert view.report is None  # nothing is scored until the view is looked at
    with qtbot.waitSignal(view.sig_report_ready, timeout=60_000):
        view.show()
    assert view.run_id == newer and [view.run_box.itemData(i) for i in range(view.run_box.count())] == [newer, older]
    with qtbot.waitSignal(view.sig_report_ready, timeout=60_000):
        view.run_box.activated.emit(1)  # the user picks the older run
    assert view.run_id == older and f"run #{older}" in view.headline.text()
    assert view.runner.wait(10)
    state.set_project(None)
    assert view.report is None and view.run_box.count() == 0 and "No report yet" in view.headline.text()


def test_rm_report_view_scores_a_run_in_a_worker(qtbot, project, tmp_path):
    run_id = _stored_rm_run(project, tmp_path)
    view = RMReportView()
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.sig_report_ready, timeout=60_000) as caught:
        view.show_run(project, run_id)
    assert caught.args[0].n == 8
    assert view.runner.wait(10)
