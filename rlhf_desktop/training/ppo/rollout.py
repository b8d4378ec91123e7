"""Rollouts: prompt encoding, left-padded batches, and a KV-cached sampler that also returns values.

Pitfalls (issue 5): SmolLM2's pad token is its EOS `<|im_end|>`, which also ends every chat turn inside
the prompt, so masks come from the prompt lengths (never `ids != pad_id`); prompts are left-padded with
position_ids = cumsum(mask) - 1; a response counts up to and including its first EOS.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf_desktop.training.ppo.core import response_mask, token_logprobs
from rlhf_desktop.training.ppo.policy import PolicyValueModel, position_ids_from_mask


def format_prompt(tokenizer, prompt: str) -> str:
    """The user prompt in the model's chat format, ready for the assistant's reply."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    return prompt


def encode_prompts(tokenizer, prompts: list[str], max_length: int) -> list[list[int]]:
    """Token ids of each formatted prompt, keeping the last `max_length` tokens of long ones."""
    texts = [format_prompt(tokenizer, p) for p in prompts]
    rows = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [list(r[-max_length:]) for r in rows]


def left_pad(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, P) ids and attention mask of left-padded rows; the mask comes from the lengths."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


@dataclass
class Rollout:
    """One batch of sampled responses. B prompts, P prompt width, R response width (<= response_length)."""

    prompt_ids: torch.Tensor  # (B, P) left-padded
    prompt_mask: torch.Tensor  # (B, P)
    tokens: torch.Tensor  # (B, R) sampled tokens, EOS (= pad) after the first EOS
    mask: torch.Tensor  # (B, R) bool, valid tokens incl. the first EOS
    logprobs: torch.Tensor  # (B, R) float32, log pi(token) at the sampling temperature
    values: torch.Tensor  # (B, R) float32, V(state before the token)

    @property
    def seq(self) -> torch.Tensor:
        """(B, P + R) prompt and response token ids."""
        return torch.cat([self.prompt_ids, self.tokens], dim=1)

    @property
    def seq_mask(self) -> torch.Tensor:
        """(B, P + R) attention mask: the prompt's, then the valid response tokens."""
        return torch.cat([self.prompt_mask, self.mask.long()], dim=1)

    @property
    def last_index(self) -> torch.Tensor:
        """(B,) index in `seq` of each response's last valid token (its EOS, or its last token)."""
        return self.prompt_ids.shape[1] + self.mask.long().sum(1) - 1


def sample_tokens(logits: torch.Tensor) -> torch.Tensor:
    """One token per row from softmax(logits) (B, V) by inverse CDF: one uniform draw per row.

    torch.multinomial draws an exponential per vocabulary entry, ~30x slower at 49k entries on a CPU.
    """
    cdf = torch.softmax(logits, dim=-1).cumsum(dim=-1)  # (B, V)
    u = torch.rand((logits.shape[0], 1), device=logits.device).clamp_min(1e-12) * cdf[:, -1:]
    return torch.searchsorted(cdf, u)[:, 0].clamp_max(logits.shape[-1] - 1)


@torch.no_grad()  # not inference_mode: the PPO epochs feed these tensors to autograd
def sample(policy: PolicyValueModel, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, max_new_tokens: int,
           temperature: float, eos_id: int, pad_id: int) -> Rollout:
    """Sample up to `max_new_tokens` per prompt with a KV cache, stopping when every row has hit EOS.

    Each decoding step's last hidden state gives the token's log-prob (at `temperature`) and the value
    of the state, so the rollout needs no separate policy or value forward pass afterwards.
    """
    from transformers import DynamicCache

    batch = prompt_ids.shape[0]
    device = prompt_ids.device
    cache = DynamicCache(config=policy.config)
    attn = prompt_mask
    positions = position_ids_from_mask(prompt_mask)
    out = policy.decoder(input_ids=prompt_ids, attention_mask=attn, position_ids=positions, cache=cache,
                         use_cache=True)
    hidden = out.last_hidden_state[:, -1:]  # (B, 1, H)
    next_pos = positions[:, -1:] + 1  # (B, 1)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    tokens, logprobs, values = [], [], []
    for step in range(max_new_tokens):
        logits = policy.lm_head(hidden).float()[:, 0] / temperature  # (B, V)
        token = sample_tokens(logits)  # (B,)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        tokens.append(token)
        logprobs.append(token_logprobs(logits, token))
        values.append(policy.values(hidden)[:, 0])
        done = done | (token == eos_id)
        if step + 1 == max_new_tokens or bool(done.all()):  # host sync: one bool per token
            break
        attn = torch.cat([attn, torch.ones((batch, 1), dtype=attn.dtype, device=device)], dim=1)
        out = policy.decoder(input_ids=token[:, None], attention_mask=attn, position_ids=next_pos, cache=cache,
                             use_cache=True)
        hidden = out.last_hidden_state
        next_pos = next_pos + 1
    token_tensor = torch.stack(tokens, dim=1)  # (B, R)
    mask = response_mask(token_tensor, eos_id)
    return Rollout(prompt_ids, prompt_mask, token_tensor, mask, torch.stack(logprobs, dim=1),
                   torch.stack(values, dim=1) * mask)


def decode_responses(tokenizer, rollout: Rollout) -> list[str]:
    """Each response's text up to its first EOS (the EOS itself left out)."""
    texts = []
    for row, row_mask in zip(rollout.tokens.tolist(), rollout.mask.tolist()):
        kept = [t for t, m in zip(row, row_mask) if m]
        texts.append(tokenizer.decode(kept, skip_special_tokens=True))
    return texts
