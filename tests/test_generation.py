"""Generation on a tiny random model: one batched call for n answers, determinism, streaming, cancel."""

from __future__ import annotations

import pytest

from rlhf_desktop.core.config import from_dict
from rlhf_desktop.core.context import RecordingContext
from rlhf_desktop.core.errors import Cancelled, ConfigError
from rlhf_desktop.modeling.generation import SamplingConfig, format_prompt, generate
from rlhf_desktop.modeling.loading import load_model
from rlhf_desktop.modeling.tiny import make_tiny_tokenizer

PROMPTS = ["hi", "tell me a much longer story about a cat"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(tiny_model_dir)


class ForwardCounter:
    """Counts the model's forward passes and the batch size of each (a forward pre-hook)."""

    def __init__(self, model, on_forward=None):
        self.batches: list[int] = []
        self.on_forward = on_forward
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.batches.append(ids.shape[0])
        if self.on_forward is not None:
            self.on_forward(len(self.batches))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_n_answers_per_prompt_come_from_one_batched_call(tiny):
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=6, seed=0)
    with ForwardCounter(tiny.model) as counter:
        out = generate(tiny, PROMPTS, sampling, n=3)
    assert [len(answers) for answers in out] == [3, 3]
    assert all(isinstance(a, str) for answers in out for a in answers)
    assert counter.batches and set(counter.batches) == {6}  # every forward saw all 2 x 3 rows
    assert len(counter.batches) <= sampling.max_new_tokens  # one prefill + one step per token


def test_temperature_zero_is_greedy_and_deterministic(tiny):
    # a random tiny model repeats "\n" greedily; the penalty makes each answer depend on its prompt
    sampling = SamplingConfig(temperature=0, max_new_tokens=10, repetition_penalty=5.0)
    first = generate(tiny, PROMPTS, sampling, n=2)
    assert first == generate(tiny, PROMPTS, sampling, n=2)
    assert all(a == answers[0] for answers in first for a in answers)
    assert first[0][0] != first[1][0] and first[0][0].strip()
    # left padding: each prompt's answer in the batch equals its answer alone
    assert [generate(tiny, [p], sampling)[0][0] for p in PROMPTS] == [answers[0] for answers in first]


def test_seed_makes_sampling_reproducible(tiny):
    def run(seed):
        return generate(tiny, PROMPTS, SamplingConfig(temperature=1.0, top_k=0, max_new_tokens=12, seed=seed), n=2)

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_streamed_deltas_concatenate_to_each_final_answer(tiny):
    streamed: dict[int, list[str]] = {}
    sampling = SamplingConfig(temperature=1.0, top_k=0, max_new_tokens=16, seed=3)
    out = generate(tiny, PROMPTS, sampling, n=2, on_token=lambda row, d: streamed.setdefault(row, []).append(d))
    for i, answers in enumerate(out):
        for j, answer in enumerate(answers):
            assert "".join(streamed.get(i * 2 + j, [])) == answer
    assert sum(len(d) for d in streamed.values()) > 4  # text really arrived in several pieces


def test_cancel_mid_generation_stops_within_a_step(tiny):
    ctx = RecordingContext()
    stop_at = 3
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=200, seed=0)
    with ForwardCounter(tiny.model, on_forward=lambda k: ctx.request_stop() if k == stop_at else None) as counter:
        with pytest.raises(Cancelled):
            generate(tiny, PROMPTS, sampling, n=2, ctx=ctx)
    assert len(counter.batches) <= stop_at + 1


def test_cancel_before_start_runs_nothing(tiny):
    ctx = RecordingContext()
    ctx.request_stop()
    with ForwardCounter(tiny.model) as counter, pytest.raises(Cancelled):
        generate(tiny, PROMPTS, SamplingConfig(), ctx=ctx)
    assert counter.batches == []


def test_chat_messages_and_system_prompt_go_through_the_template(tiny):
    text = format_prompt(tiny.tokenizer, "Hi", system_prompt="Be brief.")
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "More"}]
    assert format_prompt(tiny.tokenizer, chat).endswith("More<|im_end|>\n<|im_start|>assistant\n")
    out = generate(tiny, [chat], SamplingConfig(temperature=0, max_new_tokens=4))
    assert len(out) == 1 and len(out[0]) == 1


def test_plain_text_without_a_chat_template():
    tok = make_tiny_tokenizer()
    tok.chat_template = None
    assert format_prompt(tok, "Just text") == "Just text"
    assert format_prompt(tok, "Q", system_prompt="S") == "S\n\nQ"


def test_sampling_config_validation_names_the_field(tiny):
    for field, value in [("temperature", -0.1), ("top_p", 0.0), ("top_k", -1), ("max_new_tokens", 0),
                         ("repetition_penalty", 0.0), ("seed", -5)]:
        with pytest.raises(ConfigError) as err:
            SamplingConfig(**{field: value}).validate()
        assert err.value.where == field
    with pytest.raises(ConfigError) as err:
        from_dict(SamplingConfig, {"temperature": "hot"})
    assert err.value.where == "temperature"
    with pytest.raises(ConfigError) as err:
        generate(tiny, ["x"], SamplingConfig(), n=0)
    assert err.value.where == "n"
    assert generate(tiny, [], SamplingConfig()) == []
