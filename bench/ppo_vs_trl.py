"""Our PPO engine against TRL 1.12.0's experimental PPOTrainer, side by side on the CPU (issue 5).

SmolLM2-135M-Instruct with LoRA (r=8, alpha 16, q_proj and v_proj), 4 prompts per batch, responses of up
to 32 tokens, 4 PPO epochs of 1 minibatch. Each side runs in its own fresh subprocess for `--updates`
updates (the first is warm-up); the sides alternate TRL, ours, TRL, ours ... for `--pairs` pairs so that
machine noise hits both alike. Peak memory is the child's max RSS (os.wait4), over the whole run.

The reward model is the same for both: a SmolLM2 sequence classifier (random LoRA and score head, seeded).
TRL gets it merged into a full model (and, as in TRL's example, its value model starts from it); ours
loads it as a LoRA adapter on the policy's own base. TRL 1.12.0 is installed apart, under bench/out/.

usage: python bench/ppo_vs_trl.py [--pairs 3] [--updates 4]
The last line printed is one JSON object with step_time_ratio and peak_memory_ratio (ours / TRL's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
TRL_DIR = OUT / "trl112"
WORK = OUT / "ppo_vs_trl"
TRL_VERSION = "1.12.0"
SEED = 0
BATCH, RESPONSE_LENGTH, PPO_EPOCHS, MINI_BATCHES = 4, 32, 4, 1
LORA = dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
LEARNING_RATE, TEMPERATURE, KL_COEF = 3e-6, 0.7, 0.05
PHASES = ("generation", "reference", "reward", "value", "ppo_forward_backward", "optimizer", "other")
PROMPTS = [
    "Give me three tips for staying focused while studying.",
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "Explain what a binary search does in one paragraph.",
    "How do I boil an egg?",
    "Name two benefits of regular exercise.",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "What does a compiler do?",
    "Suggest a name for a friendly robot.",
    "Why is the sky blue?",
    "List three fruits that are rich in vitamin C.",
    "Translate 'good morning' into Spanish.",
    "What is 17 times 3?",
    "Describe a cat to someone who has never seen one.",
    "Write one sentence encouraging a friend before an exam.",
    "What is photosynthesis?",
]


# -- parent ------------------------------------------------------------------------------------------
def ensure_trl() -> None:
    """TRL 1.12.0 (the last with PPOTrainer) into bench/out/trl112, apart from the app's own TRL."""
    if (TRL_DIR / "trl" / "experimental" / "ppo" / "ppo_trainer.py").is_file():
        return
    print(f"installing trl=={TRL_VERSION} into {TRL_DIR} ...", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(TRL_DIR),
                    f"trl=={TRL_VERSION}"], check=True)


def run_child(args: list[str], env_extra: dict[str, str]) -> tuple[dict, int]:
    """Run this script as a child; return its last-line JSON and its peak RSS in bytes (os.wait4)."""
    import tempfile

    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.update(env_extra)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args], stdout=out, stderr=err,
                                text=True, env=env, cwd=str(ROOT))
        _, status, usage = os.wait4(proc.pid, 0)  # reaps the child and returns its own rusage
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        sys.stderr.write(stderr[-4000:])
        raise SystemExit(f"child {args[:2]} failed with exit code {proc.returncode}")
    return json.loads(stdout.strip().splitlines()[-1]), usage.ru_maxrss * 1024


