"""Arena statistics, the length-controlled win rate and arena sessions in a real project store."""

from __future__ import annotations

import math

import pytest

from rlhf_desktop.core.errors import DataError
from rlhf_desktop.store.labels import label_stats
from rlhf_desktop.store.prompts import add_prompts, list_prompts
from rlhf_desktop.training.evaluation import (arena_stats, create_session, length_controlled_win_rate, record_vote,
                                              session_results, session_votes, store_answers, wilson_interval)


def test_wilson_interval_matches_hand_computed_values():
    # 6/12: p = 0.5, centre 0.5, half-width 1.96 * sqrt(0.25/12 + 1.96^2/576) / (1 + 1.96^2/12) = 0.246218
    assert wilson_interval(6, 12) == pytest.approx((0.253782, 0.746218), abs=1e-6)
    assert wilson_interval(6, 9) == pytest.approx((0.354202, 0.879416), abs=1e-6)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_arena_stats_on_a_synthetic_vote_set():
    votes = ["a"] * 6 + ["b"] * 3 + ["tie"] * 2 + ["both_bad"] + ["skipped"] * 2
    stats = arena_stats(votes)
    assert stats["n"] == 12  # skips are not judged
    assert stats["win"]["rate"] == pytest.approx(0.5) and stats["win"]["count"] == 6
    assert (stats["win"]["ci_low"], stats["win"]["ci_high"]) == pytest.approx((0.253782, 0.746218), abs=1e-6)
    assert stats["loss"]["rate"] == pytest.approx(0.25)
    assert stats["tie"]["rate"] == pytest.approx(2 / 12) and stats["both_bad"]["rate"] == pytest.approx(1 / 12)
    assert stats["win_rate"]["rate"] == pytest.approx((6 + 1.5) / 12)  # a tie or both-bad counts half
    assert stats["decisive_win_rate"]["rate"] == pytest.approx(6 / 9)
    assert (stats["decisive_win_rate"]["ci_low"], stats["decisive_win_rate"]["ci_high"]) == \
        pytest.approx((0.354202, 0.879416), abs=1e-6)
    assert arena_stats([])["win"]["rate"] is None


def test_length_controlled_win_rate_removes_a_length_effect():
    # Longer A (+10 chars): A wins 6 of 8. Shorter A (-10 chars): A wins 1 of 4. The saturated fit gives
    # logit = b0 +- b1*t with b0 = (logit(3/4) + logit(1/4)) / 2 = 0: no preference once length is equal.
    votes = ["a"] * 6 + ["b"] * 2 + ["a"] + ["b"] * 3
    len_a, len_b = [110] * 8 + [100] * 4, [100] * 8 + [110] * 4
    lc = length_controlled_win_rate(votes, len_a, len_b)
    assert arena_stats(votes)["win_rate"]["rate"] == pytest.approx(7 / 12)
    assert lc["lc_win_rate"] == pytest.approx(0.5, abs=1e-4) and lc["converged"]
    scale = math.sqrt((8 * (10 - 10 / 3) ** 2 + 4 * (-10 - 10 / 3) ** 2) / 12)
    assert lc["scale"] == pytest.approx(scale)
    assert lc["length_coef"] == pytest.approx(math.log(3) / math.tanh(10 / scale), rel=1e-3)
    assert lc["ci_low"] < 0.5 < lc["ci_high"]


def test_length_controlled_win_rate_without_length_differences_is_the_plain_rate():
    lc = length_controlled_win_rate(["a", "a", "a", "b", "tie"], [5] * 5, [5] * 5)
    assert lc["lc_win_rate"] == pytest.approx(0.7, abs=1e-4)  # (3 + 0.5) / 5
    b0, se = math.log(0.7 / 0.3), 1 / math.sqrt(5 * 0.7 * 0.3)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert (lc["ci_low"], lc["ci_high"]) == pytest.approx((sig(b0 - 1.959964 * se), sig(b0 + 1.959964 * se)),
                                                          abs=1e-4)


def test_separable_votes_stay_finite():
    lc = length_controlled_win_rate(["a"] * 10, list(range(10)), [0] * 10)
    assert 0.99 < lc["lc_win_rate"] <= 1.0 and math.isfinite(lc["length_coef"])


def test_arena_session_votes_are_comparisons_seen_from_a(project):
    add_prompts(project, ["p one", "p two", "p three", "p four"], split="heldout")
    prompts = [p["id"] for p in list_prompts(project)]
    sid = create_session(project, {"label": "base", "spec": "default"},
                         {"label": "run 3 step 20", "spec": "checkpoint:7", "checkpoint_id": 7}, "heldout")
    from rlhf_desktop.training.evaluation import get_session

    session = get_session(project, sid)
    ids = [store_answers(project, session, pid, f"answer A {i}", f"B{i}") for i, pid in enumerate(prompts)]
    # shown sides: A left, A right, A left, A right; outcomes as clicked on screen
    record_vote(project, prompts[0], ids[0][0], ids[0][1], "left")     # A wins
    record_vote(project, prompts[1], ids[1][1], ids[1][0], "left")     # B wins
    record_vote(project, prompts[2], ids[2][0], ids[2][1], "tie")
    record_vote(project, prompts[3], ids[3][1], ids[3][0], "right")    # A wins
    votes = session_votes(project, sid)
    assert [v["vote"] for v in votes] == ["a", "b", "tie", "a"]
    assert [v["a_left"] for v in votes] == [True, False, True, False]
    assert votes[0]["len_a"] == len("answer A 0") and votes[0]["len_b"] == 2
    results = session_results(project, sid)
    assert results["votes"] == 4 and results["stats"]["win"]["count"] == 2
    assert results["session"]["b"]["checkpoint_id"] == 7
    stats = label_stats(project, source="arena")
    assert stats["total"] == 4 and stats["by_strategy"] == {"arena": 4}
    row = project.query("SELECT origin, checkpoint_id, model FROM responses WHERE id = ?", [ids[0][1]])[0]
    assert row == {"origin": "arena", "checkpoint_id": 7, "model": "run 3 step 20"}
    with pytest.raises(DataError, match="no arena session"):
        session_results(project, "nope")
