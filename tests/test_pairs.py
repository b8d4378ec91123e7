"""Candidate pairs (modeling/pairs.py) with the tiny random model and a real project store."""

from __future__ import annotations

import json
import random

import pytest

from rlhf_desktop.core.context import JobContext
from rlhf_desktop.core.errors import Cancelled, ConfigError, DataError
from rlhf_desktop.modeling.pairs import (PairSettings, fewest_labels_random, fill_pairs, load_pair_settings,
                                         make_pair, make_pairs, pending_pairs, same_text, save_pair_settings)


@pytest.fixture
def prompts(project):
    from rlhf_desktop.store.prompts import add_prompts

    add_prompts(project, [f"Question number {i}?" for i in range(6)], split="train")
    add_prompts(project, ["A held-out question?"], split="heldout")
    return project


def test_same_text_ignores_whitespace_only():
    assert same_text("a  b\n", " a b")
    assert not same_text("a b", "a c")


def test_make_pair_gives_two_different_texts_in_one_call(tiny):
    pair = make_pair(tiny, "Say hi", PairSettings(max_new_tokens=12, temperature=1.0), seed=3)
    assert len(pair.texts) == 2 and not same_text(*pair.texts)
    assert pair.tries == 1
    assert pair.configs[0]["seed"] == 3 and pair.configs[0]["max_new_tokens"] == 12


def test_identical_greedy_pair_is_regenerated_with_sampling(tiny):
    # Greedy decoding gives the same text twice; the second candidate is regenerated with sampling.
    pair = make_pair(tiny, "Say hi", PairSettings(max_new_tokens=12, temperature=0.0), seed=5)
    assert not same_text(*pair.texts)
    assert pair.tries == 2
    assert pair.configs[0]["temperature"] == 0.0
    assert pair.configs[1]["temperature"] == 0.5 and pair.configs[1]["regenerated"] == 1


def test_pair_that_stays_identical_is_reported(tiny):
    # With a single allowed try there is no regeneration: the greedy pair cannot become different.
    settings = PairSettings(max_new_tokens=6, temperature=0.0, max_tries=1)
    assert make_pairs(tiny, ["Say hi"], settings, seed=1) == [None]
    with pytest.raises(DataError, match="identical"):
        make_pair(tiny, "Say hi", settings, seed=1)


def test_temperature_b_samples_the_second_side_differently(tiny):
    pair = make_pair(tiny, "Say hi", PairSettings(max_new_tokens=8, temperature=0.0, temperature_b=1.2), seed=2)
    assert pair.configs[0]["temperature"] == 0.0 and pair.configs[1]["temperature"] == 1.2


def test_fill_pairs_stores_pairs_for_train_prompts(prompts, tiny):
    seen = []
    report = fill_pairs(prompts, tiny, 4, PairSettings(max_new_tokens=8), seed=0, on_pair=seen.append)
    assert report.pairs == 4 and report.responses == 4 * 2 and len(seen) == 4
    heldout = prompts.query("SELECT id FROM prompts WHERE split = 'heldout'")[0]["id"]
    assert all(p.prompt_id != heldout for p in seen)
    assert len({p.prompt_id for p in seen}) == 4  # fewest labels first: no prompt twice
    rows = prompts.query("SELECT prompt_id, model, origin, gen_config FROM responses ORDER BY id")
    assert len(rows) == 8 and {r["origin"] for r in rows} == {"generated"}
    keys = [json.loads(r["gen_config"])["pair"] for r in rows]
    assert len(set(keys)) == 4 and all(keys.count(k) == 2 for k in keys)
    for pair in seen:
        texts = {r["id"]: r["text"] for r in prompts.query("SELECT id, text FROM responses")}
        assert texts[pair.left_id] == pair.left_text and texts[pair.right_id] == pair.right_text


def test_side_placement_is_randomized(prompts, tiny):
    seen = []
    fill_pairs(prompts, tiny, 6, PairSettings(max_new_tokens=4, prompts_per_batch=3), seed=1, on_pair=seen.append)
    # Responses are stored first-candidate first; a swapped pair shows the second one on the left.
    swapped = [p.left_id > p.right_id for p in seen]
    assert any(swapped) and not all(swapped)


def test_pending_pairs_survive_and_labeled_ones_leave(prompts, tiny):
    from rlhf_desktop.store.labels import record_label

    made = []
    fill_pairs(prompts, tiny, 3, PairSettings(max_new_tokens=4), seed=2, on_pair=made.append)
    pending = pending_pairs(prompts, tiny.name)
    assert {p.pair_key for p in pending} == {p.pair_key for p in made}
    assert pending_pairs(prompts, "another-model") == []
    first = made[0]
    record_label(prompts, first.prompt_id, first.left_id, first.right_id, "left")
    assert {p.pair_key for p in pending_pairs(prompts, tiny.name)} == {p.pair_key for p in made[1:]}
    assert len(pending_pairs(prompts, tiny.name, limit=1)) == 1
    assert [p.pair_key for p in pending_pairs(prompts, tiny.name, exclude_keys={made[1].pair_key})] == [
        made[2].pair_key]


def test_strategy_prefers_prompts_with_fewest_labels(prompts, tiny):
    from rlhf_desktop.store.labels import record_label

    made = []
    fill_pairs(prompts, tiny, 6, PairSettings(max_new_tokens=4), seed=3, on_pair=made.append)
    for pair in made[:5]:
        record_label(prompts, pair.prompt_id, pair.left_id, pair.right_id, "tie")
    # One prompt has a pending pair and no label; the five others have a label each: all equal load,
    # so excluding five leaves exactly the sixth.
    unlabeled = made[5].prompt_id
    others = {p.prompt_id for p in made[:5]}
    assert [pid for pid, _ in fewest_labels_random(prompts, 1, random.Random(0), others)] == [unlabeled]
    record_label(prompts, made[5].prompt_id, made[5].left_id, made[5].right_id, "left")
    extra = made[0]
    record_label(prompts, extra.prompt_id, extra.left_id, extra.right_id, "right")
    picked = [pid for pid, _ in fewest_labels_random(prompts, 5, random.Random(0), set())]
    assert extra.prompt_id not in picked and len(picked) == 5


def test_no_train_prompts_is_a_user_error(project, tiny):
    with pytest.raises(DataError, match="no train prompts"):
        fill_pairs(project, tiny, 1, PairSettings(max_new_tokens=4))


def test_fill_pairs_stops_when_asked(prompts, tiny):
    ctx = JobContext()
    ctx.request_stop()
    with pytest.raises(Cancelled):
        make_pairs(tiny, ["hi"], PairSettings(max_new_tokens=4), ctx=ctx)
    assert fill_pairs(prompts, tiny, 3, PairSettings(max_new_tokens=4), ctx=ctx).pairs == 0


def test_pair_settings_round_trip_and_validation(project):
    assert load_pair_settings(project) == PairSettings()
    save_pair_settings(project, PairSettings(max_new_tokens=64, queue_depth=3))
    assert load_pair_settings(project).max_new_tokens == 64
    project.set_setting("sampling", {"temperature": -1, "from_a_newer_version": 1})
    with pytest.raises(ConfigError, match="sampling.temperature"):
        load_pair_settings(project)
    with pytest.raises(ConfigError, match="strategy"):
        PairSettings(strategy="nope").validate()
