"""The project file itself: transactions across connections, migrations, newer and damaged files."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from rlhf_desktop.core.errors import ProjectError, SchemaError
from rlhf_desktop.store import Project
from rlhf_desktop.store.labels import add_response, list_comparisons, record_label
from rlhf_desktop.store.project import migrate
from rlhf_desktop.store.prompts import add_prompts, list_prompts, text_hash
from rlhf_desktop.store.schema import SCHEMA_VERSION


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_transaction_is_invisible_to_another_connection_until_commit(tmp_path):
    writer = Project.create(tmp_path / "p")
    reader = Project.open(tmp_path / "p")
    try:
        with writer.transaction():
            add_prompts(writer, ["first prompt", "second prompt"])
            assert len(list_prompts(writer)) == 2  # the writer sees its own rows
            assert list_prompts(reader) == []  # the other connection does not, yet
        assert [p["text"] for p in list_prompts(reader)] == ["first prompt", "second prompt"]
        pid = list_prompts(reader)[0]["id"]
        a, b = add_response(writer, pid, "A"), add_response(writer, pid, "B")
        cid = record_label(writer, pid, a, b, "left")  # a single call is committed when it returns
        assert [c["id"] for c in list_comparisons(reader)] == [cid]
    finally:
        writer.close()
        reader.close()


def test_failed_transaction_leaves_nothing(project):
    with pytest.raises(RuntimeError):
        with project.transaction():
            add_prompts(project, ["kept only if committed"])
            raise RuntimeError("boom")
    assert list_prompts(project) == []


def test_migration_from_schema_1_keeps_the_data(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    conn = sqlite3.connect(folder / "project.db", isolation_level=None)
    migrate(conn, 0, 1)
    conn.execute("INSERT INTO prompts(text, text_hash) VALUES (?, ?)", ("Old prompt", text_hash("Old prompt")))
    conn.execute("INSERT INTO responses(prompt_id, text) VALUES (1, 'an answer about volcanoes')")
    conn.execute("INSERT INTO responses(prompt_id, text) VALUES (1, 'another answer')")
    conn.execute("INSERT INTO comparisons(prompt_id, left_id, right_id, outcome) VALUES (1, 1, 2, 'right')")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()

    with Project.open(folder) as project:
        assert project.schema_version == SCHEMA_VERSION
        assert project.counts()["comparisons"] == 1
        assert list_prompts(project)[0]["text"] == "Old prompt"
        # migration 3 indexed the responses written before it existed
        found = list_comparisons(project, search="volcano")
        assert [(c["left_text"], c["outcome"]) for c in found] == [("an answer about volcanoes", "right")]
        project.set_setting("k", {"v": 1})
    with Project.open(folder) as project:
        assert project.get_setting("k") == {"v": 1}


def test_newer_schema_is_refused_and_left_untouched(tmp_path):
    Project.create(tmp_path / "p").close()
    db = tmp_path / "p" / "project.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = _digest(db)
    with pytest.raises(SchemaError, match="newer"):
        Project.open(tmp_path / "p")
    assert _digest(db) == before


def test_corrupt_file_is_reported_and_left_byte_identical(tmp_path):
    with Project.create(tmp_path / "p") as project:
        add_prompts(project, [f"prompt {i} " + "words " * 40 for i in range(300)])
    db = tmp_path / "p" / "project.db"
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) > 8 * page
    for number in range(3, 7):  # damage b-tree page headers (type byte and cell counts)
        data[number * page: number * page + 12] = b"\xff" * 12
    db.write_bytes(bytes(data))
    before = _digest(db)
    with pytest.raises(ProjectError, match="damaged|integrity"):
        Project.open(tmp_path / "p")
    assert _digest(db) == before


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "project.db").write_bytes(b"this is not a database at all" * 10)
    before = _digest(folder / "project.db")
    with pytest.raises(ProjectError, match="not an SQLite"):
        Project.open(folder)
    assert _digest(folder / "project.db") == before
