"""Prompts, responses, labels, undo, edit-as-demonstration, browsing and counters on a real project."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from rlhf_desktop.core.errors import DataError
from rlhf_desktop.store import labels
from rlhf_desktop.store.labels import (add_demonstration, add_response, count_comparisons, delete_demonstration,
                                       delete_label, edit_as_demonstration, get_label, label_stats, list_comparisons,
                                       list_demonstrations, record_label, record_labels, undo_last_label,
                                       update_demonstration, update_label)
from rlhf_desktop.store.prompts import (add_prompts, count_prompts, get_prompt, list_prompts, load_starter_prompts,
                                        set_split, split_for, starter_prompts_path, text_hash)


@pytest.fixture
def pair(project):
    """A prompt with two responses: (project, prompt_id, id_a, id_b)."""
    add_prompts(project, ["Explain photosynthesis briefly."], split="train")
    pid = list_prompts(project)[0]["id"]
    a = add_response(project, pid, "Plants turn light, water and CO2 into sugar and oxygen.", model="m",
                     gen_config={"temperature": 0.7, "seed": 1})
    b = add_response(project, pid, "It is when plants eat dirt.", model="m", gen_config={"seed": 2})
    return project, pid, a, b


# -- prompts -----------------------------------------------------------------------------------
def test_add_prompts_reports_duplicates_and_empties(project):
    report = add_prompts(project, ["What is RLHF?", "  what is   RLHF?  ".replace("what", "What"), "", "Another"])
    assert (report.imported, report.skipped, report.duplicates) == (2, 1, [2])
    assert report.errors == [(3, "empty prompt")]
    again = add_prompts(project, ["Another", "New one"])
    assert (again.imported, again.duplicates) == (1, [1])
    assert count_prompts(project) == 3
    assert report.to_dict()["errors"] == [{"line": 3, "reason": "empty prompt"}]


def test_split_is_deterministic_by_hash_and_can_be_changed(project):
    texts = [f"prompt number {i}" for i in range(400)]
    add_prompts(project, texts, heldout_fraction=0.1)
    rows = list_prompts(project)
    expected = {t: split_for(text_hash(t), 0.1) for t in texts}
    assert {r["text"]: r["split"] for r in rows} == expected
    held = count_prompts(project, "heldout")
    assert 15 <= held <= 70  # about 10 %
    ids = [r["id"] for r in rows if r["split"] == "train"][:5]
    assert set_split(project, ids + [rows[0]["id"]], "heldout") == 5  # an unchanged row is not counted
    assert count_prompts(project, "heldout") == held + 5
    assert get_prompt(project, ids[0])["split"] == "heldout"
    with pytest.raises(ValueError):
        set_split(project, ids, "test")
    with pytest.raises(DataError, match="no prompt with id"):
        get_prompt(project, 10**6)


def test_starter_prompts_load_once(project, tmp_path):
    path = tmp_path / "starter.jsonl"
    path.write_text('{"prompt": "Write a haiku about rain.", "category": "creative"}\n'
                    '{"prompt": "How do I pick a lock?", "category": "decline"}\n\n'
                    '{"category": "math"}\n', encoding="utf-8")
    report = load_starter_prompts(project, path)
    assert (report.imported, report.errors) == (2, [(4, "missing field 'prompt'")])
    assert {p["source"] for p in list_prompts(project)} == {"starter"}
    assert load_starter_prompts(project, path).imported == 0


def test_bundled_starter_set_when_present(project):
    if not starter_prompts_path().exists():
        pytest.skip("resources/prompts/starter.jsonl is not written yet")
    report = load_starter_prompts(project)
    assert report.errors == [] and report.imported >= 150


# -- labels --------------------------------------------------------------------------------------
def test_record_label_keeps_the_shown_placement(pair):
    project, pid, a, b = pair
    cid = record_label(project, pid, b, a, "right", strength=2, note="clearer", duration_ms=1500, strategy="random")
    row = list_comparisons(project)[0]
    assert row["id"] == cid
    assert (row["left_id"], row["right_id"], row["outcome"], row["strength"]) == (b, a, "right", 2)
    assert row["left_text"].startswith("It is when") and row["right_text"].startswith("Plants")
    assert (row["note"], row["duration_ms"], row["prompt"]) == ("clearer", 1500, "Explain photosynthesis briefly.")


@pytest.mark.parametrize("kwargs, error, match", [
    ({"outcome": "better"}, ValueError, "outcome must be"),
    ({"strength": 3}, ValueError, "strength"),
    ({"duration_ms": -1}, ValueError, "duration_ms"),
    ({"right_id": "same"}, ValueError, "two different"),
    ({"right_id": 999}, DataError, "no response with id 999"),
    ({"prompt_id": 999}, DataError, "answers prompt"),
])
def test_record_label_validates(pair, kwargs, error, match):
    project, pid, a, b = pair
    args = {"prompt_id": pid, "left_id": a, "right_id": b, "outcome": "left", **kwargs}
    if args["right_id"] == "same":
        args["right_id"] = a
    with pytest.raises(error, match=match):
        record_label(project, **args)
    assert project.counts()["comparisons"] == 0


def test_undo_is_repeatable_and_only_touches_labels(pair):
    project, pid, a, b = pair
    first = record_label(project, pid, a, b, "left")
    record_label(project, pid, b, a, "tie", source="import")
    second = record_label(project, pid, b, a, "skipped")
    assert undo_last_label(project)["id"] == second
    assert undo_last_label(project)["id"] == first
    assert undo_last_label(project) is None
    assert [c["source"] for c in list_comparisons(project)] == ["import"]
    assert project.counts()["responses"] == 2


def test_criteria_are_one_transaction_and_undone_together(pair):
    project, pid, a, b = pair
    ids = record_labels(project, pid, a, b, {"helpful": "left", "harmless": "tie"}, strength={"helpful": 2})
    rows = {r["criterion"]: r for r in list_comparisons(project)}
    assert (rows["helpful"]["outcome"], rows["helpful"]["strength"], rows["harmless"]["outcome"]) == ("left", 2, "tie")
    assert rows["helpful"]["created_at"] == rows["harmless"]["created_at"]
    undone = undo_last_label(project)
    assert undone["deleted_ids"] == sorted(ids)
    assert project.counts()["comparisons"] == 0


def test_update_and_delete_label(pair):
    project, pid, a, b = pair
    cid = record_label(project, pid, a, b, "left")
    row = update_label(project, cid, outcome="both_bad", note="both wrong")
    assert (row["outcome"], row["note"]) == ("both_bad", "both wrong")
    with pytest.raises(ValueError, match="cannot change"):
        update_label(project, cid, left_id=b)
    with pytest.raises(ValueError):
        update_label(project, cid, outcome="nope")
    delete_label(project, cid)
    with pytest.raises(DataError):
        get_label(project, cid)
    with pytest.raises(DataError):
        delete_label(project, cid)


def test_edit_becomes_demonstration_and_preferred_response(pair):
    project, pid, a, b = pair
    result = edit_as_demonstration(project, pid, a, b, "right", "Photosynthesis: light + water + CO2 -> sugar + O2.")
    row = get_label(project, result["comparison_id"])
    assert (row["left_id"], row["right_id"], row["outcome"]) == (a, result["response_id"], "right")
    demo = list_demonstrations(project)[0]
    assert (demo["id"], demo["source"], demo["text"]) == (result["demonstration_id"], "edited",
                                                          "Photosynthesis: light + water + CO2 -> sugar + O2.")
    edited = labels.get_response(project, result["response_id"])
    assert (edited["origin"], edited["gen_config"]) == ("edited", {"edited_from": b})
    # undo removes the label, the edited response and its demonstration
    undone = undo_last_label(project)
    assert undone["removed_demonstration_ids"] == [result["demonstration_id"]]
    counts = project.counts()
    assert (counts["comparisons"], counts["demonstrations"], counts["responses"]) == (0, 0, 2)


def test_demonstrations_crud(pair):
    project, pid, _, _ = pair
    did = add_demonstration(project, pid, "Ideal answer.")
    assert update_demonstration(project, did, "Better ideal answer.")["text"] == "Better ideal answer."
    assert [d["prompt"] for d in list_demonstrations(project, prompt_id=pid)] == ["Explain photosynthesis briefly."]
    with pytest.raises(ValueError):
        add_demonstration(project, pid, "   ")
    with pytest.raises(DataError):
        add_demonstration(project, 999, "text")
    delete_demonstration(project, did)
    assert list_demonstrations(project) == []


# -- browsing and counters -------------------------------------------------------------------------
def test_filters_search_and_counts(pair):
    project, pid, a, b = pair
    record_label(project, pid, a, b, "left", criterion="helpful")
    record_label(project, pid, b, a, "tie", note="hard to say")
    record_label(project, pid, a, b, "both_bad")
    assert count_comparisons(project) == 3
    assert [c["outcome"] for c in list_comparisons(project, outcome=["left", "tie"])] == ["tie", "left"]
    assert count_comparisons(project, criterion="helpful") == 1
    assert count_comparisons(project, search="dirt") == 3  # full text over both responses
    assert count_comparisons(project, search="photosynth") == 3  # prompt (LIKE)
    assert count_comparisons(project, search="hard to") == 1  # note
    assert count_comparisons(project, search="zebra") == 0
    assert count_comparisons(project, search='"; DROP TABLE x; --') == 0  # quoted, never a syntax error
    today = date.today()
    assert count_comparisons(project, date_from=today, date_to=today) == 3
    assert count_comparisons(project, date_from=today + timedelta(days=1)) == 0
    assert count_comparisons(project, date_to=(today - timedelta(days=1)).isoformat()) == 0
    assert len(list_comparisons(project, limit=2, offset=2)) == 1


def test_label_stats(pair):
    project, pid, a, b = pair
    for outcome in ("left", "left", "right", "tie", "skipped"):
        record_label(project, pid, a, b, outcome, strategy="random")
    record_label(project, pid, a, b, "left", source="import", strategy="import")
    stats = label_stats(project)
    assert (stats["today"], stats["total"], stats["comparisons"]) == (5, 5, 6)
    assert stats["left_rate"] == pytest.approx(2 / 3)
    assert stats["by_outcome"] == {"left": 2, "right": 1, "tie": 1, "both_bad": 0, "skipped": 1}
    assert stats["by_strategy"] == {"random": 5}
    assert stats["pace_per_minute"] >= 0
    assert label_stats(project, source=None)["by_strategy"] == {"random": 5, "import": 1}
