"""The PPO engine end to end on tiny random models (CPU): what it trains, what it saves, how it stops."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from rlhf_desktop.core.context import RecordingContext
from rlhf_desktop.training.common import ModelRef, write_metadata
from rlhf_desktop.training.ppo import PPORunConfig, run_ppo
from rlhf_desktop.training.ppo.engine import prepare_ppo
from rlhf_desktop.training.ppo.reward import AdapterReward, SeparateReward

PROMPTS = ["hello there", "write a poem", "abc", "what is 2+2", "name a colour", "count to three"]
TRL_METRICS = {"objective/kl", "objective/entropy", "objective/scores", "objective/non_score_reward",
               "objective/rlhf_reward", "policy/approxkl_avg", "policy/clipfrac_avg", "policy/entropy_avg",
               "loss/policy_avg", "loss/value_avg", "val/clipfrac_avg", "val/ratio", "val/ratio_var",
               "val/num_eos_tokens", "lr", "episode", "completions/mean_length", "tokens_per_second"}
NOISY = ("time/", "eps", "tokens_per_second")  # wall-clock figures differ between runs


@pytest.fixture(autouse=True)
def _one_thread():
    """Two cores shared by everyone: one thread keeps tiny-model steps fast and results reproducible."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def letter_share(prompts: list[str], responses: list[str]) -> list[float]:
    return [sum(c.isascii() and c.islower() for c in r) / max(1, len(r)) for r in responses]


def config(**overrides) -> PPORunConfig:
    values = dict(max_steps=2, batch_size=4, response_length=6, save_every=100, device="cpu", temperature=1.0,
                  learning_rate=1e-2)
    values.update(overrides)
    return PPORunConfig(**values)


@pytest.fixture(scope="module")
def reward_adapter(tiny_model_dir, tmp_path_factory):
    """A reward-model checkpoint as the RM stage writes it: SEQ_CLS LoRA (non-zero) + score head + metadata."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    folder = tmp_path_factory.mktemp("rm") / "checkpoint-5"
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS",
                      init_lora_weights=False)
    peft_model = get_peft_model(model, lora)
    peft_model.save_pretrained(folder)
    write_metadata(folder, stage="rm", task="reward", format="lora", base_model=str(tiny_model_dir), step=5)
    return folder


def hf_reward_scores(base: Path, folder: Path, prompts: list[str], responses: list[str]) -> list[float]:
    """The reward model's own scores through transformers + PEFT (right-padded, last non-pad token)."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    model = PeftModel.from_pretrained(model, folder).eval()
    texts = [tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                                     tokenize=False) for p, r in zip(prompts, responses)]
    tok.padding_side = "right"
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        return model(**batch).logits[:, 0].tolist()


def base_state(lm) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in lm.named_parameters() if "lora_" not in n}


def test_one_step_trains_only_the_policy_adapter_and_value_head(tiny_model_dir, reward_adapter, tmp_path):
    ctx = RecordingContext()
    loop = prepare_ppo(config(max_steps=1), PROMPTS, ModelRef(base=str(tiny_model_dir)), ctx, tmp_path,
                       reward_checkpoint=str(reward_adapter))
    assert isinstance(loop.scorer, AdapterReward)  # the reward model shares the policy's base
    lm = loop.policy.lm
    base_before = base_state(lm)
    lora_before = {n: p.detach().clone() for n, p in lm.named_parameters() if "lora_" in n}
    head_before = loop.policy.value_head.weight.detach().clone()
    result = loop.run()
    assert result.status == "done" and result.steps == 1
    for name, value in base_state(lm).items():
        assert torch.equal(value, base_before[name]), name
    changed = {n for n, p in lm.named_parameters() if "lora_" in n and not torch.equal(p, lora_before[n])}
    assert changed and all(".default." in n for n in changed)  # the reward adapter never moved
    assert any("lora_B.default" in n for n in changed)
    assert not torch.equal(loop.policy.value_head.weight, head_before)
    assert {n for n, p in lm.named_parameters() if p.requires_grad} == {
        n for n in lora_before if ".default." in n}


