"""start_run and RunRecorder: runs recorded in a real project (rows, metrics, checkpoints, lineage, resume)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhf_desktop.core.context import JobContext, RecordingContext
from rlhf_desktop.core.errors import ConfigError, DataError
from rlhf_desktop.store import runs, snapshot
from rlhf_desktop.training.common import ModelRef, estimate_memory, read_metadata
from rlhf_desktop.training.reward import RewardRunConfig
from rlhf_desktop.training.runner import DATA_FILE, RunRecorder, start_run
from rlhf_desktop.training.sft import SFTRunConfig
from test_training_support import one_thread, seed_preferences  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = {"device": "cpu", "max_length": 160, "per_device_batch_size": 4, "save_every": 2}


@pytest.fixture
def seeded(project):
    seed_preferences(project, n=20, heldout_every=5)
    return project


def test_reward_run_is_recorded_with_snapshot_metrics_and_checkpoints(seeded, tiny_model_dir):
    ctx = RecordingContext()
    created = []
    outcome = start_run(seeded.folder, "rm", {**FAST, "max_steps": 3}, ModelRef(str(tiny_model_dir)), ctx=ctx,
                        on_created=created.append)
    assert outcome.status == "done", outcome.error
    assert created == [outcome.run_id] and outcome.steps == 3
    run = runs.get_run(seeded, outcome.run_id)
    assert run["status"] == "done" and run["started_at"] and run["finished_at"]
    assert run["config"]["max_steps"] == 3 and run["config"]["learning_rate"] == RewardRunConfig().learning_rate
    assert run["base_model"] == str(Path(tiny_model_dir).resolve())
    saved = json.loads((runs.run_dir(seeded, outcome.run_id) / DATA_FILE).read_text())
    assert run["data_hash"] == snapshot.data_hash(saved["data"]) == saved["hash"]
    assert saved["data"]["train"] == snapshot.preference_snapshot(seeded, "train")
    assert run["data_size"] == 20 and len(saved["data"]["eval"]) == 4  # held-out prompts are the eval split
    assert "eval_accuracy" in run["final_metrics"]
    metrics = runs.get_metrics(seeded, outcome.run_id)
    assert [m["step"] for m in metrics] == [1, 2, 3] and "eval_accuracy" in metrics[-1]["metrics"]
    assert sorted({s for s, _ in ctx.metrics}) == [1, 2, 3]  # forwarded to the caller's context too
    ckpts = runs.list_checkpoints(seeded, outcome.run_id)
    assert [c["step"] for c in ckpts] == [2, 3]
    assert ckpts[-1]["path"] == f"checkpoints/run-{outcome.run_id}/checkpoint-3"
    meta = read_metadata(ckpts[-1]["abs_path"])
    assert (meta["run_id"], meta["checkpoint_id"], meta["stage"]) == (outcome.run_id, ckpts[-1]["id"], "rm")
    assert "[status] training" in (runs.run_dir(seeded, outcome.run_id) / "run.log").read_text()


def test_lineage_from_sft_to_dpo_and_reward(seeded, tiny_model_dir):
    sft = start_run(seeded.folder, "sft", SFTRunConfig(max_steps=2, **FAST), ModelRef(str(tiny_model_dir)))
    parent = runs.latest_checkpoint(seeded, sft.run_id)
    dpo = start_run(seeded.folder, "dpo", {**FAST, "max_steps": 2}, parent_checkpoint_id=parent["id"])
    rm = start_run(seeded.folder, "rm", {**FAST, "max_steps": 2}, parent_checkpoint_id=parent["id"])
    assert (sft.status, dpo.status, rm.status) == ("done", "done", "done"), (dpo.error, rm.error)
    for child in (dpo, rm):
        run = runs.get_run(seeded, child.run_id)
        assert (run["parent_run_id"], run["parent_checkpoint_id"]) == (sft.run_id, parent["id"])
        assert [r["id"] for r in runs.lineage(seeded, child.run_id)] == [sft.run_id, child.run_id]
        meta = read_metadata(child.checkpoint_path)
        assert meta["parent_checkpoint"] == parent["abs_path"]
        assert meta["base_model"] == str(Path(tiny_model_dir).resolve())  # adapters stay on the same base
    with pytest.raises(ConfigError, match="reward model"):
        start_run(seeded.folder, "dpo", {**FAST, "max_steps": 1},
                  parent_checkpoint_id=runs.latest_checkpoint(seeded, rm.run_id)["id"])


def test_stopped_run_resumes_on_its_snapshot_and_continues_the_steps(seeded, tiny_model_dir):
    ctx = RecordingContext()
    ctx.on_report = lambda step, metrics: ctx.request_stop() if step == 2 else None
    first = start_run(seeded.folder, "sft", {**FAST, "max_steps": 4, "save_every": 50},
                      ModelRef(str(tiny_model_dir)), ctx=ctx)
    assert first.status == "stopped" and first.steps == 2
    assert runs.get_run(seeded, first.run_id)["status"] == "stopped"
    seed_preferences(seeded, n=3, seed=1)  # new labels must not leak into the resumed run

    resumed = start_run(seeded.folder, "sft", ctx=RecordingContext(), resume_run_id=first.run_id)
    assert resumed.status == "done" and resumed.run_id == first.run_id and resumed.steps == 4
    assert [m["step"] for m in runs.get_metrics(seeded, first.run_id)] == [1, 2, 3, 4]
    assert [c["step"] for c in runs.list_checkpoints(seeded, first.run_id)] == [2, 4]
    assert runs.get_run(seeded, first.run_id)["status"] == "done"

    longer = start_run(seeded.folder, "sft", {"max_steps": 5}, resume_run_id=first.run_id)
    assert longer.steps == 5 and runs.get_run(seeded, first.run_id)["config"]["max_steps"] == 5


def test_failed_run_is_marked_with_its_reason(seeded, tiny_model_dir):
    outcome = start_run(seeded.folder, "dpo", {**FAST, "max_steps": 2, "lora_target_modules": ["no_such_proj"]},
                        ModelRef(str(tiny_model_dir)))
    run = runs.get_run(seeded, outcome.run_id)
    assert outcome.status == run["status"] == "failed"
    assert "no_such_proj" in run["error"] and run["finished_at"]
    assert "Traceback" in (runs.run_dir(seeded, outcome.run_id) / "run.log").read_text()


def test_refusals_happen_before_any_run_row(project, tiny_model_dir):
    with pytest.raises(DataError, match="no training data"):
        start_run(project.folder, "rm", {**FAST, "max_steps": 1}, ModelRef(str(tiny_model_dir)))
    seed_preferences(project, n=4)
    with pytest.raises(ConfigError) as info:
        start_run(project.folder, "rm", {"max_steps": -1}, ModelRef(str(tiny_model_dir)))
    assert info.value.where == "max_steps"
    with pytest.raises(ConfigError, match="unknown field"):
        start_run(project.folder, "sft", {"batch": 2}, ModelRef(str(tiny_model_dir)))
    assert runs.list_runs(project) == []


def test_recorder_shares_control_flags_and_forwards(project, tiny_model_dir):
    run_id = runs.create_run(project, "ppo", {}, "base")
    gui = RecordingContext()
    recorder = RunRecorder(project.folder, run_id, downstream=gui, flush_seconds=3600, flush_steps=3)
    gui.pause()
    assert recorder.paused
    gui.resume()
    recorder.report(1, {"loss": 1.0})
    recorder.report(2, {"loss": 0.5})
    assert runs.get_metrics(project, run_id) == []  # buffered
    recorder.report(3, {"loss": 0.25})
    assert [m["step"] for m in runs.get_metrics(project, run_id)] == [1, 2, 3]
    recorder.samples(3, [{"prompt": "p", "response": "r", "score": 1.0}])
    recorder.status("paused")
    assert runs.get_run(project, run_id)["status"] == "paused"
    recorder.status("resumed")
    assert runs.get_run(project, run_id)["status"] == "running"
    gui.request_stop()
    assert recorder.should_stop()
    recorder.close()
    assert [s for s, _ in gui.metrics] == [1, 2, 3] and gui.sample_rows[0][0] == 3
    assert gui.statuses == ["paused", "resumed"]
    assert runs.get_samples(project, run_id)[0]["score"] == 1.0
    assert isinstance(recorder, JobContext)


def test_memory_estimate_counts_lora_and_warns_when_it_cannot_fit(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from rlhf_desktop.modeling.tiny import make_tiny_model

    small = estimate_memory("sft", SFTRunConfig(device="cpu", lora_r=4), tiny_model_dir)
    model, _ = make_tiny_model()
    base_count = sum(p.numel() for p in model.parameters())
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    trainable = sum(p.numel() for p in peft.parameters() if p.requires_grad)
    assert small["lora"] == 4 * trainable and small["trainable_parameters"] == trainable
    assert small["parameters"] == base_count
    assert small["fits"] and small["total"] > small["weights"] > 0 and small["free"] > 0
    huge = estimate_memory("dpo", SFTRunConfig(device="cpu", per_device_batch_size=4096, max_length=65536,
                                                full_finetune=True), tiny_model_dir)
    assert not huge["fits"] and "per_device_batch_size" in huge["message"]
    assert huge["optimizer"] == 8 * huge["parameters"]


def test_ppo_runs_against_a_reward_run_and_records_samples(seeded, tiny_model_dir):
    rm = start_run(seeded.folder, "rm", {**FAST, "max_steps": 1}, ModelRef(str(tiny_model_dir)))
    with pytest.raises(ConfigError, match="reward model"):
        start_run(seeded.folder, "ppo", {"device": "cpu"}, ModelRef(str(tiny_model_dir)))
    ppo = start_run(seeded.folder, "ppo", {"max_steps": 1, "batch_size": 2, "response_length": 4, "device": "cpu"},
                    ModelRef(str(tiny_model_dir)), reward_run_id=rm.run_id)
    assert ppo.status == "done", ppo.error
    run = runs.get_run(seeded, ppo.run_id)
    assert run["config"]["reward_run_id"] == rm.run_id
    assert run["config"]["reward_checkpoint"] == runs.latest_checkpoint(seeded, rm.run_id)["abs_path"]
    assert run["data_size"] == len(snapshot.prompt_snapshot(seeded))
    assert "objective/kl" in runs.get_metrics(seeded, ppo.run_id)[0]["metrics"]
    assert runs.get_samples(seeded, ppo.run_id) and runs.latest_checkpoint(seeded, ppo.run_id)["step"] == 1


def test_memory_estimate_covers_every_stage_config(tiny_model_dir):
    from rlhf_desktop.training.runner import stage_config_class

    for stage in ("sft", "rm", "dpo", "ppo"):
        estimate = estimate_memory(stage, stage_config_class(stage)(device="cpu"), tiny_model_dir)
        assert estimate["fits"] and estimate["activations"] > 0, stage
