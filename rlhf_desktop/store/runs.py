"""Training runs in the project store: the run rows, their per-step metrics, checkpoints and samples.

Every function takes an open `Project` (which belongs to the calling thread) and commits before it
returns. Checkpoint paths are stored relative to the project folder so a project can be moved;
the dicts returned carry both `path` (as stored) and `abs_path`.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

from rlhf_desktop.core.errors import ProjectError
from rlhf_desktop.store.project import Project

STAGES = ("sft", "rm", "dpo", "ppo")
STATUSES = ("queued", "running", "paused", "stopped", "failed", "done")
FINISHED = ("stopped", "failed", "done")
_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


def _json(value: Any) -> str:
    return json.dumps(value if value is not None else {}, sort_keys=True, default=str)


def _run_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    run = dict(row)
    run["config"] = json.loads(run.get("config") or "{}")
    run["final_metrics"] = json.loads(run.get("final_metrics") or "{}")
    return run


# -- runs ------------------------------------------------------------------------------------
def create_run(project: Project, stage: str, config: Mapping[str, Any], base_model: str,
               parent_run_id: int | None = None, parent_checkpoint_id: int | None = None,
               data_size: int = 0, data_hash: str = "", name: str = "") -> int:
    """Insert a queued run with its full config and lineage; return its id."""
    if stage not in STAGES:
        raise ProjectError(f"unknown stage {stage!r}", where="stage", hint=f"one of {', '.join(STAGES)}")
    cursor = project.execute(
        "INSERT INTO runs (stage, name, config, base_model, parent_run_id, parent_checkpoint_id, data_size, "
        "data_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (stage, name, _json(dict(config)), str(base_model), parent_run_id, parent_checkpoint_id,
         int(data_size), data_hash))
    return int(cursor.lastrowid)


def update_run_config(project: Project, run_id: int, config: Mapping[str, Any]) -> None:
    """Replace a run's stored config (a resumed run may extend max_steps)."""
    get_run(project, run_id)
    project.execute("UPDATE runs SET config = ? WHERE id = ?", (_json(dict(config)), run_id))


def set_run_status(project: Project, run_id: int, status: str, error: str = "",
                   final_metrics: Mapping[str, float] | None = None) -> None:
    """Set the status; `running` stamps started_at once, finished states stamp finished_at."""
    if status not in STATUSES:
        raise ProjectError(f"unknown run status {status!r}", where="status", hint=f"one of {', '.join(STATUSES)}")
    get_run(project, run_id)
    sets = ["status = ?", "error = ?"]
    params: list[Any] = [status, error]
    if final_metrics is not None:
        sets.append("final_metrics = ?")
        params.append(_json(dict(final_metrics)))
    if status == "running":
        sets.append(f"started_at = coalesce(started_at, {_NOW})")
        sets.append("finished_at = NULL")
    elif status in FINISHED:
        sets.append(f"finished_at = {_NOW}")
    project.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*params, run_id))


def get_run(project: Project, run_id: int) -> dict[str, Any]:
    """One run with its config and final metrics parsed; ProjectError when there is none."""
    rows = project.query("SELECT * FROM runs WHERE id = ?", (int(run_id),))
    if not rows:
        raise ProjectError(f"no run {run_id} in this project", where=str(project.folder),
                           hint="list the runs with `rlhf-desktop runs --project DIR`")
    return _run_dict(rows[0])


def list_runs(project: Project, stage: str | None = None) -> list[dict[str, Any]]:
    """All runs (optionally of one stage), oldest first."""
    if stage is None:
        rows = project.query("SELECT * FROM runs ORDER BY id")
    else:
        rows = project.query("SELECT * FROM runs WHERE stage = ? ORDER BY id", (stage,))
    return [_run_dict(r) for r in rows]


def lineage(project: Project, run_id: int) -> list[dict[str, Any]]:
    """The chain of runs from the root (trained on the base model) down to `run_id`."""
    chain: list[dict[str, Any]] = []
    seen: set[int] = set()
    current: int | None = int(run_id)
    while current is not None and current not in seen:
        seen.add(current)
        run = get_run(project, current)
        chain.append(run)
        current = run["parent_run_id"]
    return list(reversed(chain))


def delete_run(project: Project, run_id: int, delete_files: bool = True) -> None:
    """Delete a run with its metrics, checkpoints and samples (children keep running, unparented)."""
    get_run(project, run_id)
    project.execute("DELETE FROM runs WHERE id = ?", (int(run_id),))
    if delete_files:
        folder = run_dir(project, run_id)
        if folder.is_dir():
            shutil.rmtree(folder)


def run_dir(project: Project, run_id: int) -> Path:
    """Where a run's checkpoints live: <project>/checkpoints/run-<id>/."""
    return project.checkpoints_dir / f"run-{int(run_id)}"


# -- metrics ---------------------------------------------------------------------------------
def _finite(value: Any) -> float | None:
    """JSON (and SQLite's json_patch) has no NaN or infinity: those are stored as null."""
    value = float(value)
    return value if math.isfinite(value) else None


