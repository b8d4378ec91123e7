"""Immutable training-data snapshots taken from the project database when a run starts.

A run never reads the live tables while it trains: the runner takes one of these snapshots, stores
its size and `data_hash` with the run, and writes it beside the run's checkpoints so that a resumed
run trains on exactly the same rows.

Preference mapping (the same one the data export documents): a comparison whose outcome is `left`
or `right` becomes {prompt, chosen, rejected, margin} with the winner as `chosen`; `margin` is 1.0
for strength 2 ("much better") and 0.0 otherwise (TRL's RewardTrainer subtracts it inside the
Bradley-Terry loss). Ties are left out unless asked for; `both_bad` and `skipped` never train.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from rlhf_desktop.store.project import Project

SPLITS = ("train", "heldout")


def data_hash(rows: Any) -> str:
    """sha256 (hex) of the canonical JSON of `rows` (sorted keys, no whitespace, UTF-8)."""
    text = json.dumps(rows, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def strength_to_margin(strength: int) -> float:
    """TRL's `margin` for a comparison's strength: 1.0 for "much better" (2), else 0.0."""
    return 1.0 if int(strength) == 2 else 0.0


def _split_clause(split: str | None, alias: str = "p") -> tuple[str, tuple[Any, ...]]:
    if split is None:
        return "", ()
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None, not {split!r}")
    return f" AND {alias}.split = ?", (split,)


def preference_snapshot(project: Project, split: str | None = "train", include_ties: bool = False,
                        criterion: str | None = None) -> list[dict[str, Any]]:
    """Labeled pairs as [{prompt, chosen, rejected, margin}] in labeling order.

    split: the prompts' split ("train", "heldout") or None for all. include_ties: a tie becomes
    both orderings with margin 0.0, which pulls the two rewards together. criterion: only the
    comparisons labeled under that criterion.
    """
    where, params = _split_clause(split)
    outcomes = ("left", "right", "tie") if include_ties else ("left", "right")
    where += f" AND c.outcome IN ({', '.join('?' * len(outcomes))})"
    params += outcomes
    if criterion is not None:
        where += " AND c.criterion = ?"
        params += (criterion,)
    rows = project.query(
        "SELECT p.text AS prompt, l.text AS left_text, r.text AS right_text, c.outcome, c.strength "
        "FROM comparisons c JOIN prompts p ON p.id = c.prompt_id "
        "JOIN responses l ON l.id = c.left_id JOIN responses r ON r.id = c.right_id "
        f"WHERE 1 = 1{where} ORDER BY c.id", params)
    pairs: list[dict[str, Any]] = []
    for row in rows:
        if row["outcome"] == "tie":
            pairs.append({"prompt": row["prompt"], "chosen": row["left_text"], "rejected": row["right_text"],
                          "margin": 0.0})
            pairs.append({"prompt": row["prompt"], "chosen": row["right_text"], "rejected": row["left_text"],
                          "margin": 0.0})
            continue
        left_wins = row["outcome"] == "left"
        pairs.append({
            "prompt": row["prompt"],
            "chosen": row["left_text"] if left_wins else row["right_text"],
            "rejected": row["right_text"] if left_wins else row["left_text"],
            "margin": strength_to_margin(row["strength"]),
        })
    return pairs


def sft_snapshot(project: Project, split: str | None = "train") -> list[dict[str, str]]:
    """Demonstrations plus the winners of left/right comparisons as [{prompt, completion}], deduplicated.

    Held-out prompts stay out by default (split="train") so they remain fair for evaluation.
    """
    where, params = _split_clause(split)
    demos = project.query(
        "SELECT p.text AS prompt, d.text AS completion FROM demonstrations d JOIN prompts p ON p.id = d.prompt_id "
        f"WHERE 1 = 1{where} ORDER BY d.id", params)
    winners = project.query(
        "SELECT p.text AS prompt, CASE c.outcome WHEN 'left' THEN l.text ELSE r.text END AS completion "
        "FROM comparisons c JOIN prompts p ON p.id = c.prompt_id "
        "JOIN responses l ON l.id = c.left_id JOIN responses r ON r.id = c.right_id "
        f"WHERE c.outcome IN ('left', 'right'){where} ORDER BY c.id", params)
    seen: set[tuple[str, str]] = set()
    rows: list[dict[str, str]] = []
    for row in demos + winners:
        key = (row["prompt"], row["completion"])
        if key in seen or not row["completion"].strip():
            continue
        seen.add(key)
        rows.append({"prompt": row["prompt"], "completion": row["completion"]})
    return rows


def prompt_snapshot(project: Project, split: str | None = "train") -> list[str]:
    """The prompt texts of a split (or all with None), in insertion order."""
    where, params = _split_clause(split)
    return [r["text"] for r in project.query(f"SELECT p.text FROM prompts p WHERE 1 = 1{where} ORDER BY p.id",
                                             params)]
