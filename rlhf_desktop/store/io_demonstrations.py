"""Import and export of demonstrations in TRL's SFT prompt-completion format.

Export: one row per demonstration, ``prompt`` and ``completion`` as text (standard) or as message
lists (conversational: the prompt's turns, then ``[{"role": "assistant", "content": ...}]``).
``jsonl``, ``parquet`` or ``hf`` (a DatasetDict folder, ``train`` plus ``test`` for held-out
prompts, with a README.md card). SFTTrainer takes the files unchanged.

Import: ``prompt`` + ``completion`` (text or messages), or a ``messages`` list whose last turn is
the assistant's (the turns before it are the prompt). Column names can be remapped. Duplicates
(the same prompt and text, in the file or already in the project) are skipped and listed; bad
rows are reported by line; the good rows go in one transaction.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rlhf_desktop import __version__
from rlhf_desktop.core.errors import DataError
from rlhf_desktop.store.formats import (FormatError, completion_text, is_messages, messages_to_text,
                                        text_to_messages, to_messages)
from rlhf_desktop.store.io_write import target_path, write_rows
from rlhf_desktop.store.project import Project
from rlhf_desktop.store.prompts import (DEFAULT_HELDOUT_FRACTION, ImportReport, check_split, ensure_prompt,
                                        text_hash)
from rlhf_desktop.store.records import check_mapping, column, missing_field, read_records


def parse_demonstrations(path: str | Path, mapping: dict[str, str] | None = None
                         ) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Rows {line, prompt (text), completion, split} and (line, reason) errors."""
    result = read_records(path)
    check_mapping(result, mapping, path)
    rows, errors = [], list(result.errors)
    for record in result.records:
        try:
            prompt, completion = _normalise(record.data, mapping)
        except FormatError as exc:
            errors.append((record.line, str(exc)))
            continue
        rows.append({"line": record.line, "prompt": prompt, "completion": completion, "split": record.split})
    return rows, sorted(errors)


def _normalise(data: dict[str, Any], mapping: dict[str, str] | None) -> tuple[str, str]:
    messages = data.get(column("messages", mapping))
    if messages is not None and data.get(column("completion", mapping)) is None:
        if not is_messages(messages):
            raise FormatError("'messages' must be a list of {role, content} messages")
        if messages[-1]["role"] != "assistant" or len(messages) < 2:
            raise FormatError("'messages' must end with an assistant turn after the prompt")
        prompt, completion = messages[:-1], messages[-1]["content"]
    else:
        prompt, completion = data.get(column("prompt", mapping)), data.get(column("completion", mapping))
        for name, value in (("prompt", prompt), ("completion", completion)):
            if value is None:
                raise FormatError(missing_field(name, mapping))
        prompt = to_messages(prompt, "prompt")
        if is_messages(completion):
            completion = completion_text(to_messages(completion, "completion"), "completion")
        elif not isinstance(completion, str):
            raise FormatError(f"'completion' must be text or messages, got {type(completion).__name__}")
    prompt_text = messages_to_text(prompt)
    if not prompt_text.strip():
        raise FormatError("empty prompt")
    if not completion.strip():
        raise FormatError("empty completion")
    return prompt_text, completion


def import_demonstrations(project: Project, path: str | Path, mapping: dict[str, str] | None = None,
                          preview: bool = False, split: str | None = None,
                          heldout_fraction: float = DEFAULT_HELDOUT_FRACTION) -> ImportReport:
    """Import the good rows as demonstrations (source 'import') in one transaction; preview writes nothing."""
    check_split(split)
    rows, errors = parse_demonstrations(path, mapping)
    report = ImportReport(preview=preview, errors=errors)
    seen: set[tuple[str, str]] = set()
    good = []
    for row in rows:
        key = (text_hash(row["prompt"]), row["completion"])
        if key in seen or _in_store(project, *key):
            report.duplicates.append(row["line"])
        else:
            seen.add(key)
            good.append(row)
    report.skipped, report.imported = len(report.duplicates), len(good)
    if preview:
        report.sample = [{k: r[k] for k in ("line", "prompt", "completion")} for r in good[:5]]
    elif good:
        source = Path(path).name
        with project.transaction() as db:
            for row in good:
                prompt_id = ensure_prompt(db, row["prompt"], source, split or row["split"], heldout_fraction)
                db.execute("INSERT INTO demonstrations(prompt_id, text, source) VALUES (?, ?, 'import')",
                           [prompt_id, row["completion"]])
    return report


def _in_store(project: Project, digest: str, text: str) -> bool:
    return project.conn.execute(
        "SELECT 1 FROM demonstrations d JOIN prompts p ON p.id = d.prompt_id WHERE p.text_hash = ? AND d.text = ?",
        [digest, text]).fetchone() is not None


def export_demonstrations(project: Project, out: str | Path, fmt: str = "jsonl", conversational: bool = False,
                          *, split: str | None = None) -> dict[str, Any]:
    """Write demonstrations as prompt/completion rows; returns {"path", "format", "rows", "files", "splits"}."""
    check_split(split)
    path = target_path(out, fmt, "demonstrations")
    where, params = ("WHERE p.split = ?", [split]) if split else ("", [])
    cursor = project.conn.execute("SELECT p.text, p.split, d.text FROM demonstrations d "
                                  f"JOIN prompts p ON p.id = d.prompt_id {where} ORDER BY d.id", params)
    by_split: dict[str, list[dict[str, Any]]] = {"train": [], "heldout": []}
    for prompt, prompt_split, text in cursor:
        if conversational:
            row = {"prompt": text_to_messages(prompt), "completion": [{"role": "assistant", "content": text}]}
        else:
            row = {"prompt": prompt, "completion": text}
        by_split[prompt_split].append(row)
    total = sum(len(v) for v in by_split.values())
    if total == 0:
        raise DataError("no demonstrations to export", where=str(project.folder),
                        hint="write some (or edit a response while labeling) first")
    form = "conversational (message lists)" if conversational else "standard (plain text)"
    card = (f"---\ntags:\n- trl\n- sft\n- rlhf-desktop\n---\n\n# Demonstrations from {project.folder.name}\n\n"
            f"Exported by rlhf-desktop {__version__} on {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}. "
            f"TRL prompt-completion format, {form}: `prompt`, `completion` (the ideal response). "
            f"Splits: train {len(by_split['train'])} rows, test {len(by_split['heldout'])} rows "
            "(`test` holds the project's held-out prompts). Load with `datasets.load_from_disk(folder)`.\n")
    files = write_rows(by_split, path, fmt, card)
    return {"path": str(path), "format": fmt, "rows": total, "files": files,
            "splits": {k: len(v) for k, v in by_split.items()}}
