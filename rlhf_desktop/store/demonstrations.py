"""Demonstrations: an ideal response to a prompt, written by the operator or imported (SFT data)."""

from __future__ import annotations

import sqlite3
from typing import Any

from rlhf_desktop.core.errors import DataError
from rlhf_desktop.store.project import Project

SOURCES = ("written", "edited", "import")


def add_demonstration(project: Project, prompt_id: int, text: str, source: str = "written") -> int:
    """Store an ideal response to a prompt and return its id."""
    _check(text, source)
    try:
        return project.execute("INSERT INTO demonstrations(prompt_id, text, source) VALUES (?, ?, ?)",
                               (prompt_id, text, source)).lastrowid
    except sqlite3.IntegrityError:
        raise DataError(f"no prompt with id {prompt_id}", where="demonstrations.prompt_id") from None


def list_demonstrations(project: Project, prompt_id: int | None = None, limit: int | None = None,
                        offset: int = 0) -> list[dict[str, Any]]:
    """Demonstrations newest first, with the prompt's text and split."""
    where, params = (" WHERE d.prompt_id = ?", [prompt_id]) if prompt_id is not None else ("", [])
    return project.query(
        "SELECT d.*, p.text AS prompt, p.split AS prompt_split FROM demonstrations d "
        f"JOIN prompts p ON p.id = d.prompt_id{where} ORDER BY d.id DESC LIMIT ? OFFSET ?",
        [*params, -1 if limit is None else int(limit), int(offset)])


def get_demonstration(project: Project, demonstration_id: int) -> dict[str, Any]:
    rows = project.query("SELECT * FROM demonstrations WHERE id = ?", [demonstration_id])
    if not rows:
        raise DataError(f"no demonstration with id {demonstration_id}", where="demonstrations")
    return rows[0]


def update_demonstration(project: Project, demonstration_id: int, text: str) -> dict[str, Any]:
    _check(text, "written")
    if project.execute("UPDATE demonstrations SET text = ? WHERE id = ?", (text, demonstration_id)).rowcount == 0:
        raise DataError(f"no demonstration with id {demonstration_id}", where="demonstrations")
    return get_demonstration(project, demonstration_id)


def delete_demonstration(project: Project, demonstration_id: int) -> None:
    if project.execute("DELETE FROM demonstrations WHERE id = ?", (demonstration_id,)).rowcount == 0:
        raise DataError(f"no demonstration with id {demonstration_id}", where="demonstrations")


def _check(text: Any, source: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a demonstration needs a non-empty text")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
