"""Loading the model a stage starts from, and loading finished checkpoints (layout: see training/common.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf_desktop.core.errors import ConfigError, ModelLoadError
from rlhf_desktop.training.common import BaseRunConfig, ModelRef, read_metadata

TASKS = ("causal", "reward")


@dataclass
class StartModel:
    """What a stage trains: the model (plain or already PEFT), its tokenizer, the LoRA to add (if any)."""

    model: Any
    tokenizer: Any
    peft_config: Any  # a LoraConfig for the trainer to apply, or None (full, or adapter already attached)
    base_path: Path  # the resolved base model folder (recorded in every checkpoint)
    fmt: str  # "lora" or "full": what the checkpoints will hold


def resolve_base(spec: str | Path) -> Path:
    """The base model folder for `spec` ('default', an HF folder, a cached repo id)."""
    from rlhf_desktop.modeling.loading import resolve_model_path

    path = Path(resolve_model_path(str(spec)))
    if path.is_file():
        raise ModelLoadError("training needs a model folder, not a single .gguf file", where=str(path),
                             hint="use 'default' or convert the file to a folder first (Model > Load GGUF file)")
    return path.resolve()


def _auto_class(task: str):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForCausalLM if task == "causal" else AutoModelForSequenceClassification


def _load_pretrained(path: Path, task: str, dtype) -> Any:
    from transformers.utils import logging as hf_logging

    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True, "use_safetensors": True}
    if task == "reward":
        kwargs["num_labels"] = 1
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.weight newly initialized" is expected for a new reward head
    try:
        model = _auto_class(task).from_pretrained(str(path), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot load the model: {str(exc).splitlines()[0]}", where=str(path)) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return model


def _lora_config(config: BaseRunConfig, task: str, parent: dict[str, Any] | None = None):
    """Our LoRA settings, or the parent adapter's shape (rank, alpha, targets) when continuing one."""
    from peft import LoraConfig, TaskType

    r, alpha = config.lora_r, config.lora_alpha
    targets = list(config.lora_target_modules)
    if parent:
        r, alpha = int(parent["r"]), int(parent["lora_alpha"])
        targets = sorted(parent["target_modules"]) if not isinstance(parent["target_modules"], str) \
            else parent["target_modules"]
    return LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=config.lora_dropout, target_modules=targets, bias="none",
        task_type=TaskType.CAUSAL_LM if task == "causal" else TaskType.SEQ_CLS,
        modules_to_save=["score"] if task == "reward" else None,
    )


def _check_parent(adapter: Path, task: str) -> dict[str, Any]:
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError("the starting checkpoint has no LoRA adapter (adapter_config.json)", where=str(adapter),
                          hint="start from a LoRA checkpoint, or give a full checkpoint as the base model")
    meta = read_metadata(adapter)
    if meta.get("task") == "reward" and task != "reward":
        raise ConfigError("a reward-model checkpoint cannot start a policy stage", where=str(adapter),
                          hint="start SFT/DPO/PPO from the base model or an SFT/DPO checkpoint")
    return json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))


def load_start_model(models: ModelRef, config: BaseRunConfig, task: str, dtype) -> StartModel:
    """Load the base (causal LM or 1-label classifier) and, when given, the parent adapter on top.

    LoRA from a parent: the parent's adapter is copied into a trainable adapter of the same shape
    (a causal adapter loads into a reward model too: the layer names match; the head starts fresh).
    Full fine-tuning from a parent: the parent adapter is merged into the weights first.
    """
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from peft.utils import load_peft_weights

    from rlhf_desktop.modeling.loading import load_tokenizer

    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}")
    base = resolve_base(models.base)
    tokenizer = load_tokenizer(base)
    model = _load_pretrained(base, task, dtype)
    if task == "reward" and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id  # the head reads the last non-pad token
    if not models.adapter:
        if config.full_finetune:
            return StartModel(model, tokenizer, None, base, "full")
        return StartModel(model, tokenizer, _lora_config(config, task), base, "lora")
    adapter = Path(models.adapter)
    parent = _check_parent(adapter, task)
    model = get_peft_model(model, _lora_config(config, task, parent))
    # Start from the model's own fresh state so that a head the parent lacks (a causal parent of a
    # reward model has no `score`) keeps its new initialisation instead of failing the load.
    weights = get_peft_model_state_dict(model)
    weights.update(load_peft_weights(str(adapter), device="cpu"))
    result = set_peft_model_state_dict(model, weights)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing:
        raise ModelLoadError(f"the parent adapter does not fit this model ({len(missing)} LoRA weights missing, "
                             f"e.g. {missing[0]})", where=str(adapter), hint="start from the adapter's own base model")
    if config.full_finetune:
        return StartModel(model.merge_and_unload(), tokenizer, None, base, "full")
    return StartModel(model, tokenizer, None, base, "lora")


def load_checkpoint(folder: str | Path, task: str | None = None, dtype=None):
    """(model, tokenizer) of a finished checkpoint, in eval mode on the CPU: LoRA on its base, or full.

    task: "causal" or "reward" (default: what the checkpoint's rlhf_desktop.json says).
    """
    import torch
    from peft import PeftModel

    from rlhf_desktop.modeling.loading import load_tokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise ModelLoadError("no such checkpoint folder", where=str(folder))
    meta = read_metadata(folder)
    task = task or meta.get("task", "causal")
    dtype = dtype or torch.float32
    tokenizer = load_tokenizer(folder)
    if (folder / "adapter_config.json").is_file():
        base = meta.get("base_model") or json.loads((folder / "adapter_config.json").read_text())[
            "base_model_name_or_path"]
        model = _load_pretrained(resolve_base(base), task, dtype)
        model = PeftModel.from_pretrained(model, str(folder))
    else:
        model = _load_pretrained(folder, task, dtype)
    if task == "reward" and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer


def start_metadata(start: StartModel, models: ModelRef, config: BaseRunConfig, task: str,
                   data_rows: int) -> dict[str, Any]:
    """The fields of rlhf_desktop.json a stage knows once its model is loaded."""
    from rlhf_desktop.training.common import config_dict

    return {"format": start.fmt, "task": task, "base_model": str(start.base_path),
            "parent_checkpoint": str(models.adapter) if models.adapter else None,
            "config": config_dict(config), "data_rows": data_rows}
