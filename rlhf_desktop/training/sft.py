"""Supervised fine-tuning on (prompt, completion) pairs with TRL's SFTTrainer: loss on the completion only."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rlhf_desktop.core.context import JobContext
from rlhf_desktop.core.results import RunResult
from rlhf_desktop.training.common import (
    COMMON_PRESETS, BaseRunConfig, ModelRef, device_settings, run_trainer, trainer_kwargs,
)


@dataclass
class SFTRunConfig(BaseRunConfig):
    """SFT on demonstrations and chosen responses (the chat template is applied when the model has one)."""

    learning_rate: float = field(default=2e-4, metadata={
        "help": "AdamW learning rate (LoRA tolerates ~1e-4..5e-4; full fine-tuning ~1e-5)."})

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "quick-cpu-demo": {**COMMON_PRESETS["quick-cpu-demo"], "learning_rate": 3e-4},
        "standard-gpu": {**COMMON_PRESETS["standard-gpu"], "learning_rate": 2e-4, "num_epochs": 2.0},
    }


def sft_records(rows: list[dict[str, Any]], chat: bool) -> list[dict[str, Any]]:
    """TRL's prompt-completion format: conversational when the tokenizer has a chat template."""
    if not chat:
        return [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
    return [{"prompt": [{"role": "user", "content": r["prompt"]}],
             "completion": [{"role": "assistant", "content": r["completion"]}]} for r in rows]


def build_sft_trainer(config: SFTRunConfig, data: list[dict[str, Any]], models: ModelRef, output_dir: str | Path,
                      callbacks: list | tuple = ()):
    """(SFTTrainer, StartModel) exactly as run_sft trains it (the benchmark builds one without our callback)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from rlhf_desktop.training.checkpoints import load_start_model

    if not data:
        raise ValueError("no SFT examples: write demonstrations or label comparisons first")
    settings = device_settings(config)
    start = load_start_model(models, config, "causal", settings.weights_dtype)
    dataset = Dataset.from_list(sft_records(data, bool(start.tokenizer.chat_template)))
    args = SFTConfig(**trainer_kwargs(config, Path(output_dir), settings), completion_only_loss=True)
    trainer = SFTTrainer(model=start.model, args=args, train_dataset=dataset, processing_class=start.tokenizer,
                         peft_config=start.peft_config, callbacks=list(callbacks))
    return trainer, start


def run_sft(config: SFTRunConfig, data: list[dict[str, Any]], models: ModelRef, ctx: JobContext,
            output_dir: str | Path, resume_from: str | None = None) -> RunResult:
    """Train SFT on [{prompt, completion}]; checkpoints go to output_dir/checkpoint-<step>/."""

    def build(callback):
        trainer, start = build_sft_trainer(config, data, models, output_dir, [callback])
        callback.describe(start, models, config, "causal", len(data))
        return trainer

    return run_trainer("sft", config, ctx, build, resume_from)
