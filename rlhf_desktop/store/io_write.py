"""Writing exported rows: JSONL, Parquet or a `datasets` folder (save_to_disk) with a dataset card.

Files are written to a temporary name beside the target and renamed into place, so an interrupted
export never leaves a half-written file under the name the user asked for.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rlhf_desktop.core.errors import DataError
from rlhf_desktop.store.records import quiet_datasets

FORMATS = ("jsonl", "parquet", "hf")
SPLIT_NAMES = {"train": "train", "heldout": "test"}  # store split -> datasets split


def target_path(out: str | Path, fmt: str, default_stem: str) -> Path:
    """The file or folder to write: inside `out` when it is an existing folder (jsonl/parquet)."""
    if fmt not in FORMATS:
        raise DataError(f"unknown export format '{fmt}'", where="format", hint="use one of " + ", ".join(FORMATS))
    out = Path(out).expanduser()
    if fmt != "hf" and out.is_dir():
        return out / f"{default_stem}.{fmt}"
    return out


def write_rows(rows_by_split: dict[str, list[dict[str, Any]]], out: Path, fmt: str, card: str) -> list[str]:
    """Write rows (keyed by store split) and return the files written, relative to `out`'s parent."""
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [row for part in rows_by_split.values() for row in part]
    if fmt == "jsonl":
        _atomic_file(out, lambda tmp: _write_jsonl(rows, tmp))
        return [str(out)]
    if fmt == "parquet":
        _atomic_file(out, lambda tmp: _write_parquet(rows, tmp))
        return [str(out)]
    return _write_hf(rows_by_split, out, card)


def _atomic_file(out: Path, write: Any) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False))
            fh.write("\n")


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


def _write_hf(rows_by_split: dict[str, list[dict[str, Any]]], out: Path, card: str) -> list[str]:
    """A DatasetDict folder (train, and test for held-out prompts) with README.md beside the data."""
    import datasets

    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / "dataset_dict.json").exists())):
        raise DataError("the output exists and is not an earlier dataset export", where=str(out),
                        hint="choose a new folder name")
    parts = {SPLIT_NAMES[split]: datasets.Dataset.from_list(rows) for split, rows in rows_by_split.items() if rows}
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with quiet_datasets():
            datasets.DatasetDict(parts).save_to_disk(str(tmp))
        (tmp / "README.md").write_text(card, encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return sorted(str(p) for p in out.rglob("*") if p.is_file())
