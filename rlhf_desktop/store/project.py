"""Opening, creating and migrating a project: a folder with project.db, checkpoints/ and exports/."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator

import sqlite_utils

from rlhf_desktop.core.errors import ProjectError, SchemaError
from rlhf_desktop.store.schema import MIGRATIONS, SCHEMA_VERSION

DB_NAME = "project.db"
COUNTED_TABLES = ("prompts", "responses", "comparisons", "demonstrations", "runs", "checkpoints", "samples")


class Project:
    """One open project. A Project (and its connection) belongs to the thread that opened it.

    Every public write method commits before it returns; `transaction()` groups several writes
    into one commit. Other threads open their own Project on the same folder (WAL lets readers
    and one writer work side by side).
    """

    def __init__(self, folder: Path, conn: sqlite3.Connection):
        self.folder = folder
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: str | Path) -> "Project":
        """Create a new project folder (or adopt an empty existing one) and open it."""
        folder = Path(folder).expanduser().resolve()
        if (folder / DB_NAME).exists():
            raise ProjectError("a project already exists here", where=str(folder),
                               hint="open it instead, or choose an empty folder")
        if folder.is_file():
            raise ProjectError("this is a file, not a folder", where=str(folder))
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProjectError(f"cannot create the folder: {exc.strerror}", where=str(folder)) from None
        return cls._open(folder, creating=True)

    @staticmethod
    def exists(folder: str | Path) -> bool:
        """True when `folder` holds a project database."""
        return (Path(folder).expanduser() / DB_NAME).is_file()

    @classmethod
    def open(cls, folder: str | Path, *, create: bool = False) -> "Project":
        """Open an existing project; with create=True a missing one is created."""
        folder = Path(folder).expanduser().resolve()
        if not (folder / DB_NAME).exists():
            if create:
                return cls.create(folder)
            if folder.is_file() and folder.name.endswith(".db"):
                return cls.open(folder.parent)
            raise ProjectError(f"no {DB_NAME} in this folder", where=str(folder),
                               hint="choose a project folder, or create one with File > New project "
                                    "or `rlhf-desktop init DIR`")
        return cls._open(folder, creating=False)

    @classmethod
    def _open(cls, folder: Path, *, creating: bool) -> "Project":
        path = folder / DB_NAME
        if not creating:
            _check_header(path)
        try:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        except sqlite3.Error as exc:
            raise ProjectError(f"cannot open the database: {exc}", where=str(path)) from None
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 30000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SchemaError(
                    f"written by a newer rlhf-desktop (schema {version}, this version reads up to "
                    f"{SCHEMA_VERSION})", where=str(path), hint="upgrade rlhf-desktop to open it")
            if not creating:
                _integrity_check(conn, path)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            migrate(conn, version)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ProjectError(f"the database is damaged or not a project database ({exc})", where=str(path),
                               hint="restore it from a backup; it was left untouched") from None
        except BaseException:
            conn.close()
            raise
        for sub in ("checkpoints", "exports"):
            (folder / sub).mkdir(exist_ok=True)
        return cls(folder, conn)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- transactions ------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """Group writes into one committed transaction (nested calls become savepoints).

        The outer transaction starts with BEGIN IMMEDIATE: it takes SQLite's write lock up front,
        so a read-then-write transaction waits for another writer (busy timeout) instead of
        failing with "database is locked" when that writer committed in between (WAL snapshots).
        """
        with self._lock:
            if self.conn.in_transaction:
                with self.db.atomic():  # a savepoint inside the open transaction
                    yield self.db
                return
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        """One statement, committed on return (the connection is in autocommit mode)."""
        with self._lock:
            return self.conn.execute(sql, params)

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, params))

    # -- facts -------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    @property
    def checkpoints_dir(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def exports_dir(self) -> Path:
        return self.folder / "exports"

    def counts(self) -> dict[str, int]:
        return {t: self.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COUNTED_TABLES}

    def info(self) -> dict[str, Any]:
        return {"project": str(self.folder), "schema_version": self.schema_version, "counts": self.counts()}

    # -- settings (JSON values) ---------------------------------------------------------------
    def get_setting(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_setting(self, key: str, value: Any) -> None:
        self.execute("INSERT INTO settings(key, value) VALUES (?, ?) "
                     "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, json.dumps(value)))


def _check_header(path: Path) -> None:
    """Refuse a file that is not SQLite at all before sqlite3 touches it."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(16)
    except OSError as exc:
        raise ProjectError(f"cannot read the database: {exc.strerror}", where=str(path)) from None
    if header and header != b"SQLite format 3\x00":
        raise ProjectError("not an SQLite database (the file may be damaged)", where=str(path),
                           hint="restore it from a backup; it was left untouched")


def _integrity_check(conn: sqlite3.Connection, path: Path) -> None:
    rows = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
    if rows != ["ok"]:
        raise ProjectError("the database failed its integrity check: " + "; ".join(rows[:3]), where=str(path),
                           hint="restore it from a backup; it was left untouched")


def migrate(conn: sqlite3.Connection, version: int, target: int = SCHEMA_VERSION) -> None:
    """Apply migrations version+1..target, each in its own transaction with its version bump."""
    for index in range(version, target):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split_sql(MIGRATIONS[index]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {index + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _strip_comment(line: str) -> str:
    """Drop a trailing `-- comment`, ignoring `--` inside single-quoted strings."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == "'":
            quoted = not quoted
        elif ch == "-" and not quoted and line[i:i + 2] == "--":
            return line[:i].rstrip()
    return line.rstrip()


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (BEGIN ... END;) whole."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        stripped = _strip_comment(line)
        if not stripped.strip():
            continue
        current.append(stripped)
        joined = "\n".join(current)
        if stripped.endswith(";") and sqlite3.complete_statement(joined):
            statements.append(joined)
            current = []
    if current:
        statements.append("\n".join(current))
    return statements
