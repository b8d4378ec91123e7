"""The three TRL stages on a tiny random Llama (CPU): they learn, stop, resume, pause and fail cleanly."""

from __future__ import annotations

import gc
import json
import math
import random
import threading

import pytest
import torch
from safetensors.torch import load_file

from rlhf_desktop.core.config import from_dict
from rlhf_desktop.core.context import RecordingContext
from rlhf_desktop.core.errors import ConfigError
from rlhf_desktop.training.checkpoints import load_checkpoint
from rlhf_desktop.training.common import METADATA_FILE, ModelRef, failure_message, read_metadata
from rlhf_desktop.training.dpo import DPORunConfig, run_dpo
from rlhf_desktop.training.reward import RewardRunConfig, load_reward_model, run_reward, score
from rlhf_desktop.training.sft import SFTRunConfig, run_sft
from test_training_support import one_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = dict(device="cpu", max_length=160, per_device_batch_size=4, save_every=2)
TRAINER_FILES = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin"}
WORDS = "apple river stone cloud green quick table music paper light".split()


def _pairs(n, seed=0, marker="GOOD"):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        body = " ".join(rng.choice(WORDS) for _ in range(4))
        rows.append({"prompt": f"question {i}: {rng.choice(WORDS)}", "chosen": f"{body} {marker}",
                     "rejected": body, "margin": 1.0 if i % 3 == 0 else 0.0})
    return rows


def _sft_rows(n=12):
    return [{"prompt": p["prompt"], "completion": p["chosen"]} for p in _pairs(n)]


def _lora_b_norm(folder) -> float:
    weights = load_file(str(folder / "adapter_model.safetensors"))
    return sum(float(v.abs().sum()) for k, v in weights.items() if "lora_B" in k)


def _assert_finite_losses(ctx):
    losses = [m["loss"] for _, m in ctx.metrics if "loss" in m]
    assert losses and all(math.isfinite(v) for v in losses)


def test_sft_lora_learns_and_writes_a_self_describing_checkpoint(tiny_model_dir, tmp_path):
    ctx = RecordingContext()
    result = run_sft(SFTRunConfig(max_steps=4, **FAST), _sft_rows(), ModelRef(str(tiny_model_dir)), ctx, tmp_path)
    assert result.status == "done", result.error
    assert result.steps == 4 and [s for s, _ in ctx.metrics] == [1, 2, 3, 4]
    _assert_finite_losses(ctx)
    assert "mean_token_accuracy" in result.final_metrics  # TRL's own key
    assert [(s, k) for s, _, k in ctx.checkpoints] == [(2, "adapter"), (4, "adapter")]
    folder = tmp_path / "checkpoint-4"
    assert result.checkpoint_path == str(folder)
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", METADATA_FILE} | TRAINER_FILES <= names
    assert "model.safetensors" not in names
    meta = read_metadata(folder)
    assert (meta["stage"], meta["format"], meta["task"], meta["step"]) == ("sft", "lora", "causal", 4)
    assert meta["base_model"] == str(tiny_model_dir.resolve()) and meta["parent_checkpoint"] is None
    assert meta["config"]["max_steps"] == 4 and meta["created"]
    assert _lora_b_norm(folder) > 0  # LoRA's B starts at zero: the trainable weights moved
    model, tok = load_checkpoint(folder)
    assert model(**tok("hello", return_tensors="pt")).logits.isfinite().all()


def test_sft_full_finetune_changes_the_weights(tiny_model_dir, tmp_path):
    result = run_sft(SFTRunConfig(max_steps=2, full_finetune=True, learning_rate=1e-3, **FAST), _sft_rows(),
                     ModelRef(str(tiny_model_dir)), RecordingContext(), tmp_path)
    assert result.status == "done", result.error
    folder = tmp_path / "checkpoint-2"
    assert read_metadata(folder)["format"] == "full" and (folder / "model.safetensors").is_file()
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = load_file(str(folder / "model.safetensors"))
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(before[key], after[key])


