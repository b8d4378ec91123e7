"""Choosing pairs by reward-model uncertainty and by disagreement between two reward models."""

from __future__ import annotations

import math

import pytest

from rlhf_desktop.core.errors import ConfigError
from rlhf_desktop.modeling.pairs import PairSettings, pending_pairs
from rlhf_desktop.store.labels import label_stats, record_label
from rlhf_desktop.store.prompts import add_prompts
from rlhf_desktop.training.sampling_strategies import (RewardScorer, disagreement, fill_ranked_pairs,
                                                       preference_probability, rank_by_disagreement,
                                                       rank_by_uncertainty, rank_pairs, uncertainty)


def test_uncertainty_ranks_a_hand_made_set_of_pairs():
    # (r_a, r_b) -> |sigmoid(r_a - r_b) - 0.5|: 0.025, 0.453, 0.381, 0.0, 0.074
    scores = [(2.0, 2.1), (0.0, 3.0), (1.0, -1.0), (0.5, 0.5), (-0.3, 0.0)]
    assert uncertainty(2.0, 2.1) == pytest.approx(abs(1 / (1 + math.exp(0.1)) - 0.5))
    assert rank_by_uncertainty([a for a, _ in scores], [b for _, b in scores]) == [3, 0, 4, 2, 1]


def test_disagreement_ranks_pairs_the_two_models_order_differently_first():
    first = [(1.0, 0.0), (0.0, 0.0), (2.0, -2.0), (0.0, 1.0)]
    second = [(1.0, 0.0), (0.0, 2.0), (-2.0, 2.0), (0.0, 1.5)]
    # |P1 - P2|: 0, |0.5 - 0.119| = 0.381, |0.982 - 0.018| = 0.964, |0.269 - 0.182| = 0.087
    expected = preference_probability(4, 0) - preference_probability(0, 4)
    assert disagreement(first[2], second[2]) == pytest.approx(expected)
    assert rank_by_disagreement(first, second) == [2, 1, 3, 0]
    assert preference_probability(-800.0, 0.0) == pytest.approx(0.0)  # no overflow


class TableScorer:
    """A reward 'model' given as a table of response -> score (an input, like PPO's reward_fn)."""

    def __init__(self, table):
        self.table = table

    def pair_scores(self, pairs):
        return [(self.table(a), self.table(b)) for _, a, b in pairs]


def test_rank_pairs_needs_its_reward_models():
    pairs = [("p", "aa", "a"), ("p", "aaaa", "a")]
    ranked = rank_pairs(pairs, "uncertainty", [TableScorer(len)])
    assert [i for i, _ in ranked] == [0, 1]
    with pytest.raises(ConfigError, match="two reward models"):
        rank_pairs(pairs, "disagreement", [TableScorer(len)])
    with pytest.raises(ConfigError, match="needs a reward model"):
        rank_pairs(pairs, "uncertainty", [])


def test_fill_ranked_pairs_keeps_the_most_uncertain_and_labels_count_by_strategy(project, tiny_model_dir, tmp_path):
    from rlhf_desktop.modeling.loading import load_model
    from rlhf_desktop.modeling.tiny import make_tiny_model

    rm_dir = tmp_path / "rm"
    make_tiny_model(rm_dir, seed=3, kind="seqcls")  # a full (not LoRA) 1-label reward model folder
    scorer = RewardScorer(rm_dir)
    seen = []

    class Watching:  # sees the whole pool the real reward model scores
        def pair_scores(self, pairs):
            seen.extend(pairs)
            return scorer.pair_scores(pairs)

    add_prompts(project, [f"prompt number {i}" for i in range(6)], split="train")
    loaded = load_model(str(tiny_model_dir))
    settings = PairSettings(max_new_tokens=6, temperature=1.0, prompts_per_batch=6)
    kept = []
    report = fill_ranked_pairs(project, loaded, 2, settings, strategy="uncertainty", scorers=[Watching()],
                               pool_factor=3, seed=1, on_pair=kept.append)
    assert report.pairs == 2 and len(kept) == 2
    assert {p.strategy for p in kept} == {"uncertainty"}
    stored = pending_pairs(project)
    assert {p.pair_key for p in stored} == {p.pair_key for p in kept}  # the others were not stored
    assert len(seen) == 6  # 3 x 2 candidate pairs were generated and scored
    pool = sorted(seen, key=lambda pair: uncertainty(*scorer.pair_scores([pair])[0]))
    assert [{p.left_text, p.right_text} for p in kept] == [{a, b} for _, a, b in pool[:2]]  # the 2 most uncertain
    label = kept[0]
    record_label(project, label.prompt_id, label.left_id, label.right_id, "left", strategy=label.strategy)
    assert label_stats(project)["by_strategy"] == {"uncertainty": 1}
