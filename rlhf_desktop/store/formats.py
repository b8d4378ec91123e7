"""Text and chat-message conversions shared by the importers and exporters.

The store keeps a prompt as one text. A single user turn is stored as its content; a multi-turn
prompt (or one with a system message) is stored as an HH-style transcript,
`Human: ...\\n\\nAssistant: ...\\n\\nHuman: ...`, which `text_to_messages` turns back into messages.
"""

from __future__ import annotations

import re
from typing import Any

ROLE_NAMES = {"user": "Human", "assistant": "Assistant", "system": "System"}
NAME_ROLES = {v: k for k, v in ROLE_NAMES.items()}
_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant|System):[ \t]?")


class FormatError(ValueError):
    """A row does not have the shape its format needs; the message is the reason shown per line."""


def is_messages(value: Any) -> bool:
    """True for a non-empty list of {"role": str, "content": str} dicts (TRL's conversational form)."""
    return (isinstance(value, list) and bool(value) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in value))


def looks_like_transcript(text: Any) -> bool:
    """An HH-style transcript: starts with a Human (or System) turn and has an Assistant turn."""
    if not isinstance(text, str):
        return False
    head = text.lstrip("\n")
    return head.startswith(("Human:", "System:")) and "\n\nAssistant:" in head


def parse_transcript(text: str) -> list[dict[str, str]]:
    """`\\n\\nHuman: a\\n\\nAssistant: b` -> [{"role": "user", "content": "a"}, {"role": "assistant", ...}]."""
    head = text.lstrip("\n")
    marks = list(_TURN.finditer(head))
    if not marks or marks[0].start() != 0:
        raise FormatError("not an HH transcript (it must start with 'Human:')")
    turns = []
    for mark, nxt in zip(marks, marks[1:] + [None]):
        content = head[mark.end(): nxt.start() if nxt else len(head)]
        turns.append({"role": NAME_ROLES[mark.group(1)], "content": content.strip()})
    return turns


def messages_to_text(messages: list[dict[str, str]]) -> str:
    """The store's text for a prompt given as messages (one user turn -> its content)."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n\n".join(f"{ROLE_NAMES.get(m['role'], m['role'].title())}: {m['content']}" for m in messages)


def text_to_messages(text: str) -> list[dict[str, str]]:
    """The conversational prompt for a stored prompt text (a transcript is split back into turns)."""
    if text.lstrip("\n").startswith(("Human:", "System:")):
        turns = parse_transcript(text)
        if len(turns) >= 2:
            return turns
    return [{"role": "user", "content": text}]


def completion_text(messages: list[dict[str, str]], what: str) -> str:
    """The text of a completion given as messages: assistant turns only."""
    if not messages:
        raise FormatError(f"{what} has no reply after the shared prompt")
    roles = {m["role"] for m in messages}
    if roles != {"assistant"}:
        raise FormatError(f"{what} differs from the other side before its last assistant turn")
    return "\n\n".join(m["content"] for m in messages)


def split_shared_messages(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], str, str]:
    """Implicit prompt: the shared leading turns become the prompt, the rest the two completions."""
    shared = 0
    for a, b in zip(chosen, rejected):
        if a["role"] != b["role"] or a["content"] != b["content"]:
            break
        shared += 1
    # A shared trailing assistant turn would leave a side empty: the two must differ in their reply.
    while shared and chosen[shared - 1]["role"] == "assistant":
        shared -= 1
    prompt = [{"role": m["role"], "content": m["content"]} for m in chosen[:shared]]
    if not prompt:
        raise FormatError("chosen and rejected share no prompt turn")
    return prompt, completion_text(chosen[shared:], "chosen"), completion_text(rejected[shared:], "rejected")


def split_shared_text(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Implicit prompt in plain text: the shared prefix, cut back to a whitespace boundary."""
    limit = min(len(chosen), len(rejected))
    i = 0
    while i < limit and chosen[i] == rejected[i]:
        i += 1
    if i == len(chosen) and i == len(rejected):
        raise FormatError("chosen and rejected are identical")
    cut = i
    while cut > 0 and not chosen[cut - 1].isspace():  # never split a word between prompt and reply
        cut -= 1
    if cut == 0:
        raise FormatError("chosen and rejected share no prompt (no common prefix); add a prompt column")
    return chosen[:cut], chosen[cut:], rejected[cut:]


def to_messages(value: Any, what: str) -> list[dict[str, str]]:
    """Messages as given, or one user turn for plain text."""
    if is_messages(value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    raise FormatError(f"{what} must be text or a list of {{role, content}} messages, got {type(value).__name__}")
