"""Prompts: adding them with duplicate detection, the train/held-out split, the bundled starter set.

A prompt's identity is `text_hash`: the sha1 of its text with whitespace runs collapsed, so
"What is  RLHF?\\n" and "What is RLHF?" are the same prompt. The split is deterministic when not
given: a prompt lands in the held-out split when the first 32 bits of its hash, read as a fraction
of 2**32, fall below `heldout_fraction`; the same prompt therefore always gets the same split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from rlhf_desktop.core.errors import DataError
from rlhf_desktop.core.paths import resources_dir
from rlhf_desktop.store.project import Project

SPLITS = ("train", "heldout")
DEFAULT_HELDOUT_FRACTION = 0.1


@dataclass
class ImportReport:
    """What an import did (or, with preview, would do). Line numbers are 1-based."""

    imported: int = 0
    skipped: int = 0  # duplicates, in the file itself or already in the project
    errors: list[tuple[int, str]] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    preview: bool = False
    sample: list[dict[str, Any]] = field(default_factory=list)  # the first rows that would be imported

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "imported": self.imported, "skipped": self.skipped,
            "errors": [{"line": line, "reason": reason} for line, reason in self.errors],
            "duplicates": list(self.duplicates), "preview": self.preview,
        }
        if self.preview:
            out["sample"] = list(self.sample)
        return out


# -- identity and split ----------------------------------------------------------------------
def normalise(text: str) -> str:
    return " ".join(text.split())


def text_hash(text: str) -> str:
    """sha1 of the whitespace-normalised text: two prompts with the same hash are duplicates."""
    return hashlib.sha1(normalise(text).encode("utf-8")).hexdigest()


def split_for(hash_hex: str, heldout_fraction: float = DEFAULT_HELDOUT_FRACTION) -> str:
    """Deterministic split from a text hash (about `heldout_fraction` of prompts are held out)."""
    return "heldout" if int(hash_hex[:8], 16) / 2**32 < heldout_fraction else "train"


def check_split(split: str | None) -> None:
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None, not {split!r}")


def check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"heldout_fraction must be between 0 and 1, not {fraction!r}")


# -- adding ----------------------------------------------------------------------------------
def add_prompts(project: Project, texts: list[str], source: str = "user", split: str | None = None,
                heldout_fraction: float = DEFAULT_HELDOUT_FRACTION, *,
                lines: list[int] | None = None, splits: list[str | None] | None = None,
                categories: list[str] | None = None, preview: bool = False) -> ImportReport:
    """Add prompts in one transaction, skipping (and reporting) duplicates and empty texts.

    `lines` gives each text's line number for the report (default: 1, 2, ...); `splits` a split per
    text used when `split` is None (None entries: by hash). With preview=True nothing is written
    and the report says what would happen.
    """
    check_split(split)
    check_fraction(heldout_fraction)
    lines = list(lines) if lines is not None else list(range(1, len(texts) + 1))
    report = ImportReport(preview=preview)
    hashes = [text_hash(t) if isinstance(t, str) else "" for t in texts]
    known = existing_hashes(project, hashes)
    hints = list(splits) if splits is not None else [None] * len(texts)
    kinds = list(categories) if categories is not None else [""] * len(texts)
    rows: list[tuple[int, dict[str, str]]] = []
    for line, text, digest, hint, kind in zip(lines, texts, hashes, hints, kinds):
        if not isinstance(text, str) or not text.strip():
            report.errors.append((line, "empty prompt" if isinstance(text, str) else
                                  f"prompt must be text, got {type(text).__name__}"))
        elif digest in known:
            report.duplicates.append(line)
        else:
            known.add(digest)
            rows.append((line, {"text": text.strip(), "text_hash": digest, "source": source,
                                "category": kind or "",
                                "split": split or hint or split_for(digest, heldout_fraction)}))
    report.skipped = len(report.duplicates)
    report.imported = len(rows)
    if preview:
        report.sample = [{"line": line, "prompt": r["text"], "split": r["split"]} for line, r in rows[:5]]
    elif rows:
        with project.transaction() as db:
            # OR IGNORE: another connection may have added the same prompt since the check above.
            cursor = db.conn.executemany("INSERT OR IGNORE INTO prompts(text, text_hash, source, category, split) "
                                         "VALUES (:text, :text_hash, :source, :category, :split)", [r for _, r in rows])
            report.imported = cursor.rowcount
    return report


def existing_hashes(project: Project, hashes: Iterable[str]) -> set[str]:
    """The subset of `hashes` already in the project."""
    wanted = sorted({h for h in hashes if h})
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(r[0] for r in project.conn.execute(
            f"SELECT text_hash FROM prompts WHERE text_hash IN ({marks})", chunk))
    return found


def ensure_prompt(db: Any, text: str, source: str, split: str | None,
                  heldout_fraction: float = DEFAULT_HELDOUT_FRACTION) -> int:
    """The id of the prompt with this text, inserting it when new (call inside a transaction)."""
    digest = text_hash(text)
    row = db.execute("SELECT id FROM prompts WHERE text_hash = ?", [digest]).fetchone()
    if row:
        return row[0]
    cursor = db.execute("INSERT INTO prompts(text, text_hash, source, split) VALUES (?, ?, ?, ?)",
                        [text, digest, source, split or split_for(digest, heldout_fraction)])
    return cursor.lastrowid


def starter_prompts_path() -> Path:
    return resources_dir() / "prompts" / "starter.jsonl"


def load_starter_prompts(project: Project, path: str | Path | None = None,
                         heldout_fraction: float = DEFAULT_HELDOUT_FRACTION) -> ImportReport:
    """Load the bundled starter prompts (resources/prompts/starter.jsonl); loading twice adds nothing."""
    from rlhf_desktop.store.io_prompts import read_prompts_file

    path = Path(path) if path is not None else starter_prompts_path()
    rows, errors = read_prompts_file(path)
    report = add_prompts(project, [r["prompt"] for r in rows], source="starter",
                         heldout_fraction=heldout_fraction, lines=[r["line"] for r in rows],
                         categories=[str(r.get("category") or "") for r in rows])
    report.errors = sorted(errors + report.errors)
    return report


# -- reading and editing ---------------------------------------------------------------------
def list_prompts(project: Project, split: str | None = None, limit: int | None = None,
                 offset: int = 0, search: str | None = None) -> list[dict[str, Any]]:
    """Prompts in insertion order with their response, comparison and demonstration counts."""
    check_split(split)
    where, params = [], []
    if split:
        where.append("p.split = ?")
        params.append(split)
    if search:
        where.append("p.text LIKE ? ESCAPE '\\'")
        params.append(like_pattern(search))
    sql = ("SELECT p.*, "
           "(SELECT count(*) FROM responses r WHERE r.prompt_id = p.id) AS responses, "
           "(SELECT count(*) FROM comparisons c WHERE c.prompt_id = p.id) AS comparisons, "
           "(SELECT count(*) FROM demonstrations d WHERE d.prompt_id = p.id) AS demonstrations "
           "FROM prompts p" + (" WHERE " + " AND ".join(where) if where else "") +
           " ORDER BY p.id LIMIT ? OFFSET ?")
    return project.query(sql, [*params, -1 if limit is None else int(limit), int(offset)])


def count_prompts(project: Project, split: str | None = None) -> int:
    check_split(split)
    if split:
        return project.conn.execute("SELECT count(*) FROM prompts WHERE split = ?", [split]).fetchone()[0]
    return project.conn.execute("SELECT count(*) FROM prompts").fetchone()[0]


def get_prompt(project: Project, prompt_id: int) -> dict[str, Any]:
    rows = project.query("SELECT * FROM prompts WHERE id = ?", [prompt_id])
    if not rows:
        raise DataError(f"no prompt with id {prompt_id}", where="prompts", hint="it may have been deleted")
    return rows[0]


def set_split(project: Project, ids: Iterable[int], split: str) -> int:
    """Move prompts to 'train' or 'heldout' in one transaction; returns how many changed."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    ids = [int(i) for i in ids]
    changed = 0
    with project.transaction() as db:
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            changed += db.execute(f"UPDATE prompts SET split = ? WHERE id IN ({marks}) AND split != ?",
                                  [split, *chunk, split]).rowcount
    return changed


def delete_prompts(project: Project, ids: Iterable[int]) -> int:
    """Delete prompts with their responses, comparisons and demonstrations (one transaction)."""
    ids = [int(i) for i in ids]
    deleted = 0
    with project.transaction() as db:
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            deleted += db.execute(f"DELETE FROM prompts WHERE id IN ({','.join('?' * len(chunk))})",
                                  chunk).rowcount
    return deleted


def like_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with % and _ taken literally (ESCAPE '\\')."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
