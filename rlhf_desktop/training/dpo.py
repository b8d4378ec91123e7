"""Direct preference optimisation with TRL's DPOTrainer on the labeled comparisons.

The reference model is the policy's own base with the adapter disabled (LoRA from the base model),
or a frozen copy of the parent adapter (LoRA continuing an SFT checkpoint: TRL keeps it as a second
adapter named "ref"), or a frozen copy of the starting weights (full fine-tuning).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rlhf_desktop.core.config import require
from rlhf_desktop.core.context import JobContext
from rlhf_desktop.core.results import RunResult
from rlhf_desktop.training.common import (
    COMMON_PRESETS, BaseRunConfig, ModelRef, device_settings, run_trainer, trainer_kwargs,
)
from rlhf_desktop.training.reward import preference_records

LOSS_TYPES = ("sigmoid", "hinge", "ipo", "robust", "apo_zero", "apo_down", "sppo_hard", "nca_pair", "bco_pair")


@dataclass
class DPORunConfig(BaseRunConfig):
    """DPO on labeled comparisons (winner = chosen)."""

    learning_rate: float = field(default=5e-5, metadata={
        "help": "AdamW learning rate (LoRA ~5e-6..1e-4; full fine-tuning ~1e-6, TRL's default)."})
    beta: float = field(default=0.1, metadata={
        "help": "Strength of the pull toward the reference: higher stays closer to it (typical 0.05-0.5)."})
    loss_type: str = field(default="sigmoid", metadata={
        "help": "DPO loss: sigmoid (the paper's), hinge, ipo, robust, apo_zero, apo_down, ..."})

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "quick-cpu-demo": {**COMMON_PRESETS["quick-cpu-demo"], "learning_rate": 1e-4},
        "standard-gpu": {**COMMON_PRESETS["standard-gpu"], "learning_rate": 5e-5},
    }

    def validate(self) -> None:
        super().validate()
        require(self.beta > 0, "beta", "must be greater than 0")
        require(self.loss_type in LOSS_TYPES, "loss_type", f"unknown loss {self.loss_type!r}",
                hint=f"one of {', '.join(LOSS_TYPES)}")


def build_dpo_trainer(config: DPORunConfig, data: list[dict[str, Any]], models: ModelRef, output_dir: str | Path,
                      callbacks: list | tuple = ()):
    """(DPOTrainer, StartModel) exactly as run_dpo trains it."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from rlhf_desktop.training.checkpoints import load_start_model

    if not data:
        raise ValueError("no labeled comparisons to train on: label some pairs (left or right better) first")
    settings = device_settings(config)
    start = load_start_model(models, config, "causal", settings.weights_dtype)
    ref_model = None
    if start.fmt == "full":  # TRL would reload the reference from the base path, missing a merged parent
        ref_model = copy.deepcopy(start.model).eval().requires_grad_(False)
    records = preference_records(data, bool(start.tokenizer.chat_template), margin=False)
    args = DPOConfig(**trainer_kwargs(config, Path(output_dir), settings), beta=config.beta,
                     loss_type=[config.loss_type])
    trainer = DPOTrainer(model=start.model, ref_model=ref_model, args=args, train_dataset=Dataset.from_list(records),
                         processing_class=start.tokenizer, peft_config=start.peft_config, callbacks=list(callbacks))
    return trainer, start


def run_dpo(config: DPORunConfig, data: list[dict[str, Any]], models: ModelRef, ctx: JobContext,
            output_dir: str | Path, resume_from: str | None = None) -> RunResult:
    """Train DPO on [{prompt, chosen, rejected, ...}]; checkpoints go to output_dir/checkpoint-<step>/."""

    def build(callback):
        trainer, start = build_dpo_trainer(config, data, models, output_dir, [callback])
        callback.describe(start, models, config, "causal", len(data))
        return trainer

    return run_trainer("dpo", config, ctx, build, resume_from)