def add_metrics(project: Project, run_id: int,
                rows: Iterable[tuple[int, float, Mapping[str, float]]]) -> None:
    """Upsert (step, wall_time, metrics) rows; metrics of a step already stored are merged key by key.

    Non-finite values (a diverged loss) are stored as null.
    """
    values = [(int(run_id), int(step), float(wall), json.dumps({k: _finite(v) for k, v in m.items()}))
              for step, wall, m in rows]
    if not values:
        return
    with project.transaction() as db:
        db.conn.executemany(
            "INSERT INTO run_metrics (run_id, step, wall_time, metrics) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(run_id, step) DO UPDATE SET wall_time = excluded.wall_time, "
            "metrics = json_patch(run_metrics.metrics, excluded.metrics)", values)


def get_metrics(project: Project, run_id: int) -> list[dict[str, Any]]:
    """[{step, wall_time, metrics}] in step order."""
    rows = project.query("SELECT step, wall_time, metrics FROM run_metrics WHERE run_id = ? ORDER BY step",
                         (int(run_id),))
    return [{"step": r["step"], "wall_time": r["wall_time"], "metrics": json.loads(r["metrics"])} for r in rows]


# -- checkpoints -----------------------------------------------------------------------------
def _relative(project: Project, path: str | Path) -> str:
    path = Path(path)
    if path.is_absolute():
        try:
            return path.resolve().relative_to(project.folder).as_posix()
        except ValueError:
            return str(path)
    return path.as_posix()


def _checkpoint_dict(project: Project, row: Mapping[str, Any]) -> dict[str, Any]:
    ckpt = dict(row)
    ckpt["metrics"] = json.loads(ckpt.get("metrics") or "{}")
    path = Path(ckpt["path"])
    ckpt["abs_path"] = str(path if path.is_absolute() else project.folder / path)
    return ckpt


def add_checkpoint(project: Project, run_id: int, step: int, path: str | Path, kind: str = "adapter",
                   metrics: Mapping[str, float] | None = None) -> int:
    """Record a complete checkpoint folder; the same run and step again updates that row."""
    rel = _relative(project, path)
    with project.transaction() as db:
        row = db.conn.execute("SELECT id FROM checkpoints WHERE run_id = ? AND step = ?",
                              (int(run_id), int(step))).fetchone()
        if row is not None:
            db.conn.execute("UPDATE checkpoints SET path = ?, kind = ?, metrics = ? WHERE id = ?",
                            (rel, kind, _json(metrics), row[0]))
            return int(row[0])
        cursor = db.conn.execute("INSERT INTO checkpoints (run_id, step, path, kind, metrics) VALUES (?, ?, ?, ?, ?)",
                                 (int(run_id), int(step), rel, kind, _json(metrics)))
        return int(cursor.lastrowid)


def list_checkpoints(project: Project, run_id: int | None = None) -> list[dict[str, Any]]:
    """Checkpoints of one run (or all), by run then step."""
    if run_id is None:
        rows = project.query("SELECT * FROM checkpoints ORDER BY run_id, step")
    else:
        rows = project.query("SELECT * FROM checkpoints WHERE run_id = ? ORDER BY step", (int(run_id),))
    return [_checkpoint_dict(project, r) for r in rows]


def get_checkpoint(project: Project, checkpoint_id: int) -> dict[str, Any]:
    """One checkpoint; ProjectError when there is none."""
    rows = project.query("SELECT * FROM checkpoints WHERE id = ?", (int(checkpoint_id),))
    if not rows:
        raise ProjectError(f"no checkpoint {checkpoint_id} in this project", where=str(project.folder),
                           hint="list a run's checkpoints in the Runs view or with `rlhf-desktop runs`")
    return _checkpoint_dict(project, rows[0])


def latest_checkpoint(project: Project, run_id: int) -> dict[str, Any] | None:
    """The highest-step checkpoint of a run whose folder still exists, or None."""
    for ckpt in reversed(list_checkpoints(project, run_id)):
        if Path(ckpt["abs_path"]).is_dir():
            return ckpt
    return None


# -- samples ---------------------------------------------------------------------------------
_SAMPLE_COLUMNS = ("prompt", "response", "score", "kl")


def add_samples(project: Project, run_id: int, step: int, rows: Iterable[Mapping[str, Any]]) -> None:
    """Store example outputs at a step; keys other than prompt/response/score/kl go to `extra`."""
    values = []
    for row in rows:
        extra = {k: v for k, v in row.items() if k not in _SAMPLE_COLUMNS}
        score, kl = row.get("score"), row.get("kl")
        values.append((int(run_id), int(step), str(row.get("prompt", "")), str(row.get("response", "")),
                       None if score is None else float(score), None if kl is None else float(kl),
                       json.dumps(extra, default=str)))
    if values:
        with project.transaction() as db:
            db.conn.executemany("INSERT INTO samples (run_id, step, prompt, response, score, kl, extra) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)", values)


def get_samples(project: Project, run_id: int, step: int | None = None) -> list[dict[str, Any]]:
    """Samples of a run (one step or all), each with `extra` parsed."""
    if step is None:
        rows = project.query("SELECT * FROM samples WHERE run_id = ? ORDER BY step, id", (int(run_id),))
    else:
        rows = project.query("SELECT * FROM samples WHERE run_id = ? AND step = ? ORDER BY id",
                             (int(run_id), int(step)))
    out = []
    for r in rows:
        sample = dict(r)
        sample["extra"] = json.loads(sample.get("extra") or "{}")
        out.append(sample)
    return out
