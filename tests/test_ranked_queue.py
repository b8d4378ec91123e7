"""The iteration loop's second half: reward models choose the next pairs, a checkpoint generates them.

Real tiny runs (SFT and a reward model with two checkpoints) trained once for the module; the
candidate queue, the labeling view, the main window's Model menu and the CLI run over them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rlhf_desktop.core.errors import ConfigError
from rlhf_desktop.modeling.pairs import PairSettings, pending_pairs, save_pair_settings
from rlhf_desktop.store import Project, runs
from rlhf_desktop.store.prompts import add_prompts
from rlhf_desktop.training.common import ModelRef
from rlhf_desktop.training.runner import start_run
from rlhf_desktop.training.sampling_strategies import load_scorers, ranking_checkpoints, uncertainty

from test_training_support import seed_preferences

WAIT_MS = 90_000
FAST = {"device": "cpu", "max_length": 160, "per_device_batch_size": 4}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """A project with prompts to pair, an SFT run and a reward-model run saving checkpoints at steps 1 and 2."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("ranked") / "proj"
    with Project.create(folder) as project:
        seed_preferences(project, n=12, heldout_every=4)
        add_prompts(project, [f"Describe object number {i}." for i in range(10)], split="train")
    try:  # tiny models train faster on one thread than on two shared cores
        sft = start_run(folder, "sft", {**FAST, "max_steps": 2, "save_every": 2}, ModelRef(str(tiny_model_dir)))
        rm = start_run(folder, "rm", {**FAST, "max_steps": 2, "save_every": 1}, ModelRef(str(tiny_model_dir)))
    finally:
        torch.set_num_threads(before)
    assert sft.status == "done" and rm.status == "done"
    return folder, sft.run_id, rm.run_id


@pytest.fixture
def proj(trained, tmp_path):
    """A fresh copy of the trained project for each test (tests write pairs and labels into it)."""
    import shutil

    folder = tmp_path / "proj"
    shutil.copytree(trained[0], folder)
    with Project.open(folder) as project:
        yield project


def test_ranking_checkpoints_take_the_newest_reward_models(proj, trained, tiny_model_dir, tmp_path):
    _, _, rm_run = trained
    steps = [c["step"] for c in runs.list_checkpoints(proj, rm_run)]
    assert steps == [1, 2]
    (only,) = ranking_checkpoints(proj, "uncertainty")
    assert (only["run_id"], only["step"]) == (rm_run, 2)
    # One run: its two newest checkpoints disagree with each other.
    assert [(c["run_id"], c["step"]) for c in ranking_checkpoints(proj, "disagreement")] == [(rm_run, 2), (rm_run, 1)]
    # A second run: the newest checkpoint of each of the two newest runs.
    second = runs.create_run(proj, "rm", {}, str(tiny_model_dir))
    (tmp_path / "ck").mkdir()
    runs.add_checkpoint(proj, second, 5, tmp_path / "ck", kind="full")
    assert [(c["run_id"], c["step"]) for c in ranking_checkpoints(proj, "disagreement")] == [(second, 5), (rm_run, 2)]
    assert ranking_checkpoints(proj, "uncertainty")[0]["run_id"] == second


def test_ranking_without_reward_models_says_what_to_do(project):
    with pytest.raises(ConfigError, match="needs a trained reward model") as err:
        ranking_checkpoints(project, "uncertainty")
    assert "Reward model" in err.value.hint
    with pytest.raises(ConfigError, match="needs two reward models"):
        ranking_checkpoints(project, "disagreement")
    with pytest.raises(ConfigError, match="ranking"):
        PairSettings(ranking="loudest").validate()


def test_queue_with_uncertainty_ranking_serves_the_most_uncertain_pairs_and_counts_them(qtbot, proj, trained,
                                                                                         tiny_model_dir):
    from rlhf_desktop.modeling.loading import load_model
    from rlhf_desktop.ui.labeling import LabelingView

    save_pair_settings(proj, PairSettings(max_new_tokens=6, temperature=1.0, queue_depth=2, prompts_per_batch=2,
                                          ranking="uncertainty", ranking_pool=3))
    seeded = proj.counts()["responses"]
    view = LabelingView()
    qtbot.addWidget(view)
    view.show()
    try:
        view.set_project(proj)
        view.set_model(load_model(str(tiny_model_dir)))
        qtbot.waitUntil(lambda: view.current is not None, timeout=WAIT_MS)
        shown = view.current.pair
        assert shown.strategy == "uncertainty"
        qtbot.waitUntil(lambda: view.queue.status == "ready", timeout=WAIT_MS)
        # Kept: the 2 of each batch of 6 generated whose predicted preference is closest to 0.5. The
        # discarded 4 were never stored, so every stored pending pair is a kept one.
        kept = pending_pairs(proj)
        assert kept and {p.strategy for p in kept} == {"uncertainty"}
        assert proj.counts()["responses"] - seeded == 2 * len(kept)
        view.choose("left")
        qtbot.waitUntil(lambda: view.current is not None and view.current.pair.pair_key != shown.pair_key,
                        timeout=WAIT_MS)
        row = proj.query("SELECT strategy FROM comparisons WHERE source = 'label' ORDER BY id DESC LIMIT 1")[0]
        assert row["strategy"] == "uncertainty"
        assert "uncertainty <b>1</b>" in view.counters.text()
        # the label is training data of the next reward-model run like any other
        from rlhf_desktop.store.snapshot import preference_snapshot

        assert {"prompt": shown.prompt, "chosen": shown.left_text, "rejected": shown.right_text} in [
            {k: r[k] for k in ("prompt", "chosen", "rejected")} for r in preference_snapshot(proj, "train")]
    finally:
        view.shutdown()


