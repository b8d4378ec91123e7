"""Importing preference pairs (every documented shape) and demonstrations, malformed rows included."""

from __future__ import annotations

import json
import sqlite3

import pytest

from rlhf_desktop.store.io_demonstrations import import_demonstrations, parse_demonstrations
from rlhf_desktop.store.io_preferences import import_preferences, parse_preferences
from rlhf_desktop.store.labels import list_comparisons, list_demonstrations
from rlhf_desktop.store.prompts import list_prompts


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _winner(row):
    return {"left": row["left_text"], "right": row["right_text"]}.get(row["outcome"])


def user(text):
    return {"role": "user", "content": text}


def bot(text):
    return {"role": "assistant", "content": text}


def test_standard_explicit_with_malformed_lines(project, tmp_path):
    path = _jsonl(tmp_path / "prefs.jsonl", [
        {"prompt": "2+2?", "chosen": "4", "rejected": "5"},                      # 1 good
        {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Rome", "margin": 1.0},  # 2 good, strength 2
        '{"prompt": "broken", "chosen": ',                                       # 3 bad JSON
        {"prompt": "No rejected", "chosen": "x"},                                # 4 missing field
        {"prompt": "Same", "chosen": "same", "rejected": "same"},                # 5 identical
        {"prompt": "Neg", "chosen": "a", "rejected": "b", "margin": -1},         # 6 negative margin
        {"prompt": "Bad margin", "chosen": "a", "rejected": "b", "margin": "lots"},  # 7 not a number
        {"prompt": "", "chosen": "a", "rejected": "b"},                          # 8 empty prompt -> implicit, no prefix
        {"prompt": "2+2?", "chosen": "4", "rejected": "5"},                      # 9 duplicate of 1
        {"prompt": "Empty side", "chosen": "  ", "rejected": "b"},               # 10 empty chosen
    ])
    report = import_preferences(project, path)
    assert (report.imported, report.skipped, report.duplicates) == (2, 1, [9])
    assert [line for line, _ in report.errors] == [3, 4, 5, 6, 7, 8, 10]
    assert dict(report.errors)[4] == "missing field 'rejected'"
    rows = list_comparisons(project)
    assert {(r["prompt"], _winner(r), r["strength"]) for r in rows} == {
        ("2+2?", "4", 1), ("Capital of France?", "Paris", 2)}
    assert {(r["source"], r["strategy"]) for r in rows} == {("import", "import")}
    assert {r["left_origin"] for r in rows} == {"imported"}


def test_preview_and_reimport(project, tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "good", "rejected": "bad"}, "{nope"])
    report = import_preferences(project, path, preview=True)
    assert (report.imported, report.preview, report.errors[0][0]) == (1, True, 2)
    assert report.sample[0]["chosen"] == "good"
    assert project.counts()["comparisons"] == 0 and project.counts()["prompts"] == 0
    assert import_preferences(project, path).imported == 1
    again = import_preferences(project, path)  # the same file twice adds nothing
    assert (again.imported, again.duplicates) == (0, [1])


def test_implicit_prompt_standard_and_hh_multi_turn(project, tmp_path):
    hh_prompt = "\n\nHuman: Hi, can you help?\n\nAssistant: Sure, what do you need?\n\nHuman: A word for happy."
    path = _jsonl(tmp_path / "hh.jsonl", [
        {"chosen": "The answer is 42", "rejected": "The answer is 45"},
        {"chosen": hh_prompt + "\n\nAssistant: Joyful.", "rejected": hh_prompt + "\n\nAssistant: Sad."},
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hey\n\nAssistant: Hello!"},
        {"chosen": "Completely different", "rejected": "Nothing shared"},
        {"chosen": "Human: A\n\nAssistant: B\n\nHuman: C\n\nAssistant: D",
         "rejected": "Human: A\n\nAssistant: X\n\nHuman: C\n\nAssistant: D2"},
    ])
    rows, errors = parse_preferences(path)
    assert [line for line, _ in errors] == [3, 4, 5]
    assert "differs from the other side before its last assistant turn" in dict(errors)[5]
    assert "share no prompt turn" in dict(errors)[3] and "no common prefix" in dict(errors)[4]
    assert (rows[0]["prompt"], rows[0]["chosen"], rows[0]["rejected"]) == ("The answer is ", "42", "45")
    assert rows[1]["prompt"] == [user("Hi, can you help?"), bot("Sure, what do you need?"), user("A word for happy.")]
    assert (rows[1]["chosen"], rows[1]["rejected"]) == ("Joyful.", "Sad.")
    report = import_preferences(project, path)
    assert report.imported == 2
    texts = {p["text"] for p in list_prompts(project)}
    assert "Human: Hi, can you help?\n\nAssistant: Sure, what do you need?\n\nHuman: A word for happy." in texts


