"""Reward-model report statistics against hand-computed values, and scoring a real (tiny) reward model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rlhf_desktop.core.context import RecordingContext
from rlhf_desktop.core.errors import DataError
from rlhf_desktop.store import runs as run_store
from rlhf_desktop.training.rm_report import compute_report, heldout_pairs, report_for_run, wilson_interval


def test_wilson_interval_matches_published_values():
    low, high = wilson_interval(8, 10)  # the textbook example: 0.490 to 0.943
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


SC, SR = [2.0, 1.0, 0.0, 3.0], [1.0, 1.0, 1.0, 0.0]  # margins 1, 0 (a tie), -1, 3
LC, LR = [10.0, 20.0, 30.0, 40.0], [20.0, 20.0, 10.0, 10.0]  # length differences -10, 0, 20, 30


def test_report_against_hand_computed_values():
    rep = compute_report(SC, SR, LC, LR, calibration_bins=10, margin_bins=4, length_edges=[-50, -1, 1, 50])
    assert rep.n == 4 and rep.ties == 1
    assert rep.accuracy == pytest.approx(2.5 / 4)  # the tie counts half
    assert rep.mean_margin == pytest.approx(0.75)
    assert (rep.ci_low, rep.ci_high) == pytest.approx(wilson_interval(2.5, 4))
    # margin histogram over [-1, 3] in 4 bins: one margin in each
    assert rep.margin_edges == pytest.approx([-1, 0, 1, 2, 3]) and rep.margin_counts == [1, 1, 1, 1]
    # calibration: each pair both ways round; sigmoid(1) = 0.7311 lands in bin 7 once observed 1, once 0
    s1 = 1 / (1 + math.exp(-1))
    s3 = 1 / (1 + math.exp(-3))
    table = {round(b["low"], 1): (b["predicted"], b["observed"], b["count"]) for b in rep.calibration}
    assert table == {0.0: pytest.approx((1 - s3, 0.0, 1)), 0.2: pytest.approx((1 - s1, 0.5, 2)),
                     0.5: pytest.approx((0.5, 0.5, 2)), 0.7: pytest.approx((s1, 0.5, 2)),
                     0.9: pytest.approx((s3, 1.0, 1))}
    ece = (2 * abs(s1 - 0.5) + 2 * abs(1 - s1 - 0.5) + abs(s3 - 1) + abs(1 - s3)) / 8
    assert rep.ece == pytest.approx(ece)
    # accuracy by length difference: -10 -> right; 0 -> tie; 20 -> wrong, 30 -> right
    bins = [(b["low"], b["high"], b["accuracy"], b["count"]) for b in rep.length_bins]
    assert bins == [(-50, -1, 1.0, 1), (-1, 1, 0.5, 1), (1, 50, 0.5, 2)]
    assert rep.length_baseline == pytest.approx((0 + 0.5 + 1 + 1) / 4)
    expected_corr = np.corrcoef(LC + LR, SC + SR)[0, 1]
    assert rep.reward_length_corr == pytest.approx(expected_corr)
    assert rep.lengths == LC + LR and rep.rewards == SC + SR and rep.is_chosen == [True] * 4 + [False] * 4
    json.dumps(rep.to_dict())  # plain data all the way down


def test_findings_name_chance_level_and_length_bias():
    rng = np.random.default_rng(0)
    n = 400
    lc, lr = rng.integers(10, 200, n).astype(float), rng.integers(10, 200, n).astype(float)
    biased = compute_report(0.05 * lc + rng.normal(0, 0.5, n), 0.05 * lr + rng.normal(0, 0.5, n), lc, lr)
    text = " ".join(biased.findings)
    assert "length" in text and "ramble" in text
    assert biased.accuracy == pytest.approx(biased.length_baseline, abs=0.1)
    chance = compute_report([1.0, 0.0] * 10, [0.0, 1.0] * 10, [50.0] * 20, [50.0] * 20)  # half right
    assert chance.accuracy == 0.5
    assert any("not clearly better than chance" in f for f in chance.findings)
    assert any("Fewer than 50" in f for f in chance.findings)
    good = compute_report([1.0] * 60, [0.0] * 60, [50.0] * 60, [50.0] * 60)
    assert good.findings[0].endswith("better than chance.") and not any("Fewer" in f for f in good.findings)


def test_bad_inputs_are_data_errors():
    with pytest.raises(DataError):
        compute_report([1.0], [0.0, 1.0], [1.0], [1.0])
    with pytest.raises(DataError):
        compute_report([], [], [], [])


def _rm_run(project, tiny_seqcls_dir, held, train=(), config=None):
    """A reward-model run in the store as the runner leaves it: data.json and a full checkpoint."""
    run_id = run_store.create_run(project, "rm", config or {"eval_fraction": 0.1, "seed": 0}, str(tiny_seqcls_dir))
    folder = run_store.run_dir(project, run_id)
    folder.mkdir(parents=True)
    (folder / "data.json").write_text(json.dumps({"hash": "x", "data": {"train": list(train), "eval": list(held)}}))
    run_store.add_checkpoint(project, run_id, 10, tiny_seqcls_dir, kind="full")
    run_store.set_run_status(project, run_id, "done")
    return run_id


@pytest.fixture(scope="module")
def tiny_seqcls_dir(tmp_path_factory):
    from rlhf_desktop.modeling.tiny import make_tiny_model

    folder = tmp_path_factory.mktemp("tiny-rm")
    make_tiny_model(folder, kind="seqcls")
    return folder


PAIRS = [{"prompt": f"Question {i}?", "chosen": "yes " * (i + 1), "rejected": "no", "margin": 0.0} for i in range(6)]


def test_report_for_run_scores_the_runs_heldout_pairs(project, tiny_seqcls_dir):
    from rlhf_desktop.training.reward import load_reward_model, score

    run_id = _rm_run(project, tiny_seqcls_dir, PAIRS)
    ctx = RecordingContext()
    rep = report_for_run(ctx, project.folder, run_id)
    assert rep.n == len(PAIRS)
    model, tok = load_reward_model(tiny_seqcls_dir)
    prompts = [p["prompt"] for p in PAIRS]
    expected_c = score(model, tok, prompts, [p["chosen"] for p in PAIRS])
    expected_r = score(model, tok, prompts, [p["rejected"] for p in PAIRS])
    assert rep.rewards == pytest.approx(expected_c + expected_r, abs=1e-5)
    assert rep.lengths[:6] == [float(len(tok(p["chosen"], add_special_tokens=False)["input_ids"])) for p in PAIRS]
    assert "scoring 6 held-out pairs" in ctx.statuses
    assert any("held-out prompts" in f for f in rep.findings)


def test_heldout_pairs_reproduce_the_runs_seeded_split(project, tiny_seqcls_dir):
    from rlhf_desktop.training.reward import split_eval

    train = [{"prompt": f"p{i}", "chosen": "a", "rejected": "b", "margin": 0.0} for i in range(40)]
    run_id = _rm_run(project, tiny_seqcls_dir, [], train, {"eval_fraction": 0.25, "seed": 3})
    held, note = heldout_pairs(project, run_id)
    assert held == split_eval(train, 0.25, 3)[1] and len(held) == 10
    assert "seeded split" in note
    sft = run_store.create_run(project, "sft", {}, "base")
    with pytest.raises(DataError):
        heldout_pairs(project, sft)


def test_cli_prints_the_report(project, tiny_seqcls_dir):
    import subprocess
    import sys

    run_id = _rm_run(project, tiny_seqcls_dir, PAIRS)
    done = subprocess.run([sys.executable, "-m", "rlhf_desktop", "rm-report", "--project", str(project.folder),
                           "--run", str(run_id)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["run_id"] == run_id and out["n"] == 6 and 0.0 <= out["ci95"][0] <= out["accuracy"] <= out["ci95"][1]
    assert "Held-out accuracy" in done.stderr
