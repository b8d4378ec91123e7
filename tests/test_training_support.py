"""Shared helpers for the training tests: a project seeded with labeled data through plain SQL."""

from __future__ import annotations

import hashlib
import random

import pytest
import torch

WORDS = "apple river stone cloud green quick table music paper light".split()


def _prompt(project, text: str, split: str) -> int:
    digest = hashlib.sha1(text.encode()).hexdigest()
    return int(project.execute("INSERT INTO prompts (text, text_hash, split) VALUES (?, ?, ?)",
                               (text, digest, split)).lastrowid)


def _response(project, prompt_id: int, text: str) -> int:
    return int(project.execute("INSERT INTO responses (prompt_id, text) VALUES (?, ?)", (prompt_id, text)).lastrowid)


def seed_preferences(project, n: int = 24, marker: str = "GOOD", heldout_every: int = 0, seed: int = 0,
                     demonstrations: int = 4) -> None:
    """n comparisons whose winner always ends with `marker` (shown left or right at random).

    Every `heldout_every`-th prompt goes to the held-out split (0: none). Strength 2 on every third.
    """
    rng = random.Random(seed)
    for i in range(n):
        split = "heldout" if heldout_every and i % heldout_every == 0 else "train"
        prompt_id = _prompt(project, f"question {i}: " + " ".join(rng.choice(WORDS) for _ in range(3)), split)
        body = " ".join(rng.choice(WORDS) for _ in range(4))
        good = _response(project, prompt_id, f"{body} {marker}")
        bad = _response(project, prompt_id, body)
        left_is_good = rng.random() < 0.5
        left, right = (good, bad) if left_is_good else (bad, good)
        project.execute("INSERT INTO comparisons (prompt_id, left_id, right_id, outcome, strength) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (prompt_id, left, right, "left" if left_is_good else "right", 2 if i % 3 == 0 else 1))
        if i < demonstrations:
            project.execute("INSERT INTO demonstrations (prompt_id, text) VALUES (?, ?)",
                            (prompt_id, f"a demonstration {body}"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models train faster on one thread than on two shared, oversubscribed cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
