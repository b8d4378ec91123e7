"""Exporting preference pairs and demonstrations: formats, round trips, TRL, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from rlhf_desktop.core.errors import DataError
from rlhf_desktop.store import Project
from rlhf_desktop.store.io_demonstrations import export_demonstrations, import_demonstrations
from rlhf_desktop.store.io_preferences import export_preferences, import_preferences
from rlhf_desktop.store.labels import add_demonstration, add_response, list_comparisons, record_label
from rlhf_desktop.store.prompts import add_prompts, list_prompts, set_split

MULTI_TURN = "Human: hi\n\nAssistant: hello\n\nHuman: and?"


@pytest.fixture
def labeled(project):
    """Six prompts labeled every way: left/right (both placements), much better, tie, both bad, skip."""
    add_prompts(project, [f"Question {i}?" for i in range(6)] + [MULTI_TURN],
                split="train")
    prompts = list_prompts(project)
    set_split(project, [prompts[6]["id"]], "heldout")
    plan = ["left", "right", "left", "tie", "both_bad", "skipped", "right"]
    for prompt, outcome in zip(prompts, plan):
        pid = prompt["id"]
        good = add_response(project, pid, f"Good answer to {prompt['text']}")
        bad = add_response(project, pid, f"Weak answer to {prompt['text']}")
        left, right = (good, bad) if outcome == "left" else (bad, good)
        record_label(project, pid, left, right, outcome, strength=2 if pid == prompts[2]["id"] else 1)
    add_demonstration(project, prompts[0]["id"], "The ideal answer.")
    add_demonstration(project, prompts[6]["id"], "A held-out ideal answer.")
    return project


def _preferences(project):
    """(prompt, winner or 'tie', strength) of every decisive or tie label: what a round trip must keep."""
    out = Counter()
    for r in list_comparisons(project, outcome=["left", "right", "tie"], limit=None):
        winner = {"left": r["left_text"], "right": r["right_text"]}.get(r["outcome"], "tie")
        out[(r["prompt"], winner, r["strength"])] += 1
    return out


def test_jsonl_export_columns_margin_and_exclusions(labeled, tmp_path):
    result = export_preferences(labeled, tmp_path / "prefs.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "prefs.jsonl").read_text().splitlines()]
    assert result["rows"] == len(rows) == 4
    assert result["excluded"] == {"tie": 1, "both_bad": 1, "skipped": 1}
    assert all(set(r) == {"prompt", "chosen", "rejected", "margin"} for r in rows)
    assert all(r["chosen"].startswith("Good") and r["rejected"].startswith("Weak") for r in rows)
    assert sorted(r["margin"] for r in rows) == [0.0, 0.0, 0.0, 1.0]
    assert result["splits"] == {"train": 3, "heldout": 1}


def test_round_trip_keeps_counts_and_outcomes(labeled, tmp_path):
    expected = _preferences(labeled)
    for fmt, out, conversational in (("jsonl", "p.jsonl", False), ("parquet", "p.parquet", False),
                                     ("hf", "hf_dir", True)):
        export_preferences(labeled, tmp_path / out, fmt=fmt, include_ties=True, conversational=conversational)
        with Project.create(tmp_path / f"copy-{fmt}") as copy:
            report = import_preferences(copy, tmp_path / out)
            assert (report.imported, report.errors, report.skipped) == (5, [], 1), fmt  # the tie's mirror row
            assert _preferences(copy) == expected, fmt
            splits = {p["text"]: p["split"] for p in list_prompts(copy)}
            if fmt == "hf":  # the held-out prompt came back through the `test` split
                assert splits[MULTI_TURN] == "heldout"
            assert MULTI_TURN in splits


def test_hf_folder_has_splits_and_a_card(labeled, tmp_path):
    import datasets

    result = export_preferences(labeled, tmp_path / "ds", fmt="hf", conversational=True)
    loaded = datasets.load_from_disk(str(tmp_path / "ds"))
    assert sorted(loaded) == ["test", "train"] and (len(loaded["train"]), len(loaded["test"])) == (3, 1)
    first = loaded["train"][0]
    assert first["prompt"] == [{"role": "user", "content": "Question 0?"}]
    assert first["chosen"] == [{"role": "assistant", "content": "Good answer to Question 0?"}]
    multi = loaded["test"][0]["prompt"]  # a stored transcript goes back to turns
    assert multi == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                     {"role": "user", "content": "and?"}]
    card = (tmp_path / "ds" / "README.md").read_text()
    assert "margin" in card and "Ties are not included" in card
    assert str(tmp_path / "ds" / "README.md") in result["files"]
    export_preferences(labeled, tmp_path / "ds", fmt="hf")  # an earlier export may be replaced
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not an earlier dataset export"):
        export_preferences(labeled, tmp_path / "other", fmt="hf")


def test_nothing_to_export_is_a_clear_error(project, tmp_path):
    with pytest.raises(DataError, match="no preference pairs"):
        export_preferences(project, tmp_path / "x.jsonl")
    with pytest.raises(DataError, match="unknown export format"):
        export_preferences(project, tmp_path / "x.csv", fmt="csv")


def test_demonstrations_export_and_round_trip(labeled, tmp_path):
    result = export_demonstrations(labeled, tmp_path / "sft.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert result["rows"] == 2 and rows[0] == {"prompt": "Question 0?", "completion": "The ideal answer."}
    export_demonstrations(labeled, tmp_path / "sft_hf", fmt="hf", conversational=True)
    with Project.create(tmp_path / "copy") as copy:
        assert import_demonstrations(copy, tmp_path / "sft_hf").imported == 2
        held = {p["text"]: p["split"] for p in list_prompts(copy)}
        assert held[MULTI_TURN] == "heldout"


def test_export_loads_with_datasets_and_trains_reward_trainer(labeled, tmp_path):
    from datasets import load_dataset
    from trl import RewardConfig, RewardTrainer

    from rlhf_desktop.modeling.tiny import make_tiny_model

    export_preferences(labeled, tmp_path / "prefs.jsonl", include_ties=True)
    dataset = load_dataset("json", data_files=str(tmp_path / "prefs.jsonl"), split="train",
                           cache_dir=str(tmp_path / "hf-cache"))
    assert dataset.column_names == ["prompt", "chosen", "rejected", "margin", "tie"] and len(dataset) == 6
    model, tok = make_tiny_model(kind="seqcls")
    before = [p.detach().clone() for p in model.parameters()]
    args = RewardConfig(output_dir=str(tmp_path / "rm"), max_steps=2, per_device_train_batch_size=2, use_cpu=True,
                        bf16=False, report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True)
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok)
    result = trainer.train()
    assert trainer.state.global_step == 2
    assert result.training_loss == pytest.approx(result.training_loss) and result.training_loss > 0  # finite
    assert any(not bool((a == b).all()) for a, b in zip(before, model.parameters()))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "rlhf_desktop", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_cli_import_and_export(labeled, tmp_path):
    folder = labeled.folder
    good = tmp_path / "q.csv"
    good.write_text("question\nFrom the CLI\ntwo,fields\n", encoding="utf-8")
    run = _cli("import", "prompts", good, "--project", folder, "--map", "prompt=question", "--split", "heldout")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["imported"] == 1 and summary["errors"][0]["line"] == 3

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"nope": 1}\n{"prompt": "x", "chosen": "a"}\n', encoding="utf-8")
    run = _cli("import", "preferences", bad, "--project", folder, "--preview")
    assert run.returncode == 1
    assert [e["line"] for e in json.loads(run.stdout)["errors"]] == [1, 2]

    run = _cli("export", "preferences", "--project", folder, "--format", "parquet", "--out", tmp_path / "o.parquet",
               "--include-ties")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["rows"] == 6

    run = _cli("import", "preferences", tmp_path / "missing.jsonl", "--project", folder)
    assert run.returncode == 2 and "file not found" in run.stderr and "Traceback" not in run.stderr
