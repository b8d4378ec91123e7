"""store/runs.py and store/snapshot.py on a real project database (no models involved)."""

from __future__ import annotations

import math

import pytest

from rlhf_desktop.core.errors import ProjectError
from rlhf_desktop.store import runs, snapshot
from test_training_support import seed_preferences


def _label(project, prompt, left, right, outcome, strength=1, split="train", criterion=""):
    pid = project.execute("INSERT INTO prompts (text, text_hash, split) VALUES (?, ?, ?)",
                          (prompt, prompt, split)).lastrowid
    lid = project.execute("INSERT INTO responses (prompt_id, text) VALUES (?, ?)", (pid, left)).lastrowid
    rid = project.execute("INSERT INTO responses (prompt_id, text) VALUES (?, ?)", (pid, right)).lastrowid
    project.execute("INSERT INTO comparisons (prompt_id, left_id, right_id, outcome, strength, criterion) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (pid, lid, rid, outcome, strength, criterion))
    return pid


def test_run_rows_status_and_lineage(project):
    root = runs.create_run(project, "sft", {"lr": 1.0}, "/models/base", data_size=3, data_hash="abc")
    child = runs.create_run(project, "rm", {"lr": 2.0}, "/models/base", parent_run_id=root, parent_checkpoint_id=7)
    grandchild = runs.create_run(project, "ppo", {}, "/models/base", parent_run_id=child)
    run = runs.get_run(project, child)
    assert run["status"] == "queued" and run["config"] == {"lr": 2.0} and run["parent_checkpoint_id"] == 7
    assert run["started_at"] is None

    runs.set_run_status(project, child, "running")
    started = runs.get_run(project, child)["started_at"]
    runs.set_run_status(project, child, "paused")
    runs.set_run_status(project, child, "running")
    assert runs.get_run(project, child)["started_at"] == started  # stamped once
    runs.set_run_status(project, child, "failed", error="out of memory", final_metrics={"loss": 0.5})
    run = runs.get_run(project, child)
    assert run["status"] == "failed" and run["error"] == "out of memory" and run["finished_at"]
    assert run["final_metrics"] == {"loss": 0.5}

    assert [r["id"] for r in runs.lineage(project, grandchild)] == [root, child, grandchild]
    assert [r["id"] for r in runs.list_runs(project, stage="rm")] == [child]
    assert len(runs.list_runs(project)) == 3
    with pytest.raises(ProjectError, match="unknown run status"):
        runs.set_run_status(project, child, "exploded")
    with pytest.raises(ProjectError, match="no run 99"):
        runs.get_run(project, 99)
    with pytest.raises(ProjectError, match="unknown stage"):
        runs.create_run(project, "grpo", {}, "")


def test_metrics_upsert_merges_and_keeps_non_finite_as_null(project):
    run_id = runs.create_run(project, "sft", {}, "base")
    runs.add_metrics(project, run_id, [(1, 10.0, {"loss": 2.0}), (2, 11.0, {"loss": 1.5})])
    runs.add_metrics(project, run_id, [(2, 12.0, {"eval_accuracy": 0.75}), (3, 13.0, {"loss": math.nan})])
    rows = runs.get_metrics(project, run_id)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[1]["metrics"] == {"loss": 1.5, "eval_accuracy": 0.75} and rows[1]["wall_time"] == 12.0
    assert rows[2]["metrics"] == {"loss": None}


def test_checkpoints_relative_paths_update_and_latest(project):
    run_id = runs.create_run(project, "rm", {}, "base")
    folder = runs.run_dir(project, run_id)
    first, second = folder / "checkpoint-2", folder / "checkpoint-4"
    first.mkdir(parents=True)
    second.mkdir()
    a = runs.add_checkpoint(project, run_id, 2, first, metrics={"loss": 1.0})
    b = runs.add_checkpoint(project, run_id, 4, second)
    assert runs.add_checkpoint(project, run_id, 4, second, kind="full") == b  # same step: updated, not duplicated
    ckpt = runs.get_checkpoint(project, a)
    assert ckpt["path"] == f"checkpoints/run-{run_id}/checkpoint-2" and ckpt["metrics"] == {"loss": 1.0}
    assert ckpt["abs_path"] == str(first)
    assert [c["kind"] for c in runs.list_checkpoints(project, run_id)] == ["adapter", "full"]
    assert runs.latest_checkpoint(project, run_id)["id"] == b
    second.rmdir()
    assert runs.latest_checkpoint(project, run_id)["id"] == a  # a vanished folder is skipped

    runs.delete_run(project, run_id)
    assert not folder.exists() and runs.list_checkpoints(project) == []
    with pytest.raises(ProjectError):
        runs.get_checkpoint(project, a)


def test_samples_keep_extra_fields(project):
    run_id = runs.create_run(project, "ppo", {}, "base")
    runs.add_samples(project, run_id, 3, [{"prompt": "p", "response": "r", "score": 1.5, "kl": 0.1, "length": 4}])
    runs.add_samples(project, run_id, 4, [{"prompt": "q", "response": "s"}])
    (row,) = runs.get_samples(project, run_id, step=3)
    assert (row["prompt"], row["response"], row["score"], row["kl"], row["extra"]) == ("p", "r", 1.5, 0.1, {"length": 4})
    assert [r["step"] for r in runs.get_samples(project, run_id)] == [3, 4]
    assert runs.get_samples(project, run_id, step=4)[0]["score"] is None


def test_preference_snapshot_maps_outcomes_and_strength(project):
    _label(project, "p1", "L1", "R1", "left", strength=2)
    _label(project, "p2", "L2", "R2", "right")
    _label(project, "p3", "L3", "R3", "tie")
    _label(project, "p4", "L4", "R4", "both_bad")
    _label(project, "p5", "L5", "R5", "skipped")
    _label(project, "p6", "L6", "R6", "left", split="heldout")
    _label(project, "p7", "L7", "R7", "right", criterion="safety")
    rows = snapshot.preference_snapshot(project)
    assert rows == [{"prompt": "p1", "chosen": "L1", "rejected": "R1", "margin": 1.0},
                    {"prompt": "p2", "chosen": "R2", "rejected": "L2", "margin": 0.0},
                    {"prompt": "p7", "chosen": "R7", "rejected": "L7", "margin": 0.0}]
    assert [r["prompt"] for r in snapshot.preference_snapshot(project, "heldout")] == ["p6"]
    assert len(snapshot.preference_snapshot(project, None)) == 4
    assert [r["prompt"] for r in snapshot.preference_snapshot(project, criterion="safety")] == ["p7"]
    ties = [r for r in snapshot.preference_snapshot(project, include_ties=True) if r["prompt"] == "p3"]
    assert {(r["chosen"], r["rejected"], r["margin"]) for r in ties} == {("L3", "R3", 0.0), ("R3", "L3", 0.0)}


def test_sft_and_prompt_snapshots(project):
    seed_preferences(project, n=6, heldout_every=3, demonstrations=2)
    pid = project.query("SELECT prompt_id FROM demonstrations ORDER BY id LIMIT 1")[0]["prompt_id"]
    project.execute("INSERT INTO demonstrations (prompt_id, text) VALUES (?, ?)",
                    (pid, project.query("SELECT text FROM demonstrations ORDER BY id LIMIT 1")[0]["text"]))
    rows = snapshot.sft_snapshot(project)
    train_prompts = snapshot.prompt_snapshot(project)
    assert len(train_prompts) == 4 and len(snapshot.prompt_snapshot(project, "heldout")) == 2
    assert all(r["prompt"] in train_prompts for r in rows)
    assert len(rows) == len({(r["prompt"], r["completion"]) for r in rows})  # the duplicate demonstration went
    winners = [r for r in rows if r["completion"].endswith("GOOD")]
    assert len(winners) == 4 and len(rows) == 4 + 1  # one train demonstration (the other prompt is held out)


def test_data_hash_is_canonical():
    rows = [{"prompt": "a", "chosen": "b", "rejected": "c", "margin": 0.0}]
    same = [{"margin": 0.0, "rejected": "c", "chosen": "b", "prompt": "a"}]
    assert snapshot.data_hash(rows) == snapshot.data_hash(same)
    assert snapshot.data_hash(rows) != snapshot.data_hash(rows + rows)
    assert len(snapshot.data_hash([])) == 64
