"""Responses and pairwise labels: record, undo, change, delete; an edit becomes a demonstration.

Every function here commits before it returns. A label is one row of `comparisons`: the two
responses in the order they were shown (`left_id`, `right_id`) and the outcome
(left | right | tie | both_bad | skipped), with an optional strength (2 = "much better"), criterion,
note and the time the operator took. Writes that touch several rows run in one transaction whose
first statement is a write, so a concurrent writer on another connection makes it wait (busy
timeout) rather than fail.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from typing import Any

from rlhf_desktop.core.errors import DataError
from rlhf_desktop.store.browse import count_comparisons, label_stats, list_comparisons
from rlhf_desktop.store.demonstrations import (add_demonstration, delete_demonstration, list_demonstrations,
                                               update_demonstration)
from rlhf_desktop.store.project import Project

OUTCOMES = ("left", "right", "tie", "both_bad", "skipped")
ORIGINS = ("generated", "imported", "edited", "arena")
EDITABLE = ("outcome", "strength", "criterion", "note")

__all__ = [
    "OUTCOMES", "add_response", "get_response", "list_responses", "record_label", "record_labels",
    "undo_last_label", "update_label", "delete_label", "get_label", "edit_as_demonstration",
    "list_comparisons", "count_comparisons", "label_stats",
    "add_demonstration", "list_demonstrations", "update_demonstration", "delete_demonstration",
]


def now_iso() -> str:
    """The store's timestamp format (UTC, milliseconds), as the schema's defaults write it."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# -- responses -------------------------------------------------------------------------------
