"""Simulated operators for bench/loop.py: oracle(prompt, response_a, response_b) -> "a", "b" or "tie".

Any function with this signature works: `python bench/loop.py --oracle mymodule:my_oracle`.
"""

from __future__ import annotations

import re


def prefers_concise(prompt: str, a: str, b: str) -> str:
    """The shorter answer (in words) wins; a tie when both have the same number of words.

    An empty answer never wins: saying nothing is not concise, it is unhelpful.
    """
    words_a, words_b = len(a.split()), len(b.split())
    if words_a == 0 or words_b == 0:
        return "tie" if words_a == words_b else ("b" if words_a == 0 else "a")
    if words_a == words_b:
        return "tie"
    return "a" if words_a < words_b else "b"


_TRAILING = re.compile(r"[\s\"')\]*_`]+$")


def ends_with_question(text: str) -> bool:
    """True when the answer's last character (quotes, brackets and markdown aside) is a question mark."""
    return _TRAILING.sub("", text).endswith("?")


def prefers_question_to_user(prompt: str, a: str, b: str) -> str:
    """The answer that ends by asking the user a question wins; otherwise the one with more question
    marks in its last 200 characters; a tie when that is equal too."""
    qa, qb = ends_with_question(a), ends_with_question(b)
    if qa != qb:
        return "a" if qa else "b"
    tail_a, tail_b = a[-200:].count("?"), b[-200:].count("?")
    if tail_a != tail_b:
        return "a" if tail_a > tail_b else "b"
    return "tie"
