"""Reading rows from data files: JSONL, JSON, CSV/TSV, Parquet, plain text and `datasets` folders.

Every reader returns `(records, errors)`: records carry the 1-based line (for JSONL, CSV and text
files the physical line in the file; for JSON arrays, Parquet and `datasets` folders the row
number) so that a bad row is always reported where the user can find it. A file that cannot be
read at all raises DataError naming it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from rlhf_desktop.core.errors import DataError

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt")
HELDOUT_SPLITS = ("test", "validation", "valid", "eval", "heldout", "dev")


@dataclass
class Record:
    """One row of an input file: its 1-based line (or row) number, its fields, its split if known."""

    line: int
    data: dict[str, Any]
    split: str | None = None


@dataclass
class ReadResult:
    records: list[Record] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)


def read_records(path: str | Path, *, text_field: str = "prompt") -> ReadResult:
    """Read every row of `path`; a .txt file gives one `{text_field: line}` record per non-blank line."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError("file not found", where=str(path), hint="check the path")
    if path.is_dir():
        return _read_dataset_folder(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    if suffix in (".csv", ".tsv"):
        return _read_csv(path, "\t" if suffix == ".tsv" else ",")
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix == ".txt":
        return _read_text(path, text_field)
    raise DataError(f"unsupported file type '{suffix or path.name}'", where=str(path),
                    hint="use " + ", ".join(SUFFIXES) + " or a folder saved with datasets' save_to_disk")


def split_from_name(name: str | None) -> str | None:
    """Map a `datasets` split name to the store's split: test/validation become 'heldout'."""
    if name is None:
        return None
    return "heldout" if name.lower() in HELDOUT_SPLITS else "train"


# -- line-oriented files ---------------------------------------------------------------------
def _lines(path: Path) -> list[tuple[int, str | None]]:
    """(line number, decoded text or None when the line is not UTF-8), with line endings removed."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror}", where=str(path)) from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    out: list[tuple[int, str | None]] = []
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            out.append((number, chunk.rstrip(b"\r").decode("utf-8")))
        except UnicodeDecodeError:
            out.append((number, None))
    return out


def _read_jsonl(path: Path) -> ReadResult:
    result = ReadResult()
    for number, text in _lines(path):
        if text is None:
            result.errors.append((number, "not valid UTF-8 text"))
            continue
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            result.errors.append((number, f"invalid JSON: {exc.msg} (column {exc.colno})"))
            continue
        if not isinstance(value, dict):
            result.errors.append((number, f"expected a JSON object, got {type(value).__name__}"))
            continue
        result.records.append(Record(number, value))
    return result


def _read_json(path: Path) -> ReadResult:
    """A JSON array of objects (rows numbered from 1), or JSON Lines saved with a .json name."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError("not valid UTF-8 text", where=str(path)) from None
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror}", where=str(path)) from None
    if not text.lstrip().startswith("["):
        return _read_jsonl(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", where=f"{path}:{exc.lineno}",
                        hint="fix the file or save it as JSON Lines (one object per line)") from None
    result = ReadResult()
    for number, item in enumerate(value, start=1):
        if isinstance(item, dict):
            result.records.append(Record(number, item))
        else:
            result.errors.append((number, f"expected a JSON object, got {type(item).__name__}"))
    return result


def _read_csv(path: Path, delimiter: str) -> ReadResult:
    lines = _lines(path)
    bad = [n for n, t in lines if t is None]
    if bad:
        raise DataError("not valid UTF-8 text", where=f"{path}:{bad[0]}", hint="save the file as UTF-8")
    reader = csv.reader(io.StringIO("\n".join(t or "" for _, t in lines)), delimiter=delimiter)
    result = ReadResult()
    header: list[str] | None = None
    try:
        while True:
            start = reader.line_num + 1
            row = next(reader, None)
            if row is None:
                break
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip() for cell in row]
            elif len(row) != len(header):
                result.errors.append((start, f"{len(row)} fields, the header has {len(header)}"))
            else:
                result.records.append(Record(start, dict(zip(header, row))))
    except csv.Error as exc:
        result.errors.append((reader.line_num, f"CSV error: {exc}"))
    if header is None:
        raise DataError("the file is empty (no header row)", where=str(path))
    return result


def _read_text(path: Path, text_field: str) -> ReadResult:
    result = ReadResult()
    for number, text in _lines(path):
        if text is None:
            result.errors.append((number, "not valid UTF-8 text"))
        elif text.strip():
            result.records.append(Record(number, {text_field: text.strip()}))
    return result


# -- columnar files and datasets folders -----------------------------------------------------
def _read_parquet(path: Path) -> ReadResult:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise DataError(f"cannot read this Parquet file ({exc})", where=str(path)) from None
    return ReadResult([Record(i, row) for i, row in enumerate(rows, start=1)])


def _read_dataset_folder(path: Path) -> ReadResult:
    """A `save_to_disk` folder (Dataset or DatasetDict), or a folder of local JSON/CSV/Parquet files."""
    import datasets

    try:
        with quiet_datasets():
            if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
                loaded = datasets.load_from_disk(str(path))
            else:
                loaded = datasets.load_dataset(str(path))
    except Exception as exc:  # datasets raises many types; the user needs the message only
        raise DataError(f"cannot load this folder with datasets ({type(exc).__name__}: {exc})", where=str(path),
                        hint="use a folder written by save_to_disk, or one holding .jsonl/.csv/.parquet files"
                        ) from None
    parts = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
    result = ReadResult()
    number = 0
    for name, dataset in parts:
        for row in dataset:
            number += 1
            result.records.append(Record(number, dict(row), split_from_name(name)))
    return result


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No tqdm bars from `datasets` while we call it: we are a library (CLI stderr, GUI log)."""
    import datasets

    was_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_on:
            datasets.enable_progress_bars()


# -- field access with a user mapping --------------------------------------------------------
def parse_mapping(text: str | None) -> dict[str, str]:
    """`prompt=question,chosen=good` -> {"prompt": "question", "chosen": "good"}."""
    mapping: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        ours, sep, theirs = part.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise DataError(f"bad mapping '{part.strip()}'", where="--map",
                            hint="write our_field=their_column, e.g. prompt=question,chosen=good")
        mapping[ours.strip()] = theirs.strip()
    return mapping


def column(name: str, mapping: dict[str, str] | None) -> str:
    return (mapping or {}).get(name, name)


def check_mapping(result: ReadResult, mapping: dict[str, str] | None, path: str | Path) -> None:
    """A mapped column absent from every row is a mistake in the mapping, not in the rows."""
    if not mapping or not result.records:
        return
    seen: set[str] = set()
    for record in result.records:
        seen.update(record.data)
    missing = [f"{ours}={theirs}" for ours, theirs in mapping.items() if theirs not in seen]
    if missing:
        raise DataError(f"mapped column not in the file: {', '.join(missing)}", where=str(path),
                        hint="the columns are: " + ", ".join(sorted(seen)))


def missing_field(name: str, mapping: dict[str, str] | None) -> str:
    theirs = column(name, mapping)
    return f"missing field '{theirs}'" + (f" (mapped to {name})" if theirs != name else "")
