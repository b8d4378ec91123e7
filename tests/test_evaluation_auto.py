"""Automatic evaluation on tiny models: batched response log-probs, KL from the reference, lengths, reward."""

from __future__ import annotations

import copy

import pytest
import torch

from rlhf_desktop.modeling.generation import format_prompt
from rlhf_desktop.modeling.tiny import make_tiny_model
from rlhf_desktop.training.evaluation import automatic_evaluation, mean_kl, response_logprobs

PROMPTS = ["What is two plus two?", "Name a colour", "hi"]
RESPONSES = ["Four.", "Blue, or maybe a long answer about green things", ""]


@pytest.fixture(scope="module")
def models():
    from peft import LoraConfig, get_peft_model

    base, tok = make_tiny_model(seed=0)
    torch.manual_seed(1)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft = get_peft_model(copy.deepcopy(base), lora).eval()
    merged = copy.deepcopy(peft).merge_and_unload().eval()
    return base, tok, peft, merged


def _one_by_one(model, tok, prompt: str, response: str) -> list[float]:
    head = tok(format_prompt(tok, prompt), add_special_tokens=False)["input_ids"]
    tail = tok(response, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([head + tail])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return [logp[len(head) + i - 1, t].item() for i, t in enumerate(tail)]


def test_batched_response_logprobs_match_one_sequence_at_a_time(models):
    base, tok, _peft, _merged = models
    batched = response_logprobs(base, tok, PROMPTS, RESPONSES, batch_size=2)
    for got, prompt, response in zip(batched, PROMPTS, RESPONSES):
        assert got.tolist() == pytest.approx(_one_by_one(base, tok, prompt, response), abs=1e-5)
    assert len(batched[2]) == 0


def test_kl_is_zero_against_itself_and_adapters_off_equals_the_base(models):
    base, tok, peft, merged = models
    assert mean_kl(base, base, tok, PROMPTS, RESPONSES) == pytest.approx(0.0, abs=1e-7)
    with_off = mean_kl(peft, None, tok, PROMPTS, RESPONSES)
    against_base = mean_kl(merged, base, tok, PROMPTS, RESPONSES)
    assert abs(with_off) > 1e-4 and with_off == pytest.approx(against_base, abs=1e-4)
    expected = [a - b for p, r in zip(PROMPTS, RESPONSES) for a, b in
                zip(_one_by_one(merged, tok, p, r), _one_by_one(base, tok, p, r))]
    assert against_base == pytest.approx(sum(expected) / len(expected), abs=1e-5)


def test_automatic_evaluation_reports_reward_kl_and_lengths(models, tmp_path):
    from rlhf_desktop.training.reward import load_reward_model, score

    base, tok, _peft, merged = models
    make_tiny_model(tmp_path / "rm", seed=5, kind="seqcls")
    reward = load_reward_model(tmp_path / "rm")
    result = automatic_evaluation(merged, tok, PROMPTS, RESPONSES, reference=base, reward=reward)
    scores = score(*reward, PROMPTS, RESPONSES)
    assert result["n"] == 3 and result["reward_mean"] == pytest.approx(sum(scores) / 3)
    assert result["kl_mean"] == pytest.approx(mean_kl(merged, base, tok, PROMPTS, RESPONSES))
    assert result["length_chars"] == pytest.approx(sum(len(r) for r in RESPONSES) / 3)
    assert result["length_tokens"] == pytest.approx(sum(len(r.encode()) for r in RESPONSES) / 3)  # byte tokenizer
    assert automatic_evaluation(base, tok, PROMPTS, RESPONSES, kl=False)["kl_mean"] == 0.0