def test_reward_model_separates_a_marker_word_on_held_out_pairs(tiny_model_dir, tmp_path):
    rows = _pairs(60)
    data = {"train": rows[:48], "eval": rows[48:]}
    config = RewardRunConfig(max_steps=15, learning_rate=3e-3, per_device_batch_size=8, save_every=15,
                             device="cpu", max_length=160)
    ctx = RecordingContext()
    result = run_reward(config, data, ModelRef(str(tiny_model_dir)), ctx, tmp_path)
    assert result.status == "done", result.error
    _assert_finite_losses(ctx)
    assert result.final_metrics["eval_accuracy"] >= 0.9
    meta = read_metadata(result.checkpoint_path)
    assert (meta["stage"], meta["task"], meta["eval_rows"]) == ("rm", "reward", 12)
    model, tok = load_reward_model(result.checkpoint_path)
    held = data["eval"]
    chosen = score(model, tok, [r["prompt"] for r in held], [r["chosen"] for r in held])
    rejected = score(model, tok, [r["prompt"] for r in held], [r["rejected"] for r in held])
    assert sum(c > r for c, r in zip(chosen, rejected)) >= 0.9 * len(held)


def test_reward_carves_an_eval_split_when_none_is_given(tiny_model_dir, tmp_path):
    ctx = RecordingContext()
    result = run_reward(RewardRunConfig(max_steps=2, eval_fraction=0.25, **FAST), {"train": _pairs(8)},
                        ModelRef(str(tiny_model_dir)), ctx, tmp_path)
    assert result.status == "done", result.error
    assert "eval_accuracy" in result.final_metrics and read_metadata(result.checkpoint_path)["eval_rows"] == 2


def test_dpo_lora_trains_against_the_disabled_adapter(tiny_model_dir, tmp_path):
    ctx = RecordingContext()
    result = run_dpo(DPORunConfig(max_steps=2, learning_rate=1e-3, **FAST), _pairs(8), ModelRef(str(tiny_model_dir)),
                     ctx, tmp_path)
    assert result.status == "done", result.error
    _assert_finite_losses(ctx)
    first = ctx.metrics[0][1]
    assert abs(first["rewards/margins"]) < 1e-3  # policy == reference before the first update
    assert {"rewards/accuracies", "rewards/chosen", "logps/chosen"} <= set(result.final_metrics)
    assert _lora_b_norm(tmp_path / "checkpoint-2") > 0


