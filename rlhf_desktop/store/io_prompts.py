"""Importing prompts from JSONL, JSON, CSV/TSV, Parquet, plain text (one per line) or a `datasets` folder.

The prompt column is `prompt` unless a mapping names another (`{"prompt": "question"}`). A prompt
may also be a list of chat messages (TRL's conversational form); a single user turn becomes its
text, several turns an HH-style transcript. Rows of a `datasets` folder saved as a DatasetDict keep
their split: `test`/`validation` rows go to the held-out split unless a split is forced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlhf_desktop.store.formats import is_messages, messages_to_text
from rlhf_desktop.store.project import Project
from rlhf_desktop.store.prompts import DEFAULT_HELDOUT_FRACTION, ImportReport, add_prompts, check_split
from rlhf_desktop.store.records import check_mapping, column, missing_field, read_records


def read_prompts_file(path: str | Path, mapping: dict[str, str] | None = None
                      ) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Rows `{"line", "prompt", "split"}` (plus `category` when present) and `(line, reason)` errors."""
    result = read_records(path, text_field=column("prompt", mapping))
    check_mapping(result, mapping, path)
    key = column("prompt", mapping)
    rows, errors = [], list(result.errors)
    for record in result.records:
        value = record.data.get(key)
        if value is None:
            errors.append((record.line, missing_field("prompt", mapping)))
            continue
        if is_messages(value):
            value = messages_to_text(value)
        if not isinstance(value, str):
            errors.append((record.line, f"'{key}' must be text or chat messages, got {type(value).__name__}"))
        elif not value.strip():
            errors.append((record.line, f"empty '{key}'"))
        else:
            row = {"line": record.line, "prompt": value.strip(), "split": record.split}
            category = record.data.get(column("category", mapping))
            if isinstance(category, str) and category:
                row["category"] = category
            rows.append(row)
    return rows, sorted(errors)


def import_prompts(project: Project, path: str | Path, mapping: dict[str, str] | None = None,
                   split: str | None = None, preview: bool = False,
                   heldout_fraction: float = DEFAULT_HELDOUT_FRACTION) -> ImportReport:
    """Import the good rows of a prompts file in one transaction; preview=True writes nothing.

    split None keeps a `datasets` split when the file has one, else assigns by text hash.
    """
    check_split(split)
    rows, errors = read_prompts_file(path, mapping)
    part = add_prompts(project, [r["prompt"] for r in rows], source=Path(path).name, split=split,
                       heldout_fraction=heldout_fraction, lines=[r["line"] for r in rows],
                       splits=[r["split"] for r in rows], categories=[r.get("category", "") for r in rows],
                       preview=preview)
    part.errors = sorted(errors + part.errors)
    return part