def test_uncertainty_pairs_are_closer_to_a_coin_flip_than_the_pool(proj, trained, tiny_model_dir):
    """The pairs fill_for_settings keeps rank first among everything it generated, by the real reward model."""
    from rlhf_desktop.modeling.loading import load_model
    from rlhf_desktop.training.sampling_strategies import fill_for_settings

    scorer, = load_scorers(proj, "uncertainty")
    pool = []

    class Watching:  # the real reward model, seeing the whole pool it ranks
        def pair_scores(self, pairs):
            scored = scorer.pair_scores(pairs)
            pool.extend(uncertainty(a, b) for a, b in scored)
            return scored

    settings = PairSettings(max_new_tokens=6, temperature=1.0, prompts_per_batch=4, ranking="uncertainty",
                            ranking_pool=2)
    kept = []
    report = fill_for_settings(proj, load_model(str(tiny_model_dir)), 2, settings, scorers=[Watching()], seed=3,
                               on_pair=kept.append)
    assert report.pairs == 2 and len(pool) == 4
    kept_values = sorted(uncertainty(*scorer.pair_scores([(p.prompt, p.left_text, p.right_text)])[0]) for p in kept)
    assert kept_values == pytest.approx(sorted(pool)[:2], abs=1e-5)


def test_queue_ranking_without_a_reward_model_stops_with_the_reason(qtbot, project, tiny_model_dir):
    from rlhf_desktop.modeling.loading import load_model
    from rlhf_desktop.ui.candidate_queue import CandidateQueue

    add_prompts(project, ["A prompt.", "Another prompt."], split="train")
    queue = CandidateQueue()
    failures = []
    queue.sig_failed.connect(failures.append)
    queue.configure(project.folder, load_model(str(tiny_model_dir)),
                    PairSettings(max_new_tokens=4, ranking="uncertainty"))
    qtbot.waitUntil(lambda: bool(failures), timeout=WAIT_MS)
    assert queue.stop()
    assert "needs a trained reward model" in failures[0]["message"]
    assert project.counts()["responses"] == 0


def test_a_checkpoint_loaded_from_the_model_menu_generates_the_next_pairs(qtbot, data_dir, proj, trained,
                                                                            monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    from rlhf_desktop.ui.main_window import MainWindow
    from rlhf_desktop.ui.model_menu import checkpoint_choices

    _, sft_run, _ = trained
    sft_ckpt = runs.latest_checkpoint(proj, sft_run)
    choices = checkpoint_choices(proj)
    assert [spec for _, spec in choices] == [f"checkpoint:{sft_ckpt['id']}"]  # policy checkpoints only, no RM
    save_pair_settings(proj, PairSettings(max_new_tokens=5, queue_depth=1, prompts_per_batch=1))
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    try:
        window.open_project(proj.folder)
        monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: (choices[0][0], True))
        next(a for a in window.menus["model"].actions() if a.objectName() == "actionLoadCheckpoint").trigger()
        qtbot.waitUntil(lambda: window.state.model is not None, timeout=WAIT_MS)
        loaded = window.state.model
        assert loaded.checkpoint_id == sft_ckpt["id"] and loaded.kind == "checkpoint"
        assert window.state.project.get_setting("last_model") == f"checkpoint:{sft_ckpt['id']}"
        qtbot.waitUntil(lambda: window.labeling.current is not None, timeout=WAIT_MS)
        pair = window.labeling.current.pair
        rows = window.state.project.query("SELECT checkpoint_id FROM responses WHERE id IN (?, ?)",
                                          [pair.left_id, pair.right_id])
        assert [r["checkpoint_id"] for r in rows] == [sft_ckpt["id"]] * 2
    finally:
        window.state.jobs.cancel_all()
        window.labeling.shutdown()
        assert window.state.jobs.wait_all(10)


def test_generate_pairs_cli_with_disagreement_ranking(proj, trained, tiny_model_dir):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "rlhf_desktop", "generate-pairs", "--project", str(proj.folder),
                           "--count", "2", "--model", str(tiny_model_dir), "--max-new-tokens", "5",
                           "--ranking", "disagreement", "--pool", "2", "--seed", "4"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["pairs"] == 2 and summary["ranking"] == "disagreement" and len(summary["reward_models"]) == 2
    assert {p.strategy for p in pending_pairs(proj)} == {"disagreement"}
    assert proj.counts()["responses"] == 24 + 4  # the seeded 12 pairs; of 4 pairs generated, the 2 kept


def test_pair_settings_dialog_round_trips_and_names_a_bad_field(qtbot):
    from PySide6.QtWidgets import QComboBox, QLineEdit

    from rlhf_desktop.modeling.pairs import RANKINGS
    from rlhf_desktop.ui.candidate_queue import PairSettingsDialog

    base = PairSettings(ranking="uncertainty", temperature_b=None, system_prompt="Be brief.")
    dialog = PairSettingsDialog(base)
    qtbot.addWidget(dialog)
    assert dialog.result_settings() == base  # nothing edited: the same settings
    ranking = dialog.form.editors["ranking"]
    assert isinstance(ranking, QComboBox) and [ranking.itemText(i) for i in range(ranking.count())] == list(RANKINGS)
    ranking.setCurrentText("disagreement")
    dialog.form.editors["temperature"].setText("0.5")
    dialog.form.editors["temperature_b"].setText("1.1")
    edited = dialog.result_settings()
    assert (edited.ranking, edited.temperature, edited.temperature_b) == ("disagreement", 0.5, 1.1)
    assert isinstance(dialog.form.editors["top_p"], QLineEdit)
    dialog.form.editors["top_p"].setText("2")
    with pytest.raises(ConfigError) as err:
        dialog.result_settings()
    assert "top_p" in str(err.value.where) + str(err.value)
