"""PPO's arithmetic against values computed by hand on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from rlhf_desktop.core.config import apply_overrides
from rlhf_desktop.core.errors import ConfigError
from rlhf_desktop.training.ppo import PPORunConfig
from rlhf_desktop.training.ppo.core import (AdaptiveKLController, entropy_from_logits, gae, kl_estimate,
                                            masked_mean, masked_var, masked_whiten, policy_loss, response_mask,
                                            token_logprobs, value_loss)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_gae_matches_hand_computation():
    rewards, values = t([0.0, 0.0, 1.0]), t([0.5, 0.2, 0.1])
    adv, ret = gae(rewards, values, gamma=1.0, lam=0.5)
    # t2: 1 - 0.1 = 0.9; t1: (0 + 0.1 - 0.2) + 0.5 * 0.9 = 0.35; t0: (0 + 0.2 - 0.5) + 0.5 * 0.35 = -0.125
    assert adv.tolist()[0] == pytest.approx([-0.125, 0.35, 0.9])
    assert ret.tolist()[0] == pytest.approx([0.375, 0.55, 1.0])
    adv, _ = gae(rewards, values, gamma=0.9, lam=1.0)
    # t1: (0.09 - 0.2) + 0.9 * 0.9 = 0.7; t0: (0.18 - 0.5) + 0.9 * 0.7 = 0.31
    assert adv.tolist()[0] == pytest.approx([0.31, 0.7, 0.9])


def test_gae_ignores_padding_after_the_last_valid_token():
    # values are zeroed after the episode, so the last valid step bootstraps from 0
    adv, _ = gae(t([0.0, 2.0, 0.0]), t([1.0, 1.0, 0.0]), gamma=1.0, lam=1.0)
    assert adv.tolist()[0] == pytest.approx([1.0, 1.0, 0.0])


def test_policy_loss_clips_the_ratio():
    old = torch.zeros(1, 3)
    new = torch.log(t([1.5, 0.5, 1.0]))
    adv = t([1.0, 1.0, -1.0])
    out = policy_loss(new, old, adv, torch.ones(1, 3), cliprange=0.2)
    # max(-A r, -A clip(r)): [max(-1.5, -1.2), max(-0.5, -0.8), max(1, 1)] = [-1.2, -0.5, 1.0]
    assert out["loss"].item() == pytest.approx(-0.7 / 3)
    assert out["clipfrac"].item() == pytest.approx(1 / 3)
    assert out["ratio"].item() == pytest.approx(1.0)
    logs = [math.log(1.5), math.log(0.5), 0.0]
    assert out["approxkl"].item() == pytest.approx(0.5 * sum(x * x for x in logs) / 3, rel=1e-5)
    masked = policy_loss(new, old, adv, t([1, 1, 0]), cliprange=0.2)
    assert masked["loss"].item() == pytest.approx(-0.85)
    assert masked["clipfrac"].item() == pytest.approx(0.5)


def test_policy_loss_gradient_vanishes_where_clipped():
    new = torch.log(t([1.5, 0.9])).requires_grad_(True)
    out = policy_loss(new, torch.zeros(1, 2), t([1.0, 1.0]), torch.ones(1, 2), cliprange=0.2)
    out["loss"].backward()
    assert new.grad[0, 0].item() == 0.0  # ratio 1.5 > 1.2 with A > 0: clipped
    assert new.grad[0, 1].item() == pytest.approx(-0.9 / 2)  # d(-A r)/d log r = -r, averaged over 2


def test_value_loss_takes_the_worse_of_clipped_and_unclipped():
    out = value_loss(t([1.0, 0.0]), t([0.5, 0.5]), t([2.0, 0.0]), torch.ones(1, 2), cliprange_value=0.2)
    # clipped values [0.7, 0.3]; squared errors unclipped [1, 0], clipped [1.69, 0.09]
    assert out["loss"].item() == pytest.approx(0.5 * (1.69 + 0.09) / 2)
    assert out["clipfrac"].item() == pytest.approx(1.0)


def test_kl_estimators():
    logp, ref = t([-1.0, -2.0]), t([-1.5, -1.0])
    assert kl_estimate(logp, ref, "k1").tolist()[0] == pytest.approx([0.5, -1.0])
    k3 = kl_estimate(logp, ref, "k3").tolist()[0]
    assert k3 == pytest.approx([math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0])
    assert all(v >= 0 for v in k3)
    assert kl_estimate(logp, logp, "k3").abs().max().item() == 0.0
    with pytest.raises(ValueError):
        kl_estimate(logp, ref, "k2")


def test_masked_statistics_and_whitening():
    values, mask = t([2.0, 4.0, 6.0, 100.0]), t([1, 1, 1, 0])
    assert masked_mean(values, mask).item() == pytest.approx(4.0)
    assert masked_var(values, mask).item() == pytest.approx(4.0)  # (4 + 0 + 4) / 2, Bessel-corrected
    assert masked_var(values, mask, unbiased=False).item() == pytest.approx(8 / 3)
    assert masked_whiten(values, mask).tolist()[0][:3] == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6)
    assert masked_whiten(values, mask, shift_mean=False).tolist()[0][:3] == pytest.approx([3.0, 4.0, 5.0], abs=1e-6)
    per_row = masked_mean(t([1.0, 3.0], [5.0, 7.0]), t([1, 0], [1, 1]), dim=1)
    assert per_row.tolist() == pytest.approx([1.0, 6.0])


def test_response_mask_keeps_the_first_eos():
    tokens = torch.tensor([[5, 2, 2, 7], [5, 6, 7, 8], [2, 5, 2, 5]])
    assert response_mask(tokens, eos_id=2).int().tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_entropy_and_token_logprobs():
    assert entropy_from_logits(torch.zeros(1, 4)).item() == pytest.approx(math.log(4))
    assert entropy_from_logits(t([100.0, 0.0, 0.0])).item() == pytest.approx(0.0, abs=1e-6)
    logits = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0))
    tokens = torch.tensor([[0, 3, 6], [1, 1, 2]])
    expected = torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
    assert torch.allclose(token_logprobs(logits, tokens), expected, atol=1e-6)


def test_adaptive_kl_controller_moves_towards_the_target():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    ctl.update(12.0, n_episodes=100)  # error clipped to +0.2
    assert ctl.value == pytest.approx(0.1 * (1 + 0.2 * 100 / 10000))
    ctl.update(3.0, n_episodes=100)  # error -0.5 clipped to -0.2
    assert ctl.value == pytest.approx(0.1 * 1.002 * 0.998)
    fixed = AdaptiveKLController(0.1, target=None, horizon=10000)
    fixed.update(100.0, 100)
    assert fixed.value == 0.1


def test_config_validation_names_the_field():
    PPORunConfig().validate()
    with pytest.raises(ConfigError) as err:
        PPORunConfig(batch_size=4, mini_batches=3).validate()
    assert err.value.where == "mini_batches"
    with pytest.raises(ConfigError) as err:
        PPORunConfig(kl_estimator="k2").validate()
    assert err.value.where == "kl_estimator"
    with pytest.raises(ConfigError) as err:
        apply_overrides(PPORunConfig(), ["grad_accum=3"])
    assert err.value.where == "grad_accum"
    cfg = apply_overrides(PPORunConfig(), ["lora_target_modules=q_proj,k_proj", "reward_clip=none",
                                           "missing_eos_penalty=1.5", "adaptive_kl=true"])
    assert cfg.lora_target_modules == ["q_proj", "k_proj"] and cfg.reward_clip is None
    assert cfg.missing_eos_penalty == 1.5 and cfg.adaptive_kl is True


def test_inverse_cdf_sampling_follows_the_distribution():
    from rlhf_desktop.training.ppo.rollout import sample_tokens

    probs = torch.tensor([0.1, 0.0, 0.6, 0.3])
    torch.manual_seed(0)
    draws = sample_tokens(torch.log(probs).expand(20000, 4).clone())
    freq = torch.bincount(draws, minlength=4).float() / draws.numel()
    assert freq.tolist() == pytest.approx(probs.tolist(), abs=0.01)
    assert int(freq[1] * draws.numel()) == 0  # a zero-probability token is never drawn