def test_conversational_explicit_implicit_and_scores(project, tmp_path):
    q = [user("Name a primary colour.")]
    path = _jsonl(tmp_path / "conv.jsonl", [
        {"prompt": q, "chosen": [bot("Red.")], "rejected": [bot("Purple.")]},                    # explicit
        {"chosen": [user("Say hi."), bot("Hi!")], "rejected": [user("Say hi."), bot("Bye.")]},    # implicit
        {"prompt": "Rate me", "chosen": [user("Rate me"), bot("8/10")], "rejected": [user("Rate me"), bot("2/10")],
         "score_chosen": 8.0, "score_rejected": 3.0},                                             # UltraFeedback
        {"prompt": "Tie?", "chosen": [user("Tie?"), bot("A")], "rejected": [user("Tie?"), bot("B")],
         "score_chosen": 5, "score_rejected": 5},                                                 # equal: tie
        {"prompt": "Wrong", "chosen": [user("Wrong"), bot("A")], "rejected": [user("Wrong"), bot("B")],
         "score_chosen": 1, "score_rejected": 9},                                                 # contradictory
        {"prompt": q, "chosen": "Red.", "rejected": [bot("Purple.")]},                            # mixed forms
        {"chosen": [bot("only reply")], "rejected": [bot("other")]},                              # no prompt at all
    ])
    report = import_preferences(project, path)
    assert report.imported == 4
    assert [line for line, _ in report.errors] == [5, 6, 7]
    assert "score_chosen (1) is below score_rejected (9)" in dict(report.errors)[5]
    by_prompt = {r["prompt"]: r for r in list_comparisons(project)}
    assert _winner(by_prompt["Name a primary colour."]) == "Red."
    assert _winner(by_prompt["Say hi."]) == "Hi!"
    assert by_prompt["Tie?"]["outcome"] == "tie"
    scores = project.query("SELECT text, gen_config FROM responses WHERE text IN ('8/10', '2/10')")
    assert {r["text"]: json.loads(r["gen_config"])["score"] for r in scores} == {"8/10": 8.0, "2/10": 3.0}


def test_csv_with_mapping_and_tie_column(project, tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("question,good,bad,tie\nQ1,yes,no,false\nQ2,a,b,true\nQ3,c,d,maybe\nQ2,b,a,true\n",
                    encoding="utf-8")
    report = import_preferences(project, path, mapping={"prompt": "question", "chosen": "good", "rejected": "bad"})
    assert (report.imported, report.duplicates) == (2, [5])  # line 5 mirrors the tie on line 3
    assert report.errors == [(4, "'tie' must be true or false, got 'maybe'")]
    by_prompt = {r["prompt"]: r for r in list_comparisons(project)}
    assert (_winner(by_prompt["Q1"]), by_prompt["Q2"]["outcome"]) == ("yes", "tie")


def test_imported_sides_are_placed_both_ways(project, tmp_path):
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(40)]
    import_preferences(project, _jsonl(tmp_path / "many.jsonl", rows))
    outcomes = [r["outcome"] for r in list_comparisons(project, limit=None)]
    assert 5 < outcomes.count("left") < 35  # not all on one side: imports must not look like position bias
    assert all(_winner(r).startswith("good") for r in list_comparisons(project, limit=None))


def test_nothing_partial_when_the_write_fails(project, tmp_path):
    project.execute("CREATE TRIGGER fail_third BEFORE INSERT ON comparisons "
                    "WHEN (SELECT count(*) FROM comparisons) >= 2 BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(5)]
    with pytest.raises(sqlite3.DatabaseError, match="disk full"):
        import_preferences(project, _jsonl(tmp_path / "p.jsonl", rows))
    counts = project.counts()
    assert (counts["prompts"], counts["responses"], counts["comparisons"]) == (0, 0, 0)


def test_demonstrations_import_formats(project, tmp_path):
    path = _jsonl(tmp_path / "sft.jsonl", [
        {"prompt": "Say hello", "completion": "Hello!"},                                  # 1
        {"messages": [user("Count to 3"), bot("1, 2, 3")]},                               # 2
        {"prompt": [user("Conv prompt")], "completion": [bot("Conv answer")]},            # 3
        {"messages": [user("No answer")]},                                                # 4 bad
        {"prompt": "Say hello", "completion": "Hello!"},                                  # 5 duplicate
        {"prompt": "No completion"},                                                      # 6 bad
        {"prompt": "Blank", "completion": " "},                                           # 7 bad
    ])
    rows, errors = parse_demonstrations(path)
    assert [line for line, _ in errors] == [4, 6, 7]
    report = import_demonstrations(project, path)
    assert (report.imported, report.duplicates) == (3, [5])
    assert {(d["prompt"], d["text"], d["source"]) for d in list_demonstrations(project)} == {
        ("Say hello", "Hello!", "import"), ("Count to 3", "1, 2, 3", "import"),
        ("Conv prompt", "Conv answer", "import")}
    mapped = _jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "Translate 'cat'", "output": "chat"}])
    mapping = {"prompt": "instruction", "completion": "output"}
    assert import_demonstrations(project, mapped, mapping=mapping).imported == 1
