"""`rlhf-desktop generate-pairs` through a real subprocess on a tiny model folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "rlhf_desktop", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_generate_pairs_prints_a_summary_and_stores_pairs(tmp_path, tiny_model_dir):
    from rlhf_desktop.modeling.pairs import pending_pairs
    from rlhf_desktop.store import Project
    from rlhf_desktop.store.prompts import add_prompts

    folder = tmp_path / "proj"
    with Project.create(folder) as project:
        add_prompts(project, [f"Tell me about topic {i}." for i in range(5)], split="train")
    done = _run("generate-pairs", "--project", str(folder), "--count", "3", "--model", str(tiny_model_dir),
                "--max-new-tokens", "6", "--seed", "1")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["pairs"] == 3 and summary["responses"] == 6
    assert summary["model"] == tiny_model_dir.name and summary["max_new_tokens"] == 6
    with Project.open(folder) as project:
        assert project.counts()["responses"] == 6 and project.counts()["comparisons"] == 0
        assert len(pending_pairs(project, summary["model"])) == 3


def test_generate_pairs_without_prompts_or_with_bad_count_fails_cleanly(tmp_path, tiny_model_dir):
    from rlhf_desktop.store import Project

    folder = tmp_path / "empty"
    Project.create(folder).close()
    done = _run("generate-pairs", "--project", str(folder), "--count", "2", "--model", str(tiny_model_dir))
    assert done.returncode == 2
    assert "no train prompts" in done.stderr and "Traceback" not in done.stderr
    done = _run("generate-pairs", "--project", str(folder), "--count", "0", "--model", str(tiny_model_dir))
    assert done.returncode == 2 and "--count" in done.stderr