def test_stop_leaves_a_checkpoint_and_resume_continues_the_step_count(tiny_model_dir, tmp_path):
    config = SFTRunConfig(max_steps=6, save_every=100, device="cpu", max_length=160, per_device_batch_size=4)
    ctx = RecordingContext()
    ctx.on_report = lambda step, metrics: ctx.request_stop() if step == 2 else None
    stopped = run_sft(config, _sft_rows(), ModelRef(str(tiny_model_dir)), ctx, tmp_path)
    assert stopped.status == "stopped" and stopped.steps == 2  # honoured right after the step's report
    assert stopped.checkpoint_path == str(tmp_path / "checkpoint-2")
    model, _ = load_checkpoint(stopped.checkpoint_path)
    assert model is not None and "stopping: saving a checkpoint" in ctx.statuses

    again = RecordingContext()
    resumed = run_sft(config, _sft_rows(), ModelRef(str(tiny_model_dir)), again, tmp_path,
                      resume_from=stopped.checkpoint_path)
    assert resumed.status == "done", resumed.error
    assert resumed.steps == 6 and [s for s, _ in again.metrics] == [3, 4, 5, 6]
    state = json.loads((tmp_path / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6


def test_pause_waits_at_a_step_boundary_and_resume_continues(tiny_model_dir, tmp_path):
    ctx = RecordingContext()
    timer = threading.Timer(0.5, ctx.resume)

    def on_report(step, metrics):
        if step == 2 and not ctx.paused and "paused" not in ctx.statuses:
            ctx.pause()
            timer.start()

    ctx.on_report = on_report
    result = run_sft(SFTRunConfig(max_steps=4, **FAST), _sft_rows(), ModelRef(str(tiny_model_dir)), ctx, tmp_path)
    timer.join()
    assert result.status == "done" and result.steps == 4
    assert ctx.statuses.index("paused") < ctx.statuses.index("resumed") < ctx.statuses.index("done")
    assert [s for s, _ in ctx.metrics] == [1, 2, 3, 4]


def _live_models() -> int:
    from transformers import PreTrainedModel

    gc.collect()
    return sum(issubclass(type(o), PreTrainedModel) for o in gc.get_objects())  # type(): no __class__ hooks


def test_a_failing_trainer_ends_the_run_as_failed_with_its_reason(tiny_model_dir, tmp_path):
    ctx = RecordingContext()
    before = _live_models()
    config = SFTRunConfig(max_steps=2, lora_target_modules=["no_such_proj"], **FAST)
    result = run_sft(config, _sft_rows(), ModelRef(str(tiny_model_dir)), ctx, tmp_path)
    assert result.status == "failed" and "no_such_proj" in result.error
    assert "failed" in ctx.statuses and any("Traceback" in line for line in ctx.lines)
    assert _live_models() == before  # the loaded model was freed with the exception


def test_a_finished_run_frees_its_model(tiny_model_dir, tmp_path):
    before = _live_models()
    result = run_dpo(DPORunConfig(max_steps=1, **FAST), _pairs(4), ModelRef(str(tiny_model_dir)), RecordingContext(),
                     tmp_path)
    assert result.status == "done", result.error
    assert _live_models() == before


def test_invalid_config_fails_naming_the_field(tiny_model_dir, tmp_path):
    result = run_dpo(DPORunConfig(max_steps=2, beta=0.0, **FAST), _pairs(4), ModelRef(str(tiny_model_dir)),
                     RecordingContext(), tmp_path)
    assert result.status == "failed" and result.error.startswith("beta:")
    with pytest.raises(ConfigError) as info:
        from_dict(SFTRunConfig, {"per_device_batch_size": "0"})
    assert info.value.where == "per_device_batch_size"
    with pytest.raises(ConfigError, match="unknown field"):
        from_dict(RewardRunConfig, {"batch": 4})


@pytest.mark.parametrize("cls", [SFTRunConfig, RewardRunConfig, DPORunConfig])
def test_presets_are_valid_configs(cls):
    assert set(cls.PRESETS) == {"quick-cpu-demo", "standard-gpu"}
    for values in cls.PRESETS.values():
        from_dict(cls, values)
    import dataclasses

    assert all(f.metadata.get("help") for f in dataclasses.fields(cls))


def test_out_of_memory_message_says_what_to_change():
    message = failure_message(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
                              SFTRunConfig(per_device_batch_size=16, max_length=2048, lora_r=64))
    for text in ("out of memory", "per_device_batch_size (now 16)", "max_length (now 2048)", "lora_r, now 64"):
        assert text in message


def test_stop_while_loading_trains_nothing(tiny_model_dir, tmp_path):
    ctx = RecordingContext()
    ctx.request_stop()
    result = run_sft(SFTRunConfig(max_steps=3, **FAST), _sft_rows(), ModelRef(str(tiny_model_dir)), ctx, tmp_path)
    assert (result.status, result.steps, result.checkpoint_path) == ("stopped", 0, None)
    assert ctx.metrics == [] and not list(tmp_path.glob("checkpoint-*"))


def test_full_finetune_from_a_lora_parent_merges_it_first(tiny_model_dir, tmp_path):
    sft = run_sft(SFTRunConfig(max_steps=1, learning_rate=1e-2, **FAST), _sft_rows(), ModelRef(str(tiny_model_dir)),
                  RecordingContext(), tmp_path / "sft")
    models = ModelRef(str(tiny_model_dir), adapter=sft.checkpoint_path)
    result = run_reward(RewardRunConfig(max_steps=1, full_finetune=True, **FAST), {"train": _pairs(8)}, models,
                        RecordingContext(), tmp_path / "rm")
    assert result.status == "done", result.error
    meta = read_metadata(result.checkpoint_path)
    assert (meta["format"], meta["task"], meta["parent_checkpoint"]) == ("full", "reward", sft.checkpoint_path)
    model, tok = load_reward_model(result.checkpoint_path)
    assert len(score(model, tok, ["q"], ["a"])) == 1
