"""Reward model with TRL's RewardTrainer: a 1-output sequence-classification head, Bradley-Terry loss.

A comparison's strength arrives as TRL's `margin` column (loss = -log sigmoid(r_chosen - r_rejected
- margin)); held-out pairs measure accuracy (`eval_accuracy`: the share where r_chosen > r_rejected).
Checkpoint layout and how to load one onto a base: see training/common.py.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

from rlhf_desktop.core.config import require
from rlhf_desktop.core.context import JobContext
from rlhf_desktop.core.results import RunResult
from rlhf_desktop.training.common import (
    COMMON_PRESETS, BaseRunConfig, ModelRef, device_settings, run_trainer, trainer_kwargs,
)


@dataclass
class RewardRunConfig(BaseRunConfig):
    """Reward model on labeled comparisons (LoRA plus a trained score head by default)."""

    learning_rate: float = field(default=1e-4, metadata={
        "help": "AdamW learning rate (TRL's reward default 1e-4; full fine-tuning ~1e-5)."})
    eval_fraction: float = field(default=0.1, metadata={
        "help": "Share of the pairs held out for accuracy when no prompt is marked held-out (0 = no evaluation)."})
    eval_every: int = field(default=0, metadata={
        "help": "Measure held-out accuracy every this many steps (0 = at every checkpoint); always at the end."})
    center_rewards_coefficient: float = field(default=0.0, metadata={
        "help": "Pull rewards toward mean zero with this weight (0 = off; 0.01 is the paper's value)."})

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "quick-cpu-demo": {**COMMON_PRESETS["quick-cpu-demo"], "learning_rate": 3e-4},
        "standard-gpu": {**COMMON_PRESETS["standard-gpu"], "learning_rate": 1e-4},
    }

    def validate(self) -> None:
        super().validate()
        require(0.0 <= self.eval_fraction <= 0.5, "eval_fraction", "must be between 0 and 0.5")
        require(self.eval_every >= 0, "eval_every", "must be 0 (at checkpoints) or a positive number of steps")
        require(self.center_rewards_coefficient >= 0, "center_rewards_coefficient", "must not be negative")


def split_eval(rows: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, eval): a seeded random `fraction` of the rows held out (none when it rounds to 0)."""
    count = int(len(rows) * fraction)
    if count == 0 or count >= len(rows):
        return list(rows), []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def preference_records(rows: list[dict[str, Any]], chat: bool, margin: bool = True) -> list[dict[str, Any]]:
    """TRL's preference format (conversational when the tokenizer has a chat template)."""
    out = []
    for r in rows:
        if chat:
            record = {"prompt": [{"role": "user", "content": r["prompt"]}],
                      "chosen": [{"role": "assistant", "content": r["chosen"]}],
                      "rejected": [{"role": "assistant", "content": r["rejected"]}]}
        else:
            record = {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
        if margin:
            record["margin"] = float(r.get("margin") or 0.0)
        out.append(record)
    return out


def train_eval_split(config: RewardRunConfig, data: dict[str, list[dict[str, Any]]]) -> tuple[list, list]:
    """The training and held-out pairs: the given eval split, else a seeded `eval_fraction` of train."""
    train, held = list(data.get("train") or []), list(data.get("eval") or [])
    if not held:
        train, held = split_eval(train, config.eval_fraction, config.seed)
    return train, held


def build_reward_trainer(config: RewardRunConfig, train: list[dict[str, Any]], held: list[dict[str, Any]],
                         models: ModelRef, output_dir: str | Path, callbacks: list | tuple = ()):
    """(RewardTrainer, StartModel) exactly as run_reward trains it."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from rlhf_desktop.training.checkpoints import load_start_model

    if not train:
        raise ValueError("no labeled comparisons to train on: label some pairs (left or right better) first")
    settings = device_settings(config)
    start = load_start_model(models, config, "reward", settings.weights_dtype)
    chat = bool(start.tokenizer.chat_template)
    args = RewardConfig(
        **trainer_kwargs(config, Path(output_dir), settings),
        eval_strategy="steps" if held else "no",
        eval_steps=config.eval_every or config.save_every,
        center_rewards_coefficient=config.center_rewards_coefficient or None,
    )
    trainer = RewardTrainer(
        model=start.model, args=args, train_dataset=Dataset.from_list(preference_records(train, chat)),
        eval_dataset=Dataset.from_list(preference_records(held, chat)) if held else None,
        processing_class=start.tokenizer, peft_config=start.peft_config, callbacks=list(callbacks))
    return trainer, start


def run_reward(config: RewardRunConfig, data: dict[str, list[dict[str, Any]]], models: ModelRef, ctx: JobContext,
               output_dir: str | Path, resume_from: str | None = None) -> RunResult:
    """Train a reward model on {"train": [...], "eval": [...]} rows {prompt, chosen, rejected, margin?}."""
    train, held = train_eval_split(config, data)

    def build(callback):
        trainer, start = build_reward_trainer(config, train, held, models, output_dir, [callback])
        callback.describe(start, models, config, "reward", len(train), eval_rows=len(held))
        return trainer

    if not held:
        ctx.log("no held-out pairs: accuracy is not measured (mark prompts held-out or raise eval_fraction)")
    return run_trainer("rm", config, ctx, build, resume_from)


# -- using a trained reward model ------------------------------------------------------------
def load_reward_model(checkpoint_dir: str | Path):
    """(model, tokenizer) of a reward-model checkpoint, in eval mode on the CPU (LoRA on its base, or full)."""
    from rlhf_desktop.training.checkpoints import load_checkpoint

    return load_checkpoint(checkpoint_dir, task="reward")


def encode_pair(tokenizer, prompt: str, response: str) -> list[int]:
    """Token ids of one (prompt, response) exactly as the reward trainer saw them."""
    if tokenizer.chat_template:
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
    text = prompt + response
    if not text.endswith(tokenizer.eos_token):
        text += tokenizer.eos_token
    return list(tokenizer(text)["input_ids"])


def score(model, tokenizer, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 8) -> list[float]:
    """The reward of each (prompt, response) pair, batched and right-padded like training."""
    import torch

    if len(prompts) != len(responses):
        raise ValueError("prompts and responses must have the same length")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    scores: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            ids = [encode_pair(tokenizer, p, r) for p, r in zip(prompts[start:start + batch_size],
                                                                responses[start:start + batch_size])]
            width = max(len(x) for x in ids)
            input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids], device=device)  # (B, T)
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=device)  # (B, T)
            logits = model(input_ids=input_ids, attention_mask=mask).logits  # (B, 1)
            scores.extend(float(v) for v in logits[:, 0].float().cpu())  # host-device sync
    return scores
