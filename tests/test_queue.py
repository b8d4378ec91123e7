"""The candidate queue: a real worker thread, a real tiny model, a real project database."""

from __future__ import annotations

import json

import pytest

from rlhf_desktop.modeling.pairs import PairSettings, fill_pairs, same_text

WAIT_MS = 60_000


@pytest.fixture
def prompts(project):
    from rlhf_desktop.store.prompts import add_prompts

    add_prompts(project, [f"Explain idea {i} briefly." for i in range(12)], split="train")
    return project


@pytest.fixture
def queue(qtbot):
    from rlhf_desktop.ui.candidate_queue import CandidateQueue

    q = CandidateQueue()
    yield q
    assert q.stop()


def _pairs_are_whole(project) -> None:
    """Every stored response has exactly one partner with the same pair key (nothing half written)."""
    keys = [json.loads(r["gen_config"]).get("pair") for r in project.query("SELECT gen_config FROM responses")]
    assert all(keys.count(k) == 2 for k in keys)


def test_queue_fills_to_depth_and_refills_after_pop(qtbot, queue, prompts, tiny):
    queue.configure(prompts.folder, tiny, PairSettings(max_new_tokens=6, queue_depth=3, prompts_per_batch=1))
    qtbot.waitUntil(lambda: queue.depth() == 3 and queue.status == "ready", timeout=WAIT_MS)
    first = queue.pop()
    assert first is not None and queue.depth() == 2
    assert not same_text(first.left_text, first.right_text)
    qtbot.waitUntil(lambda: queue.depth() == 3, timeout=WAIT_MS)
    held = [queue.pop() for _ in range(3)]
    assert len({p.prompt_id for p in [first, *held]}) == 4  # no prompt twice while others have fewer labels
    qtbot.waitUntil(lambda: queue.depth() == 3, timeout=WAIT_MS)
    assert queue.stop() and not queue.running
    prompts_count = prompts.counts()["responses"]
    assert prompts_count == 2 * 7  # 3 + 1 + 3 refills, both candidates each; no more after stop
    _pairs_are_whole(prompts)


def test_queue_generates_whole_batches_and_may_end_above_depth(qtbot, queue, prompts, tiny):
    queue.configure(prompts.folder, tiny, PairSettings(max_new_tokens=6, queue_depth=3, prompts_per_batch=2))
    qtbot.waitUntil(lambda: queue.status == "ready", timeout=WAIT_MS)
    assert queue.depth() == 4  # 2, still below 3, then 2 more
    queue.pop()
    queue.pop()  # 2 left: below depth, one more batch of 2
    qtbot.waitUntil(lambda: queue.depth() == 4 and queue.status == "ready", timeout=WAIT_MS)
    assert prompts.counts()["responses"] == 2 * 6
    _pairs_are_whole(prompts)


def test_queue_regenerates_identical_pairs(qtbot, queue, prompts, tiny):
    # Greedy decoding makes both candidates identical: every pair must have been regenerated.
    queue.configure(prompts.folder, tiny, PairSettings(max_new_tokens=6, temperature=0.0, queue_depth=2,
                                                       prompts_per_batch=2))
    qtbot.waitUntil(lambda: queue.depth() == 2, timeout=WAIT_MS)
    for pair in (queue.pop(), queue.pop()):
        assert not same_text(pair.left_text, pair.right_text)
    configs = [json.loads(r["gen_config"]) for r in prompts.query("SELECT gen_config FROM responses")]
    assert sum(1 for c in configs if c.get("regenerated")) >= 2


def test_queue_serves_stored_unlabeled_pairs_first(qtbot, queue, prompts, tiny):
    made = []
    fill_pairs(prompts, tiny, 5, PairSettings(max_new_tokens=6), seed=4, on_pair=made.append)
    queue.configure(prompts.folder, tiny, PairSettings(max_new_tokens=6, queue_depth=2, prompts_per_batch=1))
    qtbot.waitUntil(lambda: queue.depth() == 2 and queue.status == "ready", timeout=WAIT_MS)
    served = [queue.pop() for _ in range(2)]
    qtbot.waitUntil(lambda: queue.depth() == 2 and queue.status == "ready", timeout=WAIT_MS)
    served += [queue.pop() for _ in range(2)]
    qtbot.waitUntil(lambda: queue.depth() == 2 and queue.status == "ready", timeout=WAIT_MS)
    assert prompts.counts()["responses"] == 2 * 5 + 2 * 1  # the last stored pair, then one new pair
    served.append(queue.pop())
    assert sorted(p.pair_key for p in served) == sorted(p.pair_key for p in made)  # each once


def test_queue_pauses_when_the_operator_is_idle(qtbot, queue, prompts, tiny):
    queue.configure(prompts.folder, tiny, PairSettings(max_new_tokens=6, queue_depth=2, idle_stop_s=1.0,
                                                       prompts_per_batch=1))
    qtbot.waitUntil(lambda: queue.depth() == 2, timeout=WAIT_MS)
    qtbot.wait(1500)  # nobody labels: idle from now on
    queue.pop()
    qtbot.waitUntil(lambda: queue.status == "paused: operator idle", timeout=WAIT_MS)
    qtbot.wait(500)
    assert queue.depth() == 1
    queue.note_activity()  # a label: generation resumes
    qtbot.waitUntil(lambda: queue.depth() == 2, timeout=WAIT_MS)


def test_model_change_restarts_with_the_new_model(qtbot, queue, prompts, tiny, tmp_path):
    from rlhf_desktop.modeling.loading import load_model
    from rlhf_desktop.modeling.tiny import make_tiny_model

    make_tiny_model(tmp_path / "other-tiny", seed=1)
    other = load_model(str(tmp_path / "other-tiny"))
    queue.configure(prompts.folder, tiny, PairSettings(max_new_tokens=6, queue_depth=2, prompts_per_batch=1))
    qtbot.waitUntil(lambda: queue.depth() == 2, timeout=WAIT_MS)
    queue.configure(prompts.folder, other, PairSettings(max_new_tokens=6, queue_depth=2, prompts_per_batch=1))
    assert queue.depth() == 0  # pairs of the old model left the deque (they stay stored)
    qtbot.waitUntil(lambda: queue.depth() == 2, timeout=WAIT_MS)
    assert {queue.pop().model, queue.pop().model} == {"other-tiny"}
    assert prompts.counts()["responses"] >= 8


def test_stop_interrupts_a_long_generation_without_half_pairs(qtbot, queue, prompts, tiny):
    queue.configure(prompts.folder, tiny, PairSettings(max_new_tokens=900, queue_depth=2, repetition_penalty=1.0))
    qtbot.waitUntil(lambda: queue.status == "generating", timeout=WAIT_MS)
    assert queue.stop(timeout_ms=30_000) and not queue.running
    # The first pair was cancelled mid generation: had it run to the end, it would have been stored.
    assert prompts.counts()["responses"] == 0
    qtbot.wait(300)
    assert prompts.counts()["responses"] == 0
