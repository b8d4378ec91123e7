"""Tokenizer and generation-config conventions shared by loading, conversion and generation."""

from __future__ import annotations


def prepare_tokenizer(tokenizer):
    """Left padding (batched generation) and a pad token (eos when the tokenizer has none)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def align_generation_config(model, tokenizer) -> None:
    """Generation needs a pad and an eos id; take them from the tokenizer when the model has none."""
    gen = getattr(model, "generation_config", None)
    if gen is None:
        return
    if gen.eos_token_id is None:
        gen.eos_token_id = tokenizer.eos_token_id
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can be pages long)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
