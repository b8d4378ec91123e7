"""Generation: chat-template aware, n answers per prompt in one batched call, streamed, cancellable."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from rlhf_desktop.core.config import require
from rlhf_desktop.core.context import JobContext
from rlhf_desktop.core.errors import Cancelled

if TYPE_CHECKING:
    from rlhf_desktop.modeling.loading import LoadedModel

Prompt = str | list[dict]


@dataclass
class SamplingConfig:
    """How to sample answers."""

    temperature: float = field(default=0.7, metadata={
        "help": "0 picks the likeliest token (greedy, deterministic); higher is more varied"})
    top_p: float = field(default=0.9, metadata={
        "help": "sample only from the smallest set of tokens whose probability adds up to this (0-1]"})
    top_k: int = field(default=50, metadata={"help": "sample only from this many likeliest tokens (0: no limit)"})
    max_new_tokens: int = field(default=256, metadata={"help": "the longest answer, in tokens"})
    seed: int | None = field(default=None, metadata={
        "help": "random seed for reproducible sampling (empty: a new draw each time)"})
    repetition_penalty: float = field(default=1.0, metadata={"help": "above 1 discourages repeating tokens (1: off)"})

    def validate(self) -> None:
        require(self.temperature >= 0, "temperature", f"must be 0 or more, got {self.temperature}")
        require(0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p}")
        require(self.top_k >= 0, "top_k", f"must be 0 or more, got {self.top_k}")
        require(self.max_new_tokens >= 1, "max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")
        require(self.seed is None or self.seed >= 0, "seed", f"must be 0 or more, got {self.seed}")
        require(self.repetition_penalty > 0, "repetition_penalty", f"must be above 0, got {self.repetition_penalty}")


def _messages(prompt: Prompt, system_prompt: str | None) -> list[dict]:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system_prompt and not any(m.get("role") == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def format_prompt(tokenizer, prompt: Prompt, system_prompt: str | None = None) -> str:
    """The text the model sees: the chat template with the assistant turn opened, else the plain text."""
    messages = _messages(prompt, system_prompt)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(str(m.get("content", "")) for m in messages)


def _generation_config(model, sampling: SamplingConfig):
    """The model's generation config with our sampling settings (greedy when temperature is 0)."""
    gen = copy.deepcopy(model.generation_config)
    gen.max_new_tokens = sampling.max_new_tokens
    gen.max_length = None
    gen.num_return_sequences = 1
    gen.repetition_penalty = sampling.repetition_penalty
    gen.do_sample = sampling.temperature > 0
    if gen.do_sample:
        gen.temperature, gen.top_p, gen.top_k = sampling.temperature, sampling.top_p, sampling.top_k or None
    else:
        gen.temperature = gen.top_p = gen.top_k = None
    return gen


def generate(loaded: LoadedModel, prompts: list[Prompt], sampling: SamplingConfig, n: int = 1,
             on_token: Callable[[int, str], None] | None = None, ctx: JobContext | None = None,
             system_prompt: str | None = None) -> list[list[str]]:
    """Answer every prompt `n` times in ONE batched `model.generate`; result[i][j] is answer j to prompt i.

    Rows are prompt-major: row i*n + j is answer j to prompt i, and `on_token(row, text_delta)` gets
    each row's new text as it is produced. Raises Cancelled when `ctx` asks to stop.
    """
    import torch

    from rlhf_desktop.modeling.streaming import RowStreamer, StopOnRequest, cut_at_eos, eos_ids

    sampling.validate()
    require(n >= 1, "n", f"must be at least 1, got {n}")
    if not prompts:
        return []
    ctx = ctx or JobContext()
    ctx.check()
    model, tok = loaded.model, loaded.tokenizer
    texts = [format_prompt(tok, p, system_prompt) for p in prompts for _ in range(n)]
    tok.padding_side = "left"  # new tokens must follow every prompt directly
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=not getattr(tok, "chat_template", None))
    batch = batch.to(model.device)  # input_ids, attention_mask: (B, T), B = len(prompts) * n
    eos = eos_ids(model, tok)
    streamer = RowStreamer(tok, eos, on_token) if on_token is not None else None
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)  # seeds the CPU and every CUDA generator
    with torch.inference_mode():
        out = model.generate(**batch, generation_config=_generation_config(model, sampling), streamer=streamer,
                             stopping_criteria=[StopOnRequest(ctx)])
    if ctx.should_stop():
        raise Cancelled()
    new = out[:, batch["input_ids"].shape[1]:].tolist()  # (B, new tokens); host sync here
    answers = [tok.decode(cut_at_eos(row, eos), skip_special_tokens=True) for row in new]
    return [answers[i * n:(i + 1) * n] for i in range(len(prompts))]
