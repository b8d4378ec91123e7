"""Import and export of pairwise preference data, and how it maps to the store's labels.

Export (`export_preferences`)
    One row per decisive label, in TRL's preference format, which `RewardTrainer` (and
    `DPOTrainer`) take unchanged:

    ======================  ==========================================================================
    column                  value
    ======================  ==========================================================================
    ``prompt``              the prompt text (standard form), or a list of messages (conversational:
                            one ``user`` turn; a stored HH-style transcript is split back into turns)
    ``chosen``              the text of the response the operator preferred, or ``[{"role":
                            "assistant", "content": ...}]`` (conversational)
    ``rejected``            the other response, same form
    ``margin``              from the label's strength: ``1`` (better) -> ``0.0``, ``2`` (much better)
                            -> ``1.0``. RewardTrainer's loss is ``-logsigmoid(r_chosen - r_rejected -
                            margin)``, so a "much better" pair must be won by one more logit.
    ``tie``                 only with ``include_ties=True`` (see below)
    ======================  ==========================================================================

    Outcomes: ``left``/``right`` become chosen/rejected from the side the operator picked, whatever
    side each response was shown on. ``tie``, ``both_bad`` and ``skipped`` are left out by default.
    With ``include_ties=True`` each tie is written as TWO rows, each response once as ``chosen``,
    both with ``margin`` 0.0 and ``tie`` true (every row then has a ``tie`` column, false for
    ordinary pairs): the two mirrored terms of the reward loss pull the two rewards together, which
    is what a tie says. ``both_bad`` and ``skipped`` are never exported: they carry no order.
    Labels with several criteria are all exported unless ``criterion`` selects one.

    Formats: ``jsonl`` (one object per line, loads with ``datasets.load_dataset("json",
    data_files=...)``), ``parquet``, and ``hf``: a folder written by ``DatasetDict.save_to_disk`` with
    a ``train`` split and, when held-out prompts have labels, a ``test`` split, plus a ``README.md``
    dataset card (load it with ``datasets.load_from_disk``).

Import (`parse_preferences`, `import_preferences`)
    Accepted row shapes (column names can be remapped, e.g. ``{"prompt": "question"}``):

    * TRL standard, explicit prompt: ``prompt``, ``chosen``, ``rejected`` as text.
    * TRL standard, implicit prompt: ``chosen``/``rejected`` only; their shared prefix, cut back to
      a whitespace boundary, is the prompt.
    * HH-style transcripts: ``chosen``/``rejected`` are whole ``\\n\\nHuman: ...\\n\\nAssistant: ...``
      conversations (multi-turn); the shared turns become the prompt (stored as a transcript when
      there are several), the final assistant turns the two responses.
    * TRL conversational, explicit or implicit prompt: message lists (``{"role", "content"}``); the
      shared leading turns of chosen/rejected are the prompt when they repeat it.
    * Message lists with scores (``score_chosen``/``score_rejected``, UltraFeedback style): equal
      scores import as a tie; a chosen score below the rejected one is a bad row. The scores are
      kept in each response's ``gen_config`` as ``score``.
    * Optional ``margin`` (a number >= 0): ``margin >= 1.0`` imports as strength 2, otherwise 1
      (the inverse of the export mapping). Optional ``tie`` (true/false): a tie; its mirrored
      second row is reported as a duplicate.

    Each good row becomes a prompt (reused when the same text, whitespace-normalised, is already in
    the project), two responses (origin ``imported``) and a comparison with source ``import`` and
    strategy ``import``. Imported pairs have no display order, so which response sits on the left is
    chosen by a hash of the row (about half each way): imports never look like position bias.
    A row equal to one already in the project (same prompt, same two texts, same winner) or earlier
    in the file is skipped and listed as a duplicate. Rows from a ``test``/``validation`` split of a
    saved DatasetDict land in the held-out split.

    Bad rows are reported with their line (JSONL/CSV) or row (JSON array/Parquet/folder) number and
    the reason; the good rows are written in one transaction, or with ``preview=True`` not at all.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rlhf_desktop import __version__
from rlhf_desktop.core.errors import DataError
from rlhf_desktop.store.formats import (FormatError, completion_text, is_messages, looks_like_transcript,
                                        messages_to_text, parse_transcript, split_shared_messages,
                                        split_shared_text, text_to_messages, to_messages)
from rlhf_desktop.store.io_demonstrations import export_demonstrations, import_demonstrations
from rlhf_desktop.store.io_write import target_path, write_rows
from rlhf_desktop.store.project import Project
from rlhf_desktop.store.prompts import (DEFAULT_HELDOUT_FRACTION, ImportReport, check_split, ensure_prompt,
                                        text_hash)
from rlhf_desktop.store.records import check_mapping, column, missing_field, read_records

__all__ = ["parse_preferences", "import_preferences", "export_preferences", "import_demonstrations",
           "export_demonstrations", "strength_to_margin", "margin_to_strength"]

MUCH_BETTER_MARGIN = 1.0


def strength_to_margin(strength: int) -> float:
    return MUCH_BETTER_MARGIN if strength == 2 else 0.0


def margin_to_strength(margin: float | None) -> int:
    return 2 if margin is not None and margin >= MUCH_BETTER_MARGIN else 1


# -- parsing ---------------------------------------------------------------------------------
def parse_preferences(path: str | Path, mapping: dict[str, str] | None = None
                      ) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Normalised rows {line, prompt (text or messages), chosen, rejected, margin, tie, score_chosen,
    score_rejected, split} and (line, reason) errors."""
    result = read_records(path)
    check_mapping(result, mapping, path)
    rows, errors = [], list(result.errors)
    for record in result.records:
        try:
            row = normalise_preference(record.data, mapping)
        except FormatError as exc:
            errors.append((record.line, str(exc)))
            continue
        row["line"], row["split"] = record.line, record.split
        rows.append(row)
    return rows, sorted(errors)


