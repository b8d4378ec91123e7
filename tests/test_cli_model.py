"""`rlhf-desktop generate` through a real subprocess: tiny model, the real default, bad paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")  # app_dirs' cache/data vars are inherited
    return subprocess.run([sys.executable, "-m", "rlhf_desktop", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


def _one_clean_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.startswith("rlhf-desktop: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_generate_with_tiny_model_prints_json_answers(tiny_model_dir):
    result = run_cli("generate", "--model", str(tiny_model_dir), "--prompt", "hi", "--n", "3",
                     "--temperature", "0", "--max-new-tokens", "5", "--repetition-penalty", "5", "--json")
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert isinstance(answers, list) and len(answers) == 3 and len(set(answers)) == 1 and answers[0]


def test_generate_numbers_answers_when_n_is_above_one(tiny_model_dir):
    result = run_cli("generate", "--model", str(tiny_model_dir), "--prompt", "hi", "--n", "2",
                     "--max-new-tokens", "4", "--seed", "1", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[1] ") and "\n\n[2] " in result.stdout
    assert "tiny-model" in result.stderr and "cpu" in result.stderr  # the model and device are shown


def test_generate_with_the_default_model_answers_about_cake(default_model_path):
    result = run_cli("generate", "--model", "default", "--prompt", "How do I make a cake?",
                     "--temperature", "0", "--max-new-tokens", "24")
    assert result.returncode == 0, result.stderr
    assert "cake" in result.stdout.lower()
    assert "converting" not in result.stderr  # already converted by the fixture: loaded from the cache


def test_missing_path_is_one_clean_error(tmp_path):
    line = _one_clean_error_line(run_cli("generate", "--model", str(tmp_path / "nope"), "--prompt", "hi"))
    assert "no such file or folder" in line and str(tmp_path / "nope") in line


def test_folder_that_is_not_a_model_is_one_clean_error(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    line = _one_clean_error_line(run_cli("generate", "--model", str(tmp_path), "--prompt", "hi"))
    assert "missing config.json" in line and "notes.txt" in line


def test_bad_sampling_and_device_are_one_clean_error(tiny_model_dir):
    line = _one_clean_error_line(run_cli("generate", "--model", str(tiny_model_dir), "--prompt", "hi",
                                         "--temperature", "-1"))
    assert "temperature" in line
    line = _one_clean_error_line(run_cli("generate", "--model", str(tiny_model_dir), "--prompt", "hi",
                                         "--device", "tpu"))
    assert "device" in line
    line = _one_clean_error_line(run_cli("generate", "--model", str(tiny_model_dir), "--prompt", "hi",
                                         "--n", "many"))
    assert "--n" in line