def side_env(side: str) -> dict[str, str]:
    path = [str(ROOT)] if side == "ours" else [str(TRL_DIR), str(ROOT)]
    env = {"PYTHONPATH": os.pathsep.join(path + [os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    if side == "trl":
        env["TRL_EXPERIMENTAL_SILENCE"] = "1"
    return env


def summarise(run: dict) -> dict:
    """Seconds per update after the warm-up one (median: a neighbour's burst on a shared machine hits one
    update, not the figure), and the per-phase breakdown taken the same way."""
    steady = run["update_seconds"][1:] or run["update_seconds"]
    per_update = statistics.median(steady)
    breakdown = {}
    for phase in PHASES[:-1]:
        values = run["breakdown"].get(phase, [0.0] * len(run["update_seconds"]))
        breakdown[phase] = statistics.median(values[1:] or values)
    breakdown["other"] = max(0.0, per_update - sum(breakdown.values()))
    return {"seconds_per_update": per_update, "breakdown": breakdown}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="TRL/ours pairs to run (at least 2)")
    parser.add_argument("--updates", type=int, default=4, help="PPO updates per run (at least 3; the first is "
                                                                  "warm-up)")
    parser.add_argument("--child", choices=["prepare", "ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "prepare":
        return prepare()
    if args.child == "ours":
        return child_ours(Path(args.base), args.updates)
    if args.child == "trl":
        return child_trl(Path(args.base), args.updates)
    if args.pairs < 2 or args.updates < 3:
        raise SystemExit("use --pairs >= 2 and --updates >= 3")
    ensure_trl()
    prepared, _ = run_child(["--child", "prepare"], side_env("ours"))
    base = prepared["base"]
    print(f"model {base}\nreward model {prepared['rm_adapter']} (ours) / {prepared['rm_full']} (TRL)")
    print(f"{os.cpu_count()} CPU cores; {args.pairs} pairs x {args.updates} updates; first update is warm-up\n")
    results: dict[str, list[dict]] = {"trl": [], "ours": []}
    for pair in range(args.pairs):
        for side in ("trl", "ours"):
            started = time.perf_counter()
            run, peak = run_child(["--child", side, "--base", base, "--updates", str(args.updates)], side_env(side))
            summary = summarise(run) | {"peak_rss_bytes": peak, "updates": run["update_seconds"],
                                        "wall_seconds": time.perf_counter() - started,
                                        "load_average": os.getloadavg()[0]}  # other work on the machine
            results[side].append(summary)
            print(f"pair {pair + 1} {side:>4}: {summary['seconds_per_update']:6.2f} s/update "
                  f"(updates {', '.join(f'{u:.2f}' for u in run['update_seconds'])}), "
                  f"peak RSS {peak / 2**30:.2f} GiB, load average {summary['load_average']:.1f}", flush=True)
    report(results)


def report(results: dict[str, list[dict]]) -> None:
    print("\nwhere an update's time goes (seconds, median over runs, warm-up excluded):")
    print(f"{'phase':>22} {'TRL':>8} {'ours':>8}")
    for phase in PHASES:
        trl = statistics.median(r["breakdown"][phase] for r in results["trl"])
        ours = statistics.median(r["breakdown"][phase] for r in results["ours"])
        print(f"{phase:>22} {trl:8.2f} {ours:8.2f}")
    time_ratios = [o["seconds_per_update"] / t["seconds_per_update"] for t, o in zip(results["trl"], results["ours"])]
    mem_ratios = [o["peak_rss_bytes"] / t["peak_rss_bytes"] for t, o in zip(results["trl"], results["ours"])]
    step_ratio, mem_ratio = statistics.median(time_ratios), statistics.median(mem_ratios)
    print(f"\nstep time ours/TRL: {step_ratio:.3f} (target <= 0.6); pairs {[round(r, 3) for r in time_ratios]}")
    print(f"peak memory ours/TRL: {mem_ratio:.3f} (target <= 0.4); pairs {[round(r, 3) for r in mem_ratios]}")
    print(json.dumps({
        "step_time_ratio": round(step_ratio, 4), "peak_memory_ratio": round(mem_ratio, 4),
        "step_time_target_met": step_ratio <= 0.6, "peak_memory_target_met": mem_ratio <= 0.4,
        "trl_seconds_per_update": [round(r["seconds_per_update"], 3) for r in results["trl"]],
        "ours_seconds_per_update": [round(r["seconds_per_update"], 3) for r in results["ours"]],
        "load_averages": [[round(t["load_average"], 2), round(o["load_average"], 2)]
                          for t, o in zip(results["trl"], results["ours"])],
        "trl_peak_rss_bytes": [r["peak_rss_bytes"] for r in results["trl"]],
        "ours_peak_rss_bytes": [r["peak_rss_bytes"] for r in results["ours"]],
        "trl_breakdown": results["trl"][-1]["breakdown"], "ours_breakdown": results["ours"][-1]["breakdown"],
        "settings": {"batch": BATCH, "response_length": RESPONSE_LENGTH, "ppo_epochs": PPO_EPOCHS,
                     "mini_batches": MINI_BATCHES, **LORA, "cpu_count": os.cpu_count(), "trl": TRL_VERSION},
    }))


# -- children ----------------------------------------------------------------------------------------
def prepare() -> None:
    """The base model folder and the shared reward model (LoRA adapter for ours, merged full for TRL)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from rlhf_desktop.modeling.default_model import default_model_dir
    from rlhf_desktop.modeling.loading import load_tokenizer
    from rlhf_desktop.training.common import write_metadata

    base = default_model_dir()
    adapter_dir, full_dir = WORK / "rm-adapter", WORK / "rm-full"
    if not (full_dir / "config.json").is_file() or not (adapter_dir / "rlhf_desktop.json").is_file():
        torch.manual_seed(SEED)
        tokenizer = load_tokenizer(base)
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
        model.config.pad_token_id = tokenizer.pad_token_id
        lora = LoraConfig(**LORA, task_type="SEQ_CLS", init_lora_weights=False)  # random B: a non-trivial RM
        peft_model = get_peft_model(model, lora)
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.data.mul_(0.01)  # keep the random RM close to the base
        peft_model.save_pretrained(adapter_dir)
        tokenizer.save_pretrained(adapter_dir)
        write_metadata(adapter_dir, stage="rm", task="reward", format="lora", base_model=str(base), step=0)
        peft_model.merge_and_unload().save_pretrained(full_dir)
        tokenizer.save_pretrained(full_dir)
    print(json.dumps({"base": str(base), "rm_adapter": str(adapter_dir), "rm_full": str(full_dir)}))


def _self_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child_ours(base: Path, updates: int) -> None:
    import torch

    from rlhf_desktop.core.context import RecordingContext
    from rlhf_desktop.training.common import ModelRef
    from rlhf_desktop.training.ppo import PPORunConfig
    from rlhf_desktop.training.ppo.engine import prepare_ppo

    torch.manual_seed(SEED)
    config = PPORunConfig(learning_rate=LEARNING_RATE, max_steps=updates, batch_size=BATCH,
                          mini_batches=MINI_BATCHES, ppo_epochs=PPO_EPOCHS, response_length=RESPONSE_LENGTH,
                          temperature=TEMPERATURE, kl_coef=KL_COEF, lora_r=LORA["r"], lora_alpha=LORA["lora_alpha"],
                          lora_target_modules=LORA["target_modules"], save_every=10_000, seed=SEED, device="cpu")
    ctx = RecordingContext()
    stamps: list[float] = []
    ctx.on_report = lambda step, metrics: stamps.append(time.perf_counter())
    loop = prepare_ppo(config, PROMPTS, ModelRef(base=str(base)), ctx, WORK / "ours-run",
                       reward_checkpoint=str(WORK / "rm-adapter"))
    start = time.perf_counter()
    result = loop.run()
    if result.status != "done":
        raise SystemExit(f"our PPO run ended {result.status}: {result.error}")
    keys = {"generation": "time/generation", "reference": "time/reference", "reward": "time/reward",
            "ppo_forward_backward": "time/ppo_forward_backward", "optimizer": "time/optimizer"}
    breakdown = {phase: [m.get(key, 0.0) for _, m in ctx.metrics] for phase, key in keys.items()}
    breakdown["value"] = [0.0] * len(ctx.metrics)  # the values come out of the generation pass
    print(json.dumps({"side": "ours", "update_seconds": _diffs(start, stamps), "breakdown": breakdown,
                      "self_maxrss": _self_rss(), "scores": [m["objective/scores"] for _, m in ctx.metrics]}))


def _diffs(start: float, stamps: list[float]) -> list[float]:
    return [b - a for a, b in zip([start] + stamps[:-1], stamps)]


class _PhaseClock:
    """Wraps functions so that each call's seconds are added to a phase of the current update."""

    def __init__(self):
        self.current: dict[str, float] = {}
        self.updates: list[dict[str, float]] = []

    def wrap(self, fn, phase_of):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phase = phase_of(*args, **kwargs)
                self.current[phase] = self.current.get(phase, 0.0) + time.perf_counter() - started
        return timed

    def close_update(self) -> None:
        self.updates.append(self.current)
        self.current = {}


def child_trl(base: Path, updates: int) -> None:
    import torch
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, TrainerCallback

    if trl.__version__ != TRL_VERSION:
        raise SystemExit(f"expected trl {TRL_VERSION} first on PYTHONPATH, got {trl.__version__} ({trl.__file__})")
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer as trl_ppo

    from rlhf_desktop.modeling.loading import load_tokenizer
    from rlhf_desktop.training.ppo.rollout import encode_prompts

    torch.manual_seed(SEED)
    tokenizer = load_tokenizer(base)
    rows = encode_prompts(tokenizer, PROMPTS, 256)  # the very token ids our engine samples from
    dataset = Dataset.from_dict({"input_ids": rows})
    policy = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    reward = AutoModelForSequenceClassification.from_pretrained(WORK / "rm-full", num_labels=1, dtype=torch.float32)
    value = AutoModelForSequenceClassification.from_pretrained(WORK / "rm-full", num_labels=1, dtype=torch.float32)
    for model in (reward, value):
        model.config.pad_token_id = tokenizer.pad_token_id
    args = PPOConfig(output_dir=str(WORK / "trl-run"), per_device_train_batch_size=BATCH,
                     gradient_accumulation_steps=1, num_ppo_epochs=PPO_EPOCHS, num_mini_batches=MINI_BATCHES,
                     response_length=RESPONSE_LENGTH, total_episodes=BATCH * updates, learning_rate=LEARNING_RATE,
                     temperature=TEMPERATURE, kl_coef=KL_COEF, stop_token="eos", local_rollout_forward_batch_size=BATCH,
                     num_sample_generations=0, save_strategy="no", report_to="none", use_cpu=True, bf16=False,
                     seed=SEED, logging_steps=1, disable_tqdm=True)
    trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=None, reward_model=reward,
                         train_dataset=dataset, value_model=value, eval_dataset=dataset,
                         peft_config=LoraConfig(**LORA, task_type="CAUSAL_LM"))
    clock, stamps = _PhaseClock(), []
    trl_ppo.batch_generation = clock.wrap(trl_ppo.batch_generation, lambda *a, **k: "generation")
    trl_ppo.forward = clock.wrap(
        trl_ppo.forward, lambda *a, **k: "ppo_forward_backward" if torch.is_grad_enabled() else "reference")
    trl_ppo.get_reward = clock.wrap(trl_ppo.get_reward, lambda model, *a, **k: "reward" if model is reward else "value")
    trainer.accelerator.backward = clock.wrap(trainer.accelerator.backward, lambda *a, **k: "ppo_forward_backward")
    trainer.optimizer.step = clock.wrap(trainer.optimizer.step, lambda *a, **k: "optimizer")

    class Stamp(TrainerCallback):
        def on_step_end(self, *args, **kwargs):
            stamps.append(time.perf_counter())
            clock.close_update()

    trainer.add_callback(Stamp())
    start = time.perf_counter()
    trainer.train()
    breakdown = {phase: [u.get(phase, 0.0) for u in clock.updates] for phase in PHASES[:-1]}
    print(json.dumps({"side": "trl", "update_seconds": _diffs(start, stamps), "breakdown": breakdown,
                      "self_maxrss": _self_rss()}))


if __name__ == "__main__":
    main()