def normalise_preference(data: dict[str, Any], mapping: dict[str, str] | None = None) -> dict[str, Any]:
    """One input row -> {prompt, chosen, rejected, margin, tie, score_chosen, score_rejected}."""
    def get(name: str) -> Any:
        return data.get(column(name, mapping))

    chosen, rejected, prompt = get("chosen"), get("rejected"), get("prompt")
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if value is None or value == "":
            raise FormatError(missing_field(name, mapping) if value is None else f"empty '{name}'")
    if isinstance(chosen, str) and isinstance(rejected, str) and looks_like_transcript(chosen) \
            and looks_like_transcript(rejected):
        prompt_out, c_text, r_text = split_shared_messages(parse_transcript(chosen), parse_transcript(rejected))
    elif is_messages(chosen) or is_messages(rejected):
        prompt_out, c_text, r_text = _split_conversational(prompt, chosen, rejected)
    elif isinstance(chosen, str) and isinstance(rejected, str):
        if prompt is None or prompt == "":
            prompt_out, c_text, r_text = split_shared_text(chosen, rejected)
        elif isinstance(prompt, str):
            prompt_out, c_text, r_text = prompt, chosen, rejected
        else:
            raise FormatError("'prompt' is a message list but chosen/rejected are text: use one form for all")
    else:
        raise FormatError(f"chosen/rejected must be text or message lists, got {type(chosen).__name__}"
                          f"/{type(rejected).__name__}")
    prompt_text = messages_to_text(prompt_out) if isinstance(prompt_out, list) else prompt_out
    if not prompt_text.strip():
        raise FormatError("empty prompt")
    if not c_text.strip() or not r_text.strip():
        raise FormatError(f"empty {'chosen' if not c_text.strip() else 'rejected'} response")
    if c_text == r_text:
        raise FormatError("chosen and rejected are identical")
    row = {"prompt": prompt_out, "chosen": c_text, "rejected": r_text, "margin": _number(get("margin"), "margin"),
           "tie": _flag(get("tie")), "score_chosen": _number(get("score_chosen"), "score_chosen"),
           "score_rejected": _number(get("score_rejected"), "score_rejected")}
    if row["margin"] is not None and row["margin"] < 0:
        raise FormatError(f"margin must be >= 0, got {row['margin']}")
    return row


def _split_conversational(prompt: Any, chosen: Any, rejected: Any) -> tuple[list[dict], str, str]:
    if not (is_messages(chosen) and is_messages(rejected)):
        raise FormatError("chosen and rejected must both be message lists (or both text)")
    chosen, rejected = to_messages(chosen, "chosen"), to_messages(rejected, "rejected")
    if chosen[0]["role"] != "assistant" or rejected[0]["role"] != "assistant":
        return split_shared_messages(chosen, rejected)  # the sides repeat the prompt turns
    if prompt is None or prompt == "":
        raise FormatError("chosen/rejected hold only assistant turns and there is no prompt column")
    return to_messages(prompt, "prompt"), completion_text(chosen, "chosen"), completion_text(rejected, "rejected")


