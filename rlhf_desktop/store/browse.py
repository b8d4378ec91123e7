"""Browsing labels: filtered, searchable lists of comparisons and the counters the labeling view shows.

Dates are the user's local calendar days: `date_from` and `date_to` are inclusive and accept a
`date`, a `datetime` (naive = local time) or an ISO string ("2025-01-31" or a full timestamp).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable

from rlhf_desktop.store.project import Project
from rlhf_desktop.store.prompts import like_pattern

_SELECT = (
    "SELECT c.*, p.text AS prompt, p.split AS prompt_split, l.text AS left_text, r.text AS right_text, "
    "l.model AS left_model, r.model AS right_model, l.origin AS left_origin, r.origin AS right_origin "
    "FROM comparisons c JOIN prompts p ON p.id = c.prompt_id "
    "JOIN responses l ON l.id = c.left_id JOIN responses r ON r.id = c.right_id")


def list_comparisons(project: Project, outcome: str | Iterable[str] | None = None, criterion: str | None = None,
                     date_from: Any = None, date_to: Any = None, search: str | None = None, limit: int | None = 200,
                     offset: int = 0, *, source: str | None = None, prompt_id: int | None = None
                     ) -> list[dict[str, Any]]:
    """Comparisons newest first, joined with the prompt text and both response texts.

    `search` matches either response (full-text, every word as a prefix), the prompt or the note.
    """
    where, params = _filters(outcome, criterion, date_from, date_to, search, source, prompt_id)
    sql = f"{_SELECT}{where} ORDER BY c.id DESC LIMIT ? OFFSET ?"
    return project.query(sql, [*params, -1 if limit is None else int(limit), int(offset)])


def count_comparisons(project: Project, outcome: str | Iterable[str] | None = None, criterion: str | None = None,
                      date_from: Any = None, date_to: Any = None, search: str | None = None, *,
                      source: str | None = None, prompt_id: int | None = None) -> int:
    where, params = _filters(outcome, criterion, date_from, date_to, search, source, prompt_id)
    sql = "SELECT count(*) FROM comparisons c JOIN prompts p ON p.id = c.prompt_id" + where
    return project.conn.execute(sql, params).fetchone()[0]


def _filters(outcome: Any, criterion: str | None, date_from: Any, date_to: Any, search: str | None,
             source: str | None, prompt_id: int | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if outcome:
        outcomes = [outcome] if isinstance(outcome, str) else list(outcome)
        clauses.append(f"c.outcome IN ({','.join('?' * len(outcomes))})")
        params += outcomes
    for column, value in (("c.criterion", criterion), ("c.source", source), ("c.prompt_id", prompt_id)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if date_from is not None:
        clauses.append("c.created_at >= ?")
        params.append(utc_bound(date_from, end=False))
    if date_to is not None:
        clauses.append("c.created_at < ?")
        params.append(utc_bound(date_to, end=True))
    if search and search.strip():
        like = like_pattern(search.strip())
        parts = ["p.text LIKE ? ESCAPE '\\'", "c.note LIKE ? ESCAPE '\\'"]
        params_search: list[Any] = [like, like]
        fts = fts_query(search)
        if fts:
            hits = "SELECT rowid FROM responses_fts WHERE responses_fts MATCH ?"
            parts += [f"c.left_id IN ({hits})", f"c.right_id IN ({hits})"]
            params_search += [fts, fts]
        clauses.append("(" + " OR ".join(parts) + ")")
        params += params_search
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def fts_query(text: str) -> str:
    """User text -> a safe FTS5 query: every word quoted, as a prefix, all required."""
    words = re.findall(r"\w+", text)
    return " ".join(f'"{w}"*' for w in words)


def utc_bound(value: Any, *, end: bool) -> str:
    """A local day or time as the store's UTC timestamp text; `end` gives the exclusive end of a day."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value or " " in value.strip() else date.fromisoformat(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.astimezone()
        if end:
            moment += timedelta(milliseconds=1)  # inclusive end: everything up to this instant
    elif isinstance(value, date):
        day = value + timedelta(days=1) if end else value
        moment = datetime.combine(day, time()).astimezone()
    else:
        raise ValueError(f"expected a date, datetime or ISO string, not {value!r}")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# -- counters for the labeling view ----------------------------------------------------------
def label_stats(project: Project, source: str | None = "label") -> dict[str, Any]:
    """Counters over labels of `source` (None: all comparisons).

    today, total, by_outcome, by_strategy; left_rate = left / (left + right), the position-bias
    monitor (None before the first decisive label); pace_per_minute over the last 10 minutes;
    comparisons = every comparison in the project, imports included.
    """
    where, params = (" WHERE source = ?", [source]) if source is not None else ("", [])
    conn = project.conn
    by_outcome: dict[str, int] = {}
    by_strategy: dict[str, int] = {}
    for outcome, strategy, n in conn.execute(  # one scan for both breakdowns
            f"SELECT outcome, strategy, count(*) FROM comparisons{where} GROUP BY outcome, strategy", params):
        by_outcome[outcome] = by_outcome.get(outcome, 0) + n
        by_strategy[strategy] = by_strategy.get(strategy, 0) + n
    since = " AND " if where else " WHERE "
    today = conn.execute(f"SELECT count(*) FROM comparisons{where}{since}created_at >= ?",
                         [*params, utc_bound(date.today(), end=False)]).fetchone()[0]
    window_start = (datetime.now(timezone.utc) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    recent = [r[0] for r in conn.execute(
        f"SELECT created_at FROM comparisons{where}{since}created_at >= ? ORDER BY created_at",
        [*params, window_start])]
    left, right = by_outcome.get("left", 0), by_outcome.get("right", 0)
    return {
        "today": today,
        "total": sum(by_outcome.values()),
        "by_outcome": {o: by_outcome.get(o, 0) for o in ("left", "right", "tie", "both_bad", "skipped")},
        "by_strategy": by_strategy,
        "left_rate": left / (left + right) if left + right else None,
        "pace_per_minute": _pace(recent),
        "comparisons": conn.execute("SELECT count(*) FROM comparisons").fetchone()[0],
    }


def _pace(stamps: list[str]) -> float:
    """Labels per minute between the first and last label of the recent window (0 with fewer than 2)."""
    if len(stamps) < 2:
        return 0.0
    first, last = (datetime.fromisoformat(s.replace("Z", "+00:00")) for s in (stamps[0], stamps[-1]))
    minutes = (last - first).total_seconds() / 60
    return (len(stamps) - 1) / minutes if minutes > 0 else 0.0
