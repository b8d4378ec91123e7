"""bench/loop.py end to end on the tiny model with a tiny budget, and the two example oracles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from oracles import ends_with_question, prefers_concise, prefers_question_to_user  # noqa: E402


def test_example_oracles():
    assert prefers_concise("p", "Short answer.", "A much longer answer than that.") == "a"
    assert prefers_concise("p", "one two three", "uno dos tres") == "tie"
    assert prefers_concise("p", "", "Something useful.") == "b"  # saying nothing is not concise
    assert ends_with_question("Does that help? ") and ends_with_question("Want more (yes/no?)**")
    assert not ends_with_question("Why? Because.")
    assert prefers_question_to_user("p", "Here it is.", "Here it is. Anything else?") == "b"
    assert prefers_question_to_user("p", "Why? Is it? Done.", "Why? Done.") == "a"
    assert prefers_question_to_user("p", "Done.", "Finished.") == "tie"


def test_loop_runs_end_to_end_on_the_tiny_model(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "loop.py"), "--oracle", "oracles:prefers_concise",
                           "--tiny", "--project", str(tmp_path / "loop")], capture_output=True, text=True,
                          timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["model"] == "tiny" and result["ppo_steps"] == 2
    assert sum(result["labels"].values()) >= 8  # every generated pair was judged
    assert result["rm_agreement"] is None or 0.0 <= result["rm_agreement"] <= 1.0
    assert 0.0 <= result["ci_low"] <= result["win_rate"] <= result["ci_high"] <= 1.0
    assert result["eval_prompts"] == 4
    assert set(result["times"]) == {"setup", "label", "reward_model", "ppo", "evaluate", "total"}
    from rlhf_desktop.store import runs
    from rlhf_desktop.store.project import Project

    with Project.open(tmp_path / "loop" / "project") as project:
        stages = [(r["stage"], r["status"]) for r in runs.list_runs(project)]
    assert stages == [("rm", "done"), ("ppo", "done")]
