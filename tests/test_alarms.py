"""Reward-hacking and instability alarms on synthetic metric streams (no Qt)."""

from __future__ import annotations

import math

import pytest

from rlhf_desktop.core.errors import ConfigError
from rlhf_desktop.training.alarms import KINDS, AlarmConfig, AlarmMonitor, synthetic_ppo_rows


def scan(rows, config=None, max_length=256.0):
    monitor = AlarmMonitor(config or AlarmConfig(), max_length=max_length)
    return monitor.scan((step, metrics) for step, _wall, metrics in rows)


def steady(n, **metrics):
    """n rows of constant metrics (a flat, healthy stream to perturb)."""
    base = {"objective/kl": 2.0, "objective/scores": 0.5, "completions/mean_length": 40.0,
            "objective/entropy": 30.0, "val/ratio": 1.0, "loss": 0.5}
    base.update(metrics)
    return [(i, 0.0, dict(base)) for i in range(1, n + 1)]


def test_clean_stream_is_silent():
    assert scan(synthetic_ppo_rows(10_000, "clean")) == []


def test_length_hacking_stream_fires_the_length_alarm_once():
    rows = synthetic_ppo_rows(10_000, "length_hacking")
    alarms = scan(rows)
    assert [a.kind for a in alarms] == ["length_hacking"]
    onset = 10_000 // 3
    assert onset < alarms[0].step < onset + 100  # within a few windows of the ramp's start
    assert alarms[0].metric == "response_length"
    assert alarms[0].action == "warn"


def test_kl_spike_stream_fires_spike_and_threshold_alarms_at_the_spike():
    alarms = scan(synthetic_ppo_rows(10_000, "kl_spike"))
    assert sorted(a.kind for a in alarms) == ["kl_high", "kl_spike"]
    assert {a.step for a in alarms} == {6001}  # the spike is at 60% of the run (rows 6000-6002, steps 6001-6003)
    assert all(a.metric == "objective/kl" and a.value == 40.0 for a in alarms)


def test_steadily_rising_kl_is_not_a_spike():
    rows = [(i, 0.0, {"objective/kl": 0.05 * i}) for i in range(1, 300)]  # 0 -> 15 nats, no noise
    assert scan(rows) == []


def test_negative_kl_needs_consecutive_steps():
    rows = steady(20)
    rows[5][2]["objective/kl"] = -0.5  # one noisy step: silent
    for i in (10, 11, 12):
        rows[i][2]["objective/kl"] = -0.5
    alarms = scan(rows)
    assert [(a.kind, a.step) for a in alarms] == [("kl_negative", 13)]


def test_ratio_far_from_one():
    rows = steady(20)
    rows[7][2]["val/ratio"] = 1.6
    alarms = scan(rows)
    assert [(a.kind, a.step, a.severity) for a in alarms] == [("ratio_far", 8, "critical")]
    assert scan(steady(20, **{"val/ratio": 0.7})) == []  # 1/1.5 = 0.667 < 0.7
    assert [a.kind for a in scan(steady(20, **{"val/ratio": 0.6}))] == ["ratio_far"]


def test_entropy_collapse_against_the_early_baseline():
    rows = steady(40)
    for i in range(25, 40):
        rows[i][2]["objective/entropy"] = 5.0  # under 20% of the baseline 30
    alarms = scan(rows)
    assert [(a.kind, a.step) for a in alarms] == [("entropy_collapse", 26)]


def test_length_pinned_at_the_maximum_and_without_eos():
    rows = steady(30, **{"completions/mean_length": 63.0})
    alarms = scan(rows, max_length=64)
    assert [(a.kind, a.step) for a in alarms] == [("length_pinned", 10)]
    assert scan(rows, max_length=128) == []
    no_eos = steady(30, **{"val/num_eos_tokens": 0.0})
    assert [(a.kind, a.step) for a in scan(no_eos, max_length=None)] == [("length_pinned", 10)]


def test_non_finite_pauses_by_default():
    rows = steady(5)
    rows[2][2]["loss"] = math.nan
    alarms = scan(rows)
    assert [(a.kind, a.step, a.action) for a in alarms] == [("non_finite", 3, "pause")]


def test_an_alarm_rearms_only_after_its_condition_cleared():
    config = AlarmConfig(rearm_steps=5)
    rows = steady(40)
    for i in (3, 4, 6, 20):  # 3-4 and 6: one episode (cleared only 1 step); 20: after 13 clear steps
        rows[i][2]["val/ratio"] = 3.0
    assert [a.step for a in scan(rows, config)] == [4, 21]


def test_config_actions_and_validation():
    config = AlarmConfig.from_dict({"kl_max": 5.0, "actions": {"kl_high": "pause"}, "from_a_newer_version": 1})
    assert config.kl_max == 5.0
    assert config.actions["kl_high"] == "pause" and config.actions["length_hacking"] == "warn"
    assert set(config.actions) == set(KINDS)
    alarms = scan(steady(5, **{"objective/kl": 6.0}), config)
    assert [(a.kind, a.action) for a in alarms] == [("kl_high", "pause")]
    assert AlarmConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError) as err:
        AlarmConfig.from_dict({"ratio_factor": 0.5})
    assert err.value.where == "alarms.ratio_factor"
    with pytest.raises(ConfigError):
        AlarmConfig.from_dict({"actions": {"kl_high": "explode"}})


def test_cli_checks_a_stored_run_with_the_projects_settings(project):
    import json
    import subprocess
    import sys

    from rlhf_desktop.store import runs as run_store

    run_id = run_store.create_run(project, "ppo", {"response_length": 256}, "base")
    run_store.add_metrics(project, run_id, synthetic_ppo_rows(600, "kl_spike"))
    project.set_setting("alarms", {"actions": {"kl_spike": "pause"}})
    done = subprocess.run([sys.executable, "-m", "rlhf_desktop", "alarms", "--project", str(project.folder),
                           "--run", str(run_id)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["steps_checked"] == 600
    assert {(a["kind"], a["step"], a["action"]) for a in out["alarms"]} == {("kl_high", 361, "warn"),
                                                                           ("kl_spike", 361, "pause")}
    assert "[pause] step 361: KL spike" in done.stderr
    missing = subprocess.run([sys.executable, "-m", "rlhf_desktop", "alarms", "--project", str(project.folder),
                              "--run", "999"], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no run 999" in missing.stderr
