"""Tiny random models for tests and smoke runs: a Llama (SmolLM2's architecture) with 2 layers,
hidden size 32, and a byte-level tokenizer built in memory, so nothing is ever downloaded.

The tokenizer mirrors SmolLM2's quirks on purpose: a ChatML template, and the pad token is the
EOS token `<|im_end|>`, which also closes every chat turn.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, PreTrainedTokenizerFast

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def make_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 byte tokens + ChatML specials), no merges, no download."""
    byte_chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in byte_chars:
        vocab[ch] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS,
    )
    tok.chat_template = CHATML_TEMPLATE
    tok.padding_side = "left"
    return tok


def tiny_config(tokenizer: PreTrainedTokenizerFast, **overrides) -> LlamaConfig:
    values = dict(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    values.update(overrides)
    return LlamaConfig(**values)


def make_tiny_model(folder: str | Path | None = None, *, seed: int = 0, kind: str = "causal", **overrides):
    """Return (model, tokenizer) for a random tiny Llama; save both to `folder` when given.

    kind: "causal" (LlamaForCausalLM) or "seqcls" (a 1-label sequence-classification head).
    """
    torch.manual_seed(seed)
    tok = make_tiny_tokenizer()
    config = tiny_config(tok, **overrides)
    if kind == "seqcls":
        config.num_labels = 1
        model = LlamaForSequenceClassification(config)
    elif kind == "causal":
        model = LlamaForCausalLM(config)
        model.generation_config.pad_token_id = tok.pad_token_id
        model.generation_config.eos_token_id = tok.eos_token_id
    else:
        raise ValueError(f"kind must be 'causal' or 'seqcls', not {kind!r}")
    model.eval()
    if folder is not None:
        folder = Path(folder)
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
    return model, tok