def add_response(project: Project, prompt_id: int, text: str, model: str = "",
                 gen_config: dict[str, Any] | None = None, origin: str = "generated",
                 checkpoint_id: int | None = None) -> int:
    """Store one response to a prompt and return its id."""
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {ORIGINS}, not {origin!r}")
    if not isinstance(text, str):
        raise ValueError(f"response text must be a string, not {type(text).__name__}")
    try:
        cursor = project.execute(
            "INSERT INTO responses(prompt_id, text, model, gen_config, origin, checkpoint_id) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (prompt_id, text, model, json.dumps(gen_config or {}), origin, checkpoint_id))
    except sqlite3.IntegrityError:
        raise DataError(f"no prompt with id {prompt_id}", where="responses.prompt_id") from None
    return cursor.lastrowid


def get_response(project: Project, response_id: int) -> dict[str, Any]:
    rows = project.query("SELECT * FROM responses WHERE id = ?", [response_id])
    if not rows:
        raise DataError(f"no response with id {response_id}", where="responses")
    return _decode(rows[0])


def list_responses(project: Project, prompt_id: int) -> list[dict[str, Any]]:
    return [_decode(r) for r in project.query("SELECT * FROM responses WHERE prompt_id = ? ORDER BY id",
                                              [prompt_id])]


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row["gen_config"] = json.loads(row.get("gen_config") or "{}")
    return row


# -- labels ----------------------------------------------------------------------------------
def _check_fields(outcome: str | None = None, strength: int | None = None, duration_ms: Any = None) -> None:
    if outcome is not None and outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
    if strength is not None and strength not in (1, 2):
        raise ValueError(f"strength must be 1 (better) or 2 (much better), not {strength!r}")
    if duration_ms is not None and (not isinstance(duration_ms, int) or duration_ms < 0):
        raise ValueError(f"duration_ms must be a non-negative int or None, not {duration_ms!r}")


def _check_pair(project: Project, prompt_id: int, left_id: int, right_id: int) -> None:
    if left_id == right_id:
        raise ValueError("a comparison needs two different responses (left_id == right_id)")
    rows = dict(project.conn.execute("SELECT id, prompt_id FROM responses WHERE id IN (?, ?)",
                                     (left_id, right_id)).fetchall())
    for side, rid in (("left", left_id), ("right", right_id)):
        if rid not in rows:
            raise DataError(f"no response with id {rid}", where=f"{side}_id", hint="it may have been deleted")
        if rows[rid] != prompt_id:
            raise DataError(f"response {rid} answers prompt {rows[rid]}, not prompt {prompt_id}",
                            where=f"{side}_id")


def record_label(project: Project, prompt_id: int, left_id: int, right_id: int, outcome: str,
                 strength: int = 1, criterion: str = "", note: str = "", duration_ms: int | None = None,
                 source: str = "label", strategy: str = "random") -> int:
    """Record one label (committed when this returns) and return the comparison id."""
    return record_labels(project, prompt_id, left_id, right_id, {criterion: outcome}, strength=strength,
                         note=note, duration_ms=duration_ms, source=source, strategy=strategy)[0]


def record_labels(project: Project, prompt_id: int, left_id: int, right_id: int, outcomes: dict[str, str],
                  strength: int | dict[str, int] = 1, note: str = "", duration_ms: int | None = None,
                  source: str = "label", strategy: str = "random") -> list[int]:
    """One pair judged on several criteria ({criterion: outcome}) in one transaction; returns the ids.

    The rows share one timestamp, so undo_last_label removes them together.
    """
    if not outcomes:
        raise ValueError("outcomes is empty: give at least one {criterion: outcome}")
    strengths = strength if isinstance(strength, dict) else {c: strength for c in outcomes}
    for criterion, outcome in outcomes.items():
        _check_fields(outcome, strengths.get(criterion, 1), duration_ms)
    _check_pair(project, prompt_id, left_id, right_id)
    stamp = now_iso()
    rows = [(prompt_id, left_id, right_id, outcome, strengths.get(criterion, 1), criterion, note, duration_ms,
             source, strategy, stamp) for criterion, outcome in outcomes.items()]
    sql = ("INSERT INTO comparisons(prompt_id, left_id, right_id, outcome, strength, criterion, note, "
           "duration_ms, source, strategy, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    try:
        if len(rows) == 1:  # one statement is its own transaction
            return [project.execute(sql, rows[0]).lastrowid]
        with project.transaction() as db:
            return [db.execute(sql, row).lastrowid for row in rows]
    except sqlite3.IntegrityError as exc:  # a response deleted between the check and the insert
        raise DataError(f"cannot record the label: {exc}", where="comparisons") from None


def get_label(project: Project, comparison_id: int) -> dict[str, Any]:
    rows = project.query("SELECT * FROM comparisons WHERE id = ?", [comparison_id])
    if not rows:
        raise DataError(f"no comparison with id {comparison_id}", where="comparisons",
                        hint="it may have been deleted or undone")
    return rows[0]


def undo_last_label(project: Project, source: str = "label") -> dict[str, Any] | None:
    """Delete the newest label of `source` and return it (None when there is none); repeatable.

    Rows recorded together (several criteria of one pair) go together, listed in `deleted_ids`. When
    the label came from an edit, the edited response and its demonstration go too.
    """
    with project.transaction() as db:
        newest = db.execute(
            "DELETE FROM comparisons WHERE id = (SELECT max(id) FROM comparisons WHERE source = ?) RETURNING *",
            [source])
        columns = [d[0] for d in newest.description]
        found = newest.fetchall()
        if not found:
            return None
        row = dict(zip(columns, found[0]))
        siblings = db.execute(
            "DELETE FROM comparisons WHERE source = ? AND left_id = ? AND right_id = ? AND created_at = ? "
            "RETURNING id", [source, row["left_id"], row["right_id"], row["created_at"]]).fetchall()
        row["deleted_ids"] = sorted([row["id"], *(r[0] for r in siblings)])
        row["removed_demonstration_ids"] = _drop_orphan_edits(db, row)
    return row


def _drop_orphan_edits(db: Any, row: dict[str, Any]) -> list[int]:
    """After undoing an edit's label, remove the edited response and its demonstration."""
    removed: list[int] = []
    for rid in (row["left_id"], row["right_id"]):
        found = db.execute(
            "SELECT prompt_id, text FROM responses WHERE id = ?1 AND origin = 'edited' AND NOT EXISTS "
            "(SELECT 1 FROM comparisons WHERE left_id = ?1 OR right_id = ?1)", [rid]).fetchone()
        if found is None:
            continue
        demo = db.execute("SELECT max(id) FROM demonstrations WHERE prompt_id = ? AND text = ? AND source = 'edited'",
                          list(found)).fetchone()[0]
        if demo is not None:
            db.execute("DELETE FROM demonstrations WHERE id = ?", [demo])
            removed.append(demo)
        db.execute("DELETE FROM responses WHERE id = ?", [rid])
    return removed


def update_label(project: Project, comparison_id: int, **fields: Any) -> dict[str, Any]:
    """Change a label's outcome, strength, criterion or note; returns the updated row."""
    unknown = sorted(set(fields) - set(EDITABLE))
    if unknown:
        raise ValueError(f"cannot change {unknown}; editable fields are {EDITABLE}")
    _check_fields(fields.get("outcome"), fields.get("strength"))
    if not fields:
        return get_label(project, comparison_id)
    assignments = ", ".join(f"{name} = ?" for name in fields)
    cursor = project.execute(f"UPDATE comparisons SET {assignments} WHERE id = ?", [*fields.values(), comparison_id])
    if cursor.rowcount == 0:
        raise DataError(f"no comparison with id {comparison_id}", where="comparisons")
    return get_label(project, comparison_id)


def delete_label(project: Project, comparison_id: int) -> None:
    if project.execute("DELETE FROM comparisons WHERE id = ?", [comparison_id]).rowcount == 0:
        raise DataError(f"no comparison with id {comparison_id}", where="comparisons")


# -- edit: a better response written by the operator -----------------------------------------
def edit_as_demonstration(project: Project, prompt_id: int, left_id: int, right_id: int, edited_side: str,
                          new_text: str, *, criterion: str = "", note: str = "", duration_ms: int | None = None,
                          strength: int = 1, source: str = "label", strategy: str = "random") -> dict[str, int]:
    """The operator rewrote one side: in one transaction the new text becomes a demonstration and a
    new response (origin 'edited', shown on the edited side) recorded as preferred over the other side.

    Returns {"demonstration_id", "response_id", "comparison_id", "left_id", "right_id"}.
    """
    if edited_side not in ("left", "right"):
        raise ValueError(f"edited_side must be 'left' or 'right', not {edited_side!r}")
    if not isinstance(new_text, str) or not new_text.strip():
        raise ValueError("the edited text is empty")
    _check_fields("left", strength, duration_ms)
    _check_pair(project, prompt_id, left_id, right_id)
    original_id, other_id = (left_id, right_id) if edited_side == "left" else (right_id, left_id)
    original = get_response(project, original_id)
    config = json.dumps({"edited_from": original_id})
    with project.transaction() as db:
        demo_id = db.execute("INSERT INTO demonstrations(prompt_id, text, source) VALUES (?, ?, 'edited')",
                             [prompt_id, new_text]).lastrowid
        new_id = db.execute("INSERT INTO responses(prompt_id, text, model, gen_config, origin, checkpoint_id) "
                            "VALUES (?, ?, ?, ?, 'edited', ?)",
                            [prompt_id, new_text, original["model"], config, original["checkpoint_id"]]).lastrowid
        new_left, new_right = (new_id, other_id) if edited_side == "left" else (other_id, new_id)
        comparison_id = db.execute(
            "INSERT INTO comparisons(prompt_id, left_id, right_id, outcome, strength, criterion, note, "
            "duration_ms, source, strategy, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [prompt_id, new_left, new_right, edited_side, strength, criterion, note, duration_ms, source,
             strategy, now_iso()]).lastrowid
    return {"demonstration_id": demo_id, "response_id": new_id, "comparison_id": comparison_id,
            "left_id": new_left, "right_id": new_right}