def test_adapter_reward_matches_the_reward_model_on_its_own(tiny_model_dir, reward_adapter, tmp_path):
    prompts, responses = PROMPTS[:3], ["yes", "a longer answer here", ""]
    expected = hf_reward_scores(tiny_model_dir, reward_adapter, prompts, responses)
    loop = prepare_ppo(config(), PROMPTS, ModelRef(base=str(tiny_model_dir)), RecordingContext(), tmp_path,
                       reward_checkpoint=str(reward_adapter))
    shared = loop.scorer.score(prompts, responses, loop.policy.device).tolist()
    assert shared == pytest.approx(expected, abs=1e-5)
    # the policy adapter is active again afterwards, and still the only trainable one
    assert loop.policy.lm.active_adapter == "default"
    assert loop.policy.trainable_names() == loop.trainable


def test_reward_model_on_another_base_is_loaded_separately(tiny_model_dir, reward_adapter, tmp_path):
    import shutil

    other_base = tmp_path / "other-base"
    shutil.copytree(tiny_model_dir, other_base)  # same weights, another folder: counts as another base
    loop = prepare_ppo(config(), PROMPTS, ModelRef(base=str(other_base)), RecordingContext(), tmp_path / "out",
                       reward_checkpoint=str(reward_adapter))
    assert isinstance(loop.scorer, SeparateReward)
    prompts, responses = PROMPTS[:2], ["ok", "fine thanks"]
    expected = hf_reward_scores(tiny_model_dir, reward_adapter, prompts, responses)
    assert loop.scorer.score(prompts, responses, loop.policy.device).tolist() == pytest.approx(expected, abs=1e-5)


def test_policy_and_reference_agree_before_the_first_update(tiny_model_dir, tmp_path):
    """Starting from an SFT adapter, the reference is that adapter (not the bare base): KL is 0 at step 1."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    sft = tmp_path / "sft" / "checkpoint-3"
    torch.manual_seed(2)
    lora = LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM",
                      init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), lora).save_pretrained(sft)
    write_metadata(sft, stage="sft", task="causal", format="lora", base_model=str(tiny_model_dir))
    ctx = RecordingContext()
    loop = prepare_ppo(config(max_steps=1), PROMPTS, ModelRef(base=str(tiny_model_dir), adapter=str(sft)), ctx,
                       tmp_path / "out", reward_fn=letter_share)
    policy = loop.policy
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        logits, _ = policy.response_outputs(ids, mask, 3, 1.0)
        with policy.lm.disable_adapter():
            bare, _ = policy.response_outputs(ids, mask, 3, 1.0)
        ref, _ = policy.response_outputs(ids, mask, 3, 1.0, reference=True)
    assert not torch.allclose(logits, bare, atol=1e-3)  # the SFT adapter matters
    assert torch.allclose(logits, ref, atol=1e-6)
    assert loop.run().status == "done"
    first = ctx.metrics[0][1]
    assert abs(first["objective/kl"]) < 1e-4
    assert first["policy/approxkl_avg"] >= 0.0


def test_every_step_reports_trl_metrics_samples_and_checkpoints(tiny_model_dir, tmp_path):
    ctx = RecordingContext()
    result = run_ppo(config(max_steps=3, save_every=2, num_sample_rollouts=2), PROMPTS,
                     ModelRef(base=str(tiny_model_dir)), ctx, tmp_path, reward_fn=letter_share)
    assert result.status == "done" and result.steps == 3, result.error
    assert [s for s, _ in ctx.metrics] == [1, 2, 3]
    for _, metrics in ctx.metrics:
        assert TRL_METRICS <= set(metrics)
        assert all(type(v) is float for v in metrics.values())
    assert ctx.metrics[2][1]["episode"] == 12.0
    assert [(s, len(rows)) for s, rows in ctx.sample_rows] == [(1, 2), (2, 2), (3, 2)]
    assert set(ctx.sample_rows[0][1][0]) == {"prompt", "response", "score", "kl"}
    assert [(s, Path(p).name, k) for s, p, k in ctx.checkpoints] == [
        (2, "checkpoint-2", "adapter"), (3, "checkpoint-3", "adapter")]
    folder = tmp_path / "checkpoint-3"
    assert result.checkpoint_path == str(folder.resolve())
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "value_head.safetensors", "trainer_state.pt",
            "rlhf_desktop.json", "tokenizer_config.json"} <= names
    meta = json.loads((folder / "rlhf_desktop.json").read_text())
    assert meta["stage"] == "ppo" and meta["format"] == "lora" and meta["step"] == 3
    assert meta["base_model"] == str(Path(tiny_model_dir).resolve()) and meta["config"]["batch_size"] == 4
    from rlhf_desktop.training.checkpoints import load_checkpoint

    model, _ = load_checkpoint(folder)  # loads like any other stage's LoRA checkpoint
    assert model.active_adapter == "default"


def deterministic(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith(NOISY)}


class StopAtCheck(RecordingContext):
    """A controller that asks to stop at the n-th pause/stop check (inside a step for suitable n)."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.calls = n, 0

    def wait_if_paused(self, on_pause=None) -> bool:
        self.calls += 1
        if self.calls == self.n:
            self.request_stop()
        return super().wait_if_paused(on_pause)


