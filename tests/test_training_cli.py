"""`rlhf-desktop train` and `runs` through real subprocesses, including Ctrl+C and a two-process launch."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from rlhf_desktop.store import runs
from rlhf_desktop.store.project import Project
from rlhf_desktop.training.common import read_metadata
from test_training_support import seed_preferences

FAST = ["--set", "device=cpu", "--set", "max_length=160", "--set", "save_every=2"]


def _env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _cli(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "rlhf_desktop", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=_env())


def _last_json(stdout: str):
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture
def proj(project):
    seed_preferences(project, n=16, heldout_every=4)
    return project


def test_train_rm_prints_json_last_and_runs_lists_it(proj, tiny_model_dir):
    done = _cli("train", "rm", "--project", proj.folder, "--model", tiny_model_dir, "--preset", "quick-cpu-demo",
                "--max-steps", 3, *FAST, "--name", "first rm")
    assert done.returncode == 0, done.stderr
    result = _last_json(done.stdout)
    assert (result["status"], result["steps"], result["world_size"]) == ("done", 3, 1)
    assert "eval_accuracy" in result["final_metrics"] and "step 3:" in done.stderr
    listed = _cli("runs", "--project", proj.folder)
    assert listed.returncode == 0, listed.stderr
    (run,) = json.loads(listed.stdout)
    assert (run["id"], run["stage"], run["name"], run["status"]) == (result["run_id"], "rm", "first rm", "done")
    assert run["config"]["lora_r"] == 8  # from the preset
    assert [c["step"] for c in run["checkpoints"]] == [2, 3]
    one = _cli("runs", "--project", proj.folder, "--run", result["run_id"])
    assert json.loads(one.stdout)["lineage"] == [result["run_id"]] and json.loads(one.stdout)["metric_steps"] == 3


def test_bad_arguments_give_one_line_and_exit_2(proj, tiny_model_dir):
    bad = _cli("train", "sft", "--project", proj.folder, "--model", tiny_model_dir, "--set", "lora_r=many")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "lora_r" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    missing = _cli("runs", "--project", proj.folder, "--run", 42)
    assert missing.returncode == 2 and "no run 42" in missing.stderr


def test_ctrl_c_stops_cleanly_with_a_checkpoint(proj, tiny_model_dir):
    cmd = [sys.executable, "-m", "rlhf_desktop", "train", "sft", "--project", str(proj.folder), "--model",
           str(tiny_model_dir), "--max-steps", "500", "--set", "device=cpu", "--set", "save_every=1000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    killer = threading.Timer(240, proc.kill)  # never hang the suite
    killer.start()
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("step 2:"):
                proc.send_signal(signal.SIGINT)
                break
        stdout, rest = proc.communicate()
    finally:
        killer.cancel()
    assert proc.returncode == 0, "".join(lines) + rest
    result = _last_json(stdout)
    assert result["status"] == "stopped" and 2 <= result["steps"] < 500
    assert "stopping after this step" in rest
    assert read_metadata(result["checkpoint"])["step"] == result["steps"]
    with Project.open(proj.folder) as project:
        assert runs.get_run(project, result["run_id"])["status"] == "stopped"
        assert runs.latest_checkpoint(project, result["run_id"])["step"] == result["steps"]


def test_train_rm_runs_on_two_processes_under_accelerate(proj, tiny_model_dir):
    with socket.socket() as probe:  # a free port: the default 29500 may be taken by another launch
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(port),
           "-m", "rlhf_desktop", "train", "rm", "--project", str(proj.folder), "--model", str(tiny_model_dir),
           "--max-steps", "2", *FAST]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0 of 2" in done.stderr and "rank 1 of 2" in done.stderr
    result = _last_json(done.stdout)
    assert (result["status"], result["steps"], result["world_size"]) == ("done", 2, 2)
    assert sum(line.startswith("{") for line in done.stdout.splitlines()) == 1  # rank 0 alone prints
    assert read_metadata(result["checkpoint"])["world_size"] == 2  # the Trainer itself saw two ranks
    with Project.open(proj.folder) as project:
        (run,) = runs.list_runs(project)  # rank 0 alone wrote the rows
        assert run["status"] == "done" and [c["step"] for c in runs.list_checkpoints(project, run["id"])] == [2]
        assert [m["step"] for m in runs.get_metrics(project, run["id"])] == [1, 2]
