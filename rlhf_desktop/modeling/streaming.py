"""Hooks into `model.generate`: per-row incremental text streaming for batches, and cancellation."""

from __future__ import annotations

from typing import Callable

import torch
from transformers.generation.stopping_criteria import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from rlhf_desktop.core.context import JobContext


def eos_ids(model, tokenizer) -> set[int]:
    """Every token id that ends a response (generation config's eos, which may be a list, and the tokenizer's)."""
    ids = model.generation_config.eos_token_id
    found = set(ids if isinstance(ids, (list, tuple)) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return found


def cut_at_eos(tokens: list[int], eos: set[int]) -> list[int]:
    """The tokens before the first end-of-sequence (pads follow it in a finished row)."""
    for i, tok in enumerate(tokens):
        if tok in eos:
            return tokens[:i]
    return tokens


class RowStreamer(BaseStreamer):
    """Decodes each row of a batch incrementally and calls `on_token(row, text_delta)` for new text.

    `generate` first puts the prompt ids (B, T), then one token per row per step (B,). A row stops
    streaming at its first eos; text ending in an incomplete UTF-8 character waits for the next token.
    The deltas of a row concatenate to `tokenizer.decode(row_tokens, skip_special_tokens=True)`.
    """

    def __init__(self, tokenizer, eos: set[int], on_token: Callable[[int, str], None]):
        self.tokenizer = tokenizer
        self.eos = eos
        self.on_token = on_token
        self.tokens: list[list[int]] = []
        self.sent: list[str] = []
        self.done: list[bool] = []
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # the prompt batch (B, T): only sizes the rows
            self._prompt_seen = True
            rows = value.shape[0] if value.dim() > 1 else 1
            self.tokens, self.sent, self.done = [[] for _ in range(rows)], [""] * rows, [False] * rows
            return
        for row, tok in enumerate(value.reshape(-1).tolist()):  # (B,) new tokens
            if self.done[row]:
                continue
            if tok in self.eos:
                self.done[row] = True
                continue
            self.tokens[row].append(tok)
            self._emit(row, final=False)

    def end(self) -> None:
        for row in range(len(self.tokens)):
            self._emit(row, final=True)

    def _emit(self, row: int, final: bool) -> None:
        text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):
            return  # an incomplete multi-byte character: wait for the rest
        if text.startswith(self.sent[row]) and len(text) > len(self.sent[row]):
            self.on_token(row, text[len(self.sent[row]):])
            self.sent[row] = text


class StopOnRequest(StoppingCriteria):
    """Ends every row once the job context asks to stop; blocks here while the job is paused."""

    def __init__(self, ctx: JobContext):
        self.ctx = ctx

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        self.ctx.wait_if_paused()
        return torch.full((input_ids.shape[0],), self.ctx.should_stop(), dtype=torch.bool, device=input_ids.device)