def test_stop_then_resume_continues_exactly(tiny_model_dir, tmp_path):
    cfg = config(max_steps=3, mini_batches=2, ppo_epochs=2, kl_coef=0.1, adaptive_kl=True)
    models = ModelRef(base=str(tiny_model_dir))
    full = RecordingContext()
    assert run_ppo(cfg, PROMPTS, models, full, tmp_path / "full", reward_fn=letter_share).status == "done"

    # Stop at a step boundary (after step 2 is reported) ...
    at_boundary = RecordingContext()
    at_boundary.on_report = lambda step, m: at_boundary.request_stop() if step == 2 else None
    stopped = run_ppo(cfg, PROMPTS, models, at_boundary, tmp_path / "a", reward_fn=letter_share)
    assert (stopped.status, stopped.steps, Path(stopped.checkpoint_path).name) == ("stopped", 2, "checkpoint-2")
    resumed = RecordingContext()
    done = run_ppo(cfg, PROMPTS, models, resumed, tmp_path / "a", resume_from=stopped.checkpoint_path,
                   reward_fn=letter_share)
    assert done.status == "done" and [s for s, _ in resumed.metrics] == [3]
    assert deterministic(resumed.metrics[0][1]) == pytest.approx(deterministic(full.metrics[2][1]), rel=1e-6)

    # ... and inside a step, between two minibatches: that step is rolled back and redone on resume.
    # Checks per step: loop start, after the rollout, before each of the 2 x 2 minibatches = 6.
    mid_step = StopAtCheck(n=6 + 4)
    stopped = run_ppo(cfg, PROMPTS, models, mid_step, tmp_path / "b", reward_fn=letter_share)
    assert (stopped.status, stopped.steps) == ("stopped", 1)
    assert [s for s, _ in mid_step.metrics] == [1]
    resumed = RecordingContext()
    run_ppo(cfg, PROMPTS, models, resumed, tmp_path / "b", resume_from=stopped.checkpoint_path,
            reward_fn=letter_share)
    assert [s for s, _ in resumed.metrics] == [2, 3]
    for (_, got), (_, want) in zip(resumed.metrics, full.metrics[1:]):
        assert deterministic(got) == pytest.approx(deterministic(want), rel=1e-6)