def _number(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FormatError(f"'{name}' must be a number, got {value!r}") from None
    if math.isnan(number) or math.isinf(number):
        raise FormatError(f"'{name}' must be a finite number, got {value!r}")
    return number


def _flag(value: Any) -> bool:
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise FormatError(f"'tie' must be true or false, got {value!r}")


# -- importing -------------------------------------------------------------------------------
def import_preferences(project: Project, path: str | Path, mapping: dict[str, str] | None = None,
                       preview: bool = False, split: str | None = None,
                       heldout_fraction: float = DEFAULT_HELDOUT_FRACTION) -> ImportReport:
    """Import the good rows of a preference file as labels in one transaction (preview: write nothing)."""
    check_split(split)
    rows, errors = parse_preferences(path, mapping)
    report = ImportReport(preview=preview, errors=errors)
    seen: set[tuple] = set()
    good = []
    for row in rows:
        row["prompt_text"] = messages_to_text(row["prompt"]) if isinstance(row["prompt"], list) else row["prompt"]
        try:
            row["outcome"], row["strength"] = _outcome(row)
        except FormatError as exc:
            report.errors.append((row["line"], str(exc)))
            continue
        key = _pair_key(row)
        if key in seen or _in_store(project, row):
            report.duplicates.append(row["line"])
            continue
        seen.add(key)
        good.append(row)
    report.errors.sort()
    report.skipped, report.imported = len(report.duplicates), len(good)
    if preview:
        report.sample = [{k: r[k] for k in ("line", "prompt", "chosen", "rejected", "outcome", "strength")}
                         for r in good[:5]]
    elif good:
        _write(project, good, Path(path).name, split, heldout_fraction)
    return report


def _outcome(row: dict[str, Any]) -> tuple[str, int]:
    """'chosen' or 'tie', and the strength, from the tie flag, the scores and the margin."""
    if row["tie"]:
        return "tie", 1
    sc, sr = row["score_chosen"], row["score_rejected"]
    if sc is not None and sr is not None:
        if sc == sr:
            return "tie", 1
        if sc < sr:
            raise FormatError(f"score_chosen ({sc:g}) is below score_rejected ({sr:g})")
    return "chosen", margin_to_strength(row["margin"])


def _pair_key(row: dict[str, Any]) -> tuple:
    digest = text_hash(row["prompt_text"])
    if row["outcome"] == "tie":
        return ("tie", digest, frozenset((row["chosen"], row["rejected"])))
    return ("chosen", digest, row["chosen"], row["rejected"])


def _in_store(project: Project, row: dict[str, Any]) -> bool:
    """The same prompt, the same two texts and the same winner (or both a tie) is already labeled."""
    found = project.conn.execute(
        "SELECT c.outcome, l.text, r.text FROM comparisons c JOIN prompts p ON p.id = c.prompt_id "
        "JOIN responses l ON l.id = c.left_id JOIN responses r ON r.id = c.right_id "
        "WHERE p.text_hash = ? AND ((l.text = ?2 AND r.text = ?3) OR (l.text = ?3 AND r.text = ?2))",
        [text_hash(row["prompt_text"]), row["chosen"], row["rejected"]]).fetchall()
    for outcome, left, right in found:
        if outcome == "tie" and row["outcome"] == "tie":
            return True
        winner = left if outcome == "left" else right if outcome == "right" else None
        if row["outcome"] == "chosen" and winner == row["chosen"]:
            return True
    return False


def _write(project: Project, rows: list[dict[str, Any]], source: str, split: str | None,
           heldout_fraction: float) -> None:
    with project.transaction() as db:
        responses: dict[tuple[int, str], int] = {}
        for row in rows:
            prompt_id = ensure_prompt(db, row["prompt_text"], source, split or row["split"], heldout_fraction)
            ids = []
            for side in ("chosen", "rejected"):
                score = row[f"score_{side}"]
                config = {"source": source, **({"score": score} if score is not None else {})}
                ids.append(_response(db, responses, prompt_id, row[side], config))
            chosen_left = _chosen_on_left(row)
            left, right = ids if chosen_left else ids[::-1]
            outcome = "tie" if row["outcome"] == "tie" else ("left" if chosen_left else "right")
            db.execute("INSERT INTO comparisons(prompt_id, left_id, right_id, outcome, strength, source, strategy) "
                       "VALUES (?, ?, ?, ?, ?, 'import', 'import')",
                       [prompt_id, left, right, outcome, row["strength"]])


def _response(db: Any, cache: dict[tuple[int, str], int], prompt_id: int, text: str, config: dict) -> int:
    """Reuse a response with the same text for the same prompt (in this import or already stored)."""
    key = (prompt_id, text)
    if key not in cache:
        found = db.execute("SELECT id FROM responses WHERE prompt_id = ? AND text = ? ORDER BY id LIMIT 1",
                           [prompt_id, text]).fetchone()
        cache[key] = found[0] if found else db.execute(
            "INSERT INTO responses(prompt_id, text, origin, gen_config) VALUES (?, ?, 'imported', ?)",
            [prompt_id, text, json.dumps(config)]).lastrowid
    return cache[key]


def _chosen_on_left(row: dict[str, Any]) -> bool:
    """A stable coin flip per row (ties keep the file's order: chosen column on the left)."""
    if row["outcome"] == "tie":
        return True
    digest = hashlib.sha1(f"{row['prompt_text']}\0{row['chosen']}\0{row['rejected']}".encode()).digest()
    return digest[0] % 2 == 0


# -- exporting -------------------------------------------------------------------------------
def export_preferences(project: Project, out: str | Path, fmt: str = "jsonl", include_ties: bool = False,
                       conversational: bool = False, *, criterion: str | None = None,
                       split: str | None = None) -> dict[str, Any]:
    """Write the decisive labels (and ties when asked) in TRL's preference format (see module doc).

    Returns {"path", "format", "rows", "files", "splits": {split: rows}, "excluded": {outcome: n}}.
    """
    check_split(split)
    path = target_path(out, fmt, "preferences")
    wanted = ("left", "right", "tie") if include_ties else ("left", "right")
    where, params = ["1"], []
    if criterion is not None:
        where.append("c.criterion = ?")
        params.append(criterion)
    if split is not None:
        where.append("p.split = ?")
        params.append(split)
    cursor = project.conn.execute(
        "SELECT c.outcome, c.strength, p.text, p.split, l.text, r.text FROM comparisons c "
        "JOIN prompts p ON p.id = c.prompt_id JOIN responses l ON l.id = c.left_id "
        f"JOIN responses r ON r.id = c.right_id WHERE {' AND '.join(where)} ORDER BY c.id", params)
    by_split: dict[str, list[dict[str, Any]]] = {"train": [], "heldout": []}
    excluded: dict[str, int] = {}
    prompt_form: dict[str, Any] = {}
    for outcome, strength, prompt, prompt_split, left, right in cursor:
        if outcome not in wanted:
            excluded[outcome] = excluded.get(outcome, 0) + 1
            continue
        if conversational and prompt not in prompt_form:
            prompt_form[prompt] = text_to_messages(prompt)
        p = prompt_form[prompt] if conversational else prompt
        pairs = [(left, right), (right, left)] if outcome == "tie" else \
            [(left, right) if outcome == "left" else (right, left)]
        for chosen, rejected in pairs:
            row = {"prompt": p, "chosen": _side(chosen, conversational), "rejected": _side(rejected, conversational),
                   "margin": 0.0 if outcome == "tie" else strength_to_margin(strength)}
            if include_ties:
                row["tie"] = outcome == "tie"
            by_split[prompt_split].append(row)
    total = sum(len(v) for v in by_split.values())
    if total == 0:
        raise DataError("no preference pairs to export", where=str(project.folder),
                        hint="label some pairs first (ties, both-bad and skipped labels are not pairs)")
    card = _card(project, by_split, excluded, include_ties, conversational)
    files = write_rows(by_split, path, fmt, card)
    return {"path": str(path), "format": fmt, "rows": total, "files": files,
            "splits": {k: len(v) for k, v in by_split.items()}, "excluded": excluded}


def _side(text: str, conversational: bool) -> Any:
    return [{"role": "assistant", "content": text}] if conversational else text


def _card(project: Project, by_split: dict[str, list], excluded: dict[str, int], include_ties: bool,
          conversational: bool) -> str:
    form = "conversational (message lists)" if conversational else "standard (plain text)"
    splits = ", ".join(f"`{'test' if k == 'heldout' else k}`: {len(v)} rows" for k, v in by_split.items() if v)
    skipped = ", ".join(f"{k}: {v}" for k, v in sorted(excluded.items())) or "none"
    ties = ("Each tie is two rows, each response once as `chosen`, `margin` 0.0 and `tie` true."
            if include_ties else "Ties are not included.")
    return f"""---
tags:
- trl
- preference
- rlhf-desktop
---

# Preference pairs from {project.folder.name}

Exported by rlhf-desktop {__version__} on {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}.
TRL preference format, {form}, explicit prompt. Splits: {splits}
(`test` holds the project's held-out prompts).

| column | meaning |
| --- | --- |
| `prompt` | the prompt |
| `chosen` | the response the labeler preferred |
| `rejected` | the other response |
| `margin` | label strength: 0.0 = better, {MUCH_BETTER_MARGIN} = much better (RewardTrainer subtracts it) |
{"| `tie` | true for the two mirrored rows of a tie |" if include_ties else ""}

{ties} Labels left out (no preference order): {skipped}.

```python
from datasets import load_from_disk
dataset = load_from_disk("path/to/this/folder")  # then RewardTrainer(train_dataset=dataset["train"], ...)
```
"""
