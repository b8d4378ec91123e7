"""Importing prompts from every supported file type, malformed files included."""

from __future__ import annotations

import json

import pytest

from rlhf_desktop.core.errors import DataError
from rlhf_desktop.store.io_prompts import import_prompts, read_prompts_file
from rlhf_desktop.store.prompts import count_prompts, list_prompts
from rlhf_desktop.store.records import parse_mapping


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_with_bad_lines(project, tmp_path):
    path = _write(tmp_path / "p.jsonl", "\n".join([
        '{"prompt": "Good one"}',             # 1
        '{"prompt": "Good two", "x": 1}',     # 2
        '{"prompt": ',                        # 3 broken JSON
        '',                                   # 4 blank: ignored
        '["not", "an", "object"]',            # 5
        '{"text": "wrong field"}',            # 6
        '{"prompt": "   "}',                  # 7 empty
        '{"prompt": 42}',                     # 8 not text
        '{"prompt": "Good  one"}',            # 9 duplicate of 1 (whitespace)
        '{"prompt": [{"role": "user", "content": "Chat form"}]}',  # 10 conversational
    ]) + "\n")
    report = import_prompts(project, path)
    assert (report.imported, report.skipped, report.duplicates) == (3, 1, [9])
    assert [line for line, _ in report.errors] == [3, 5, 6, 7, 8]
    reasons = dict(report.errors)
    assert reasons[3].startswith("invalid JSON") and "missing field 'prompt'" == reasons[6]
    assert [p["text"] for p in list_prompts(project)] == ["Good one", "Good two", "Chat form"]
    assert {p["source"] for p in list_prompts(project)} == {"p.jsonl"}


def test_preview_writes_nothing(project, tmp_path):
    path = _write(tmp_path / "p.jsonl", '{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "a"}\n')
    report = import_prompts(project, path, preview=True)
    assert (report.imported, report.skipped, report.preview) == (2, 1, True)
    assert [s["prompt"] for s in report.sample] == ["a", "b"]
    assert count_prompts(project) == 0
    assert import_prompts(project, path).imported == 2


def test_csv_with_mapping_multiline_and_bad_rows(project, tmp_path):
    path = _write(tmp_path / "p.csv", 'id,question\n1,"What is 2+2?"\n2,"A question\nover two lines"\n'
                                      '3,extra,field\n\n4,\n5,Last one\n')
    report = import_prompts(project, path, mapping=parse_mapping("prompt=question"))
    assert report.imported == 3
    assert report.errors == [(5, "3 fields, the header has 2"), (7, "empty 'question'")]
    assert [p["text"] for p in list_prompts(project)] == ["What is 2+2?", "A question\nover two lines", "Last one"]


def test_mapping_to_a_missing_column_is_one_clear_error(project, tmp_path):
    path = _write(tmp_path / "p.csv", "question\nhello\n")
    with pytest.raises(DataError, match="question"):
        import_prompts(project, path, mapping={"prompt": "query"})


def test_tsv_txt_and_json_array(project, tmp_path):
    tsv = _write(tmp_path / "p.tsv", "prompt\tcategory\nTab separated\tx\n")
    txt = _write(tmp_path / "p.txt", "One per line\n\n  Second line  \nOne per line\n")
    arr = _write(tmp_path / "p.json", json.dumps([{"prompt": "From array"}, "bad", {"prompt": "Again"}]))
    assert import_prompts(project, tsv).imported == 1
    report = import_prompts(project, txt)
    assert (report.imported, report.duplicates) == (2, [4])
    report = import_prompts(project, arr)
    assert (report.imported, report.errors) == (2, [(2, "expected a JSON object, got str")])
    assert count_prompts(project) == 5


def test_parquet_and_datasets_folders(project, tmp_path):
    import datasets

    datasets.Dataset.from_dict({"question": ["Parquet A", "", "Parquet B"]}).to_parquet(tmp_path / "p.parquet")
    report = import_prompts(project, tmp_path / "p.parquet", mapping={"prompt": "question"})
    assert (report.imported, report.errors) == (2, [(2, "empty 'question'")])

    saved = tmp_path / "saved"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"prompt": ["Saved train 1", "Saved train 2"]}),
        "test": datasets.Dataset.from_dict({"prompt": ["Saved test 1"]}),
    }).save_to_disk(str(saved))
    assert import_prompts(project, saved).imported == 3
    splits = {p["text"]: p["split"] for p in list_prompts(project)}
    assert (splits["Saved train 1"], splits["Saved train 2"], splits["Saved test 1"]) == ("train", "train", "heldout")

    local = tmp_path / "local"
    local.mkdir()
    (local / "data.jsonl").write_text('{"prompt": "Local json 1"}\n{"prompt": "Local json 2"}\n', encoding="utf-8")
    report = import_prompts(project, local, split="heldout")
    assert report.imported == 2
    splits = {p["text"]: p["split"] for p in list_prompts(project)}
    assert (splits["Local json 1"], splits["Local json 2"]) == ("heldout", "heldout")


def test_unreadable_inputs_raise_one_clear_error(project, tmp_path):
    with pytest.raises(DataError, match="file not found"):
        import_prompts(project, tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="unsupported file type"):
        import_prompts(project, _write(tmp_path / "p.docx", "x"))
    with pytest.raises(DataError, match="invalid JSON"):
        import_prompts(project, _write(tmp_path / "broken.json", '[{"prompt": "a"},\n{oops}]'))
    with pytest.raises(DataError, match="Parquet"):
        import_prompts(project, _write(tmp_path / "bad.parquet", "not parquet"))
    (tmp_path / "latin.jsonl").write_bytes(b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n')
    rows, errors = read_prompts_file(tmp_path / "latin.jsonl")
    assert ([r["prompt"] for r in rows], errors) == (["ok"], [(2, "not valid UTF-8 text")])