def test_grad_accum_changes_memory_not_results(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    results = []
    for accum in (1, 2):
        ctx = RecordingContext()
        run_ppo(config(max_steps=2, grad_accum=accum), PROMPTS, ModelRef(base=str(tiny_model_dir)), ctx,
                tmp_path / str(accum), reward_fn=letter_share)
        weights = load_file(str(tmp_path / str(accum) / "checkpoint-2" / "adapter_model.safetensors"))
        results.append((ctx.metrics, weights))
    (metrics_1, weights_1), (metrics_2, weights_2) = results
    for (_, a), (_, b) in zip(metrics_1, metrics_2):
        assert deterministic(a) == pytest.approx(deterministic(b), rel=1e-4, abs=1e-6)
    for name, value in weights_1.items():
        assert torch.allclose(value, weights_2[name], atol=1e-6), name


def test_full_finetuning_trains_the_weights_against_a_frozen_copy(tiny_model_dir, reward_adapter, tmp_path):
    ctx = RecordingContext()
    loop = prepare_ppo(config(max_steps=1, full_finetune=True, learning_rate=1e-3), PROMPTS,
                       ModelRef(base=str(tiny_model_dir)), ctx, tmp_path, reward_checkpoint=str(reward_adapter))
    assert isinstance(loop.scorer, SeparateReward)  # the reward adapter's base weights are about to change
    before = base_state(loop.policy.lm)
    reference = base_state(loop.policy.ref_lm)
    assert loop.run().status == "done"
    assert any(not torch.equal(p, before[n]) for n, p in base_state(loop.policy.lm).items())
    assert all(torch.equal(p, reference[n]) for n, p in base_state(loop.policy.ref_lm).items())
    assert abs(ctx.metrics[0][1]["objective/kl"]) < 1e-4
    assert ctx.checkpoints[-1][2] == "full"
    resumed = RecordingContext()
    result = run_ppo(config(max_steps=2, full_finetune=True, learning_rate=1e-3), PROMPTS,
                     ModelRef(base=str(tiny_model_dir)), resumed, tmp_path, resume_from=ctx.checkpoints[-1][1],
                     reward_checkpoint=str(reward_adapter))
    assert result.status == "done" and [s for s, _ in resumed.metrics] == [2], result.error


def test_pause_holds_the_step_until_resumed(tiny_model_dir, tmp_path):
    ctx = RecordingContext()
    ctx.on_report = lambda step, m: ctx.pause() if step == 1 else None
    timer = threading.Timer(0.3, ctx.resume)
    timer.start()
    try:
        result = run_ppo(config(max_steps=2), PROMPTS, ModelRef(base=str(tiny_model_dir)), ctx, tmp_path,
                         reward_fn=letter_share)
    finally:
        timer.cancel()
    assert result.status == "done" and result.steps == 2
    assert "paused" in ctx.statuses and "resumed" in ctx.statuses


def test_ratio_guard_skips_updates(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    ctx = RecordingContext()
    result = run_ppo(config(max_steps=1, ratio_guard=1e-6, ppo_epochs=2), PROMPTS,
                     ModelRef(base=str(tiny_model_dir)), ctx, tmp_path, reward_fn=letter_share)
    assert result.status == "done", result.error
    assert ctx.metrics[0][1]["guard/skipped_updates"] == 2.0
    assert any(line.startswith("guard:") for line in ctx.lines)
    weights = load_file(str(tmp_path / "checkpoint-1" / "adapter_model.safetensors"))
    assert all(torch.count_nonzero(v) == 0 for k, v in weights.items() if "lora_B" in k)  # nothing applied


def test_failures_become_failed_results_naming_what_to_change(tiny_model_dir, tmp_path):
    ctx = RecordingContext()
    bad = run_ppo(config(batch_size=4, mini_batches=3), PROMPTS, ModelRef(base=str(tiny_model_dir)), ctx, tmp_path,
                  reward_fn=letter_share)
    assert bad.status == "failed" and "mini_batches" in bad.error
    missing = run_ppo(config(), PROMPTS, ModelRef(base=str(tmp_path / "nope")), ctx, tmp_path,
                      reward_fn=letter_share)
    assert missing.status == "failed" and "nope" in missing.error
    no_reward = run_ppo(config(), PROMPTS, ModelRef(base=str(tiny_model_dir)), ctx, tmp_path)
    assert no_reward.status == "failed" and "reward_checkpoint" in no_reward.error


def test_score_rises_on_a_programmatic_reward(tmp_path):
    """The share of lowercase letters in the response climbs clearly within a few dozen steps."""
    from rlhf_desktop.modeling.tiny import make_tiny_model

    base = tmp_path / "tiny"
    make_tiny_model(base, initializer_range=0.2)  # default 0.02 makes logits too flat for LoRA to move far
    ctx = RecordingContext()
    cfg = config(max_steps=25, batch_size=16, response_length=8, kl_coef=0.0)
    result = run_ppo(cfg, [f"prompt {i}" for i in range(16)], ModelRef(base=str(base)), ctx, tmp_path / "out",
                     reward_fn=letter_share)
    assert result.status == "done", result.error
    scores = [m["objective/scores"] for _, m in ctx.metrics]
    first, last = sum(scores[:5]) / 5, sum(scores[-5:]) / 5
    assert last > first + 0.2, scores
