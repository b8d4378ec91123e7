"""Kill safety: a labeling process killed with SIGKILL at random moments loses no committed label
and leaves no half-written one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rlhf_desktop.store import Project
from rlhf_desktop.store.labels import add_response
from rlhf_desktop.store.prompts import add_prompts, list_prompts

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

# The worker labels as fast as it can through the public store API and prints what each call
# returned, after it returned: "L id" (one label), "G id,id" (two criteria in one transaction),
# "E demo,response,comparison" (an edit: three rows in one transaction).
WORKER = r"""
import sys
from rlhf_desktop.store import Project
from rlhf_desktop.store.labels import edit_as_demonstration, list_responses, record_label, record_labels
from rlhf_desktop.store.prompts import list_prompts

project = Project.open(sys.argv[1])
pairs = []
for prompt in list_prompts(project):
    ids = [r["id"] for r in list_responses(project, prompt["id"]) if r["origin"] == "generated"]
    pairs.append((prompt["id"], ids[0], ids[1]))
print("ready", flush=True)
i = 0
while True:
    pid, a, b = pairs[i % len(pairs)]
    kind = i % 3
    if kind == 0:
        print("L", record_label(project, pid, a, b, ("left", "right", "tie")[(i // 3) % 3], duration_ms=i), flush=True)
    elif kind == 1:
        ids = record_labels(project, pid, b, a, {"helpful": "left", "harmless": "right"})
        print("G", ",".join(map(str, ids)), flush=True)
    else:
        r = edit_as_demonstration(project, pid, a, b, "left", f"edited text {i}")
        print("E", f"{r['demonstration_id']},{r['response_id']},{r['comparison_id']}", flush=True)
    i += 1
"""


def _run_and_kill(folder: Path, script: Path, delay: float) -> list[tuple[str, list[int]]]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE, env=env)
    lines: list[bytes] = []
    ready = threading.Event()

    def drain() -> None:  # keep the pipe empty so the worker never blocks on print
        for line in proc.stdout:
            lines.append(line)
            ready.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    assert ready.wait(60), "the worker did not start"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    reader.join(30)
    reported = []
    for line in lines:
        if not line.endswith(b"\n") or line.startswith(b"ready"):
            continue  # a line cut by the kill was never fully reported
        kind, ids = line.decode().split()
        reported.append((kind, [int(x) for x in ids.split(",")]))
    return reported


def _check_whole(project: Project, reported: list[tuple[str, list[int]]]) -> None:
    comparisons = {r["id"] for r in project.query("SELECT id FROM comparisons")}
    demos = {r["id"] for r in project.query("SELECT id FROM demonstrations")}
    responses = {r["id"] for r in project.query("SELECT id FROM responses")}
    for kind, ids in reported:
        if kind == "E":
            assert ids[0] in demos and ids[1] in responses and ids[2] in comparisons, (kind, ids)
        else:
            assert set(ids) <= comparisons, (kind, ids)
    assert project.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert project.conn.execute("PRAGMA foreign_key_check").fetchall() == []
    # no half of a two-criteria label
    halves = project.query("SELECT created_at, count(*) AS n FROM comparisons WHERE criterion != '' "
                           "GROUP BY left_id, right_id, created_at HAVING n != 2")
    assert halves == []
    # no half of an edit: each edited response has its comparison and its demonstration
    orphans = project.query(
        "SELECT r.id FROM responses r WHERE r.origin = 'edited' AND (NOT EXISTS "
        "(SELECT 1 FROM comparisons c WHERE c.left_id = r.id) OR NOT EXISTS "
        "(SELECT 1 FROM demonstrations d WHERE d.prompt_id = r.prompt_id AND d.text = r.text))")
    assert orphans == []
    assert project.counts()["demonstrations"] == project.query(
        "SELECT count(*) AS n FROM responses WHERE origin = 'edited'")[0]["n"]


def test_sigkill_at_random_moments_loses_no_committed_label(tmp_path):
    folder = tmp_path / "proj"
    with Project.create(folder) as project:
        add_prompts(project, [f"Prompt {i}: explain something." for i in range(5)])
        for prompt in list_prompts(project):
            add_response(project, prompt["id"], f"answer one to {prompt['id']}")
            add_response(project, prompt["id"], f"answer two to {prompt['id']}")
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    rng = random.Random(1234)
    all_reported = []
    for _ in range(4):
        reported = _run_and_kill(folder, script, rng.uniform(0.05, 0.6))
        assert reported, "the worker was killed before it reported any label"
        all_reported += reported
        with Project.open(folder) as project:  # reopening runs the integrity check too
            _check_whole(project, all_reported)
