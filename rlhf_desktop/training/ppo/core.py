"""PPO's arithmetic as pure tensor functions: masked statistics, KL estimators, GAE, the clipped losses.

Shapes: B responses, R response positions. `mask` is 1 (or True) on a response's valid tokens: every
token up to and including its first EOS (issue 5: the policy must learn to stop, and the score is read
at the EOS). Definitions follow TRL's experimental PPOTrainer and CleanRL's ppo.py.
"""

from __future__ import annotations

import math

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `values` over the positions where `mask` is set (per row when `dim` is given)."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over the masked positions; Bessel-corrected like TRL when `unbiased`."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        count = mask.to(values.dtype).sum()
        if count > 1:
            var = var * count / (count - 1)
    return var


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(values - mean) / std over the masked positions; `shift_mean=False` keeps the mean (reward whitening)."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token KL(policy || reference) from sampled tokens' log-probs (http://joschu.net/blog/kl-approx.html).

    k1 = log p - log q (unbiased, can be negative); k3 = (r - 1) - log r with r = q / p (unbiased, >= 0).
    """
    log_ratio = ref_logprobs - logprobs  # log r, (B, R)
    if estimator == "k1":
        return -log_ratio
    if estimator == "k3":
        return torch.expm1(log_ratio) - log_ratio
    raise ValueError(f"kl estimator must be 'k1' or 'k3', not {estimator!r}")


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over (B, R); returns (advantages, returns).

    `values` must be 0 after each response's last valid token, so the last valid step bootstraps from 0
    (the episode ends there) and padding contributes nothing.
    """
    length = rewards.shape[1]
    last = torch.zeros_like(rewards[:, 0])
    advantages = torch.empty_like(rewards)
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    return advantages, advantages + values


def policy_loss(new_logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, cliprange: float) -> dict[str, torch.Tensor]:
    """PPO's clipped surrogate: mean over valid tokens of max(-A r, -A clip(r, 1 - eps, 1 + eps)).

    Also returns the clip fraction, the approximate KL 0.5 E[(log r)^2] and the mean ratio (TRL's stats).
    """
    log_ratio = new_logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    losses = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(losses, clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > losses).to(ratio.dtype), mask)
        approxkl = 0.5 * masked_mean(log_ratio.detach() ** 2, mask)
        ratio_mean = masked_mean(ratio.detach(), mask)
    return {"loss": loss, "clipfrac": clipfrac, "approxkl": approxkl, "ratio": ratio_mean}


def value_loss(new_values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, cliprange_value: float) -> dict[str, torch.Tensor]:
    """Clipped value loss: 0.5 * mean over valid tokens of max((v - R)^2, (clip(v, v_old +- eps) - R)^2)."""
    clipped_values = torch.clamp(new_values, old_values - cliprange_value, old_values + cliprange_value)
    losses = (new_values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(losses, clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > losses).to(losses.dtype), mask)
    return {"loss": loss, "clipfrac": clipfrac}


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution at each position: logsumexp(l) - sum softmax(l) * l."""
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] without materialising the whole log-softmax: (B, R, V), (B, R) -> (B, R)."""
    picked = torch.gather(logits, -1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def response_mask(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    """(B, R) bool: True up to and including each row's first EOS (all True for a row without one)."""
    is_eos = (tokens == eos_id).int()
    after_first = (torch.cumsum(is_eos, dim=1) - is_eos) > 0  # strictly after the first EOS
    return ~after_first


class AdaptiveKLController:
    """Ziegler et al. (2019): move the KL coefficient so the measured KL tracks `target` over `horizon` episodes."""

    def __init__(self, init_kl_coef: float, target: float | None, horizon: int):
        self.value = float(init_kl_coef)
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_episodes: int) -> None:
        if self.target is None or not math.isfinite(current_kl):
            return
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_episodes / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])
