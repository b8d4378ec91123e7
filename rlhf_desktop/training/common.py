"""What every training stage shares: the model reference, the base config, presets, the TRL engine loop.

Every stage is a plain function `run_<stage>(config, data, models, ctx, output_dir, resume_from=None)
-> RunResult` that knows nothing of Qt or of the project store (the runner adds those).

Checkpoint layout
-----------------
TRL's Trainer writes `<output_dir>/checkpoint-<step>/` every `save_every` steps, at the end, and when
a stop is requested. Each folder is self-describing:

    adapter_config.json, adapter_model.safetensors   LoRA runs: the adapter only (PEFT format)
    config.json, model.safetensors                   full fine-tuning: the whole model instead
    tokenizer.json, tokenizer_config.json, ...       the tokenizer the run trained with
    trainer_state.json, optimizer.pt, scheduler.pt,  what `trainer.train(resume_from_checkpoint=...)`
    rng_state.pth, training_args.bin                 needs to continue the step count exactly
    rlhf_desktop.json                                {stage, format ("lora" | "full"), task ("causal" |
                                                     "reward"), base_model (resolved folder),
                                                     parent_checkpoint (folder or null), step, config,
                                                     created, world_size; the runner adds run_id}

A LoRA checkpoint always sits on `base_model` itself: a run that starts from a parent LoRA
checkpoint (ModelRef.adapter) keeps training a copy of that adapter (same rank and target modules),
so every adapter in a lineage loads onto the same base and one base in memory can carry several.
A DPO run continuing a parent adapter also holds `ref/`: TRL's frozen copy of the parent, its reference.

Reward-model checkpoints (stage "rm", task "reward"): the base is loaded as
`AutoModelForSequenceClassification(base_model, num_labels=1)` (a `score` Linear(hidden, 1, bias=False)
on the last non-pad token's hidden state); the adapter is PEFT task_type SEQ_CLS with `score` in
`modules_to_save`, so adapter_model.safetensors holds the LoRA weights under
`base_model.model.model.layers.*` and the trained head as `base_model.model.score.weight`. Load it
with `PeftModel.from_pretrained(seqcls_base, folder)`, or simply `reward.load_reward_model(folder)`.
The score of a (prompt, response) pair is the head's output on the chat-templated conversation
[user: prompt, assistant: response] (plain `prompt + response + eos` without a chat template), right-padded:
`reward.score(model, tokenizer, prompts, responses)`. A full-fine-tuned reward model (format "full")
is a plain sequence-classification folder.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from rlhf_desktop.core.config import require
from rlhf_desktop.core.context import JobContext
from rlhf_desktop.core.errors import UserError
from rlhf_desktop.core.results import RunResult

METADATA_FILE = "rlhf_desktop.json"


@dataclass
class ModelRef:
    """Where a stage starts: a base model, optionally with a parent LoRA checkpoint on top."""

    base: str = "default"  # a model spec: "default", an HF folder, a repo id in the local cache
    adapter: str | None = None  # a parent LoRA checkpoint folder to continue from
    full: bool = False  # `base` is one of our full fine-tuned checkpoints (informational, for lineage)


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


# Presets shared by every stage; each stage config adds or overrides its own in `PRESETS`.
COMMON_PRESETS: dict[str, dict[str, Any]] = {
    "quick-cpu-demo": {"max_steps": 30, "per_device_batch_size": 2, "grad_accum": 1, "max_length": 256,
                       "lora_r": 8, "lora_alpha": 16, "save_every": 10, "device": "cpu",
                       "gradient_checkpointing": False},
    "standard-gpu": {"max_steps": 0, "num_epochs": 1.0, "per_device_batch_size": 8, "grad_accum": 2,
                     "max_length": 1024, "lora_r": 16, "lora_alpha": 32, "save_every": 100, "device": "auto",
                     "gradient_checkpointing": True},
}


@dataclass
class BaseRunConfig:
    """Hyperparameters every TRL stage shares (SFT, reward model, DPO)."""

    learning_rate: float = _f(2e-4, "AdamW learning rate (LoRA tolerates ~1e-4..5e-4; full fine-tuning ~1e-5).")
    max_steps: int = _f(0, "Optimizer steps to train in total; 0 trains for num_epochs instead.")
    num_epochs: float = _f(1.0, "Passes over the data when max_steps is 0 (fractions allowed).")
    per_device_batch_size: int = _f(4, "Examples (pairs for RM/DPO) per forward pass on each device. "
                                       "Lower it first when memory runs out.")
    grad_accum: int = _f(1, "Forward passes accumulated per optimizer step (same effective batch, less memory).")
    max_length: int = _f(512, "Longest tokenized sequence in tokens; longer ones are truncated (RM: dropped).")
    lora_r: int = _f(16, "LoRA rank: capacity of the adapter (higher = more memory and parameters).")
    lora_alpha: int = _f(32, "LoRA alpha: the adapter's scale is alpha / r.")
    lora_dropout: float = _f(0.05, "Dropout on the LoRA path during training.")
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"], metadata={
        "help": "Module names that get LoRA layers, e.g. q_proj,v_proj (add k_proj,o_proj,... for more capacity)."})
    full_finetune: bool = _f(False, "Train every weight instead of a LoRA adapter (needs ~4x the model's memory).")
    save_every: int = _f(50, "Write a checkpoint every this many steps (and always at the end and on stop).")
    logging_steps: int = _f(1, "Report metrics every this many steps.")
    seed: int = _f(42, "Random seed for the adapter's initialisation, data order and dropout.")
    device: str = _f("auto", "'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    dtype: str = _f("auto", "Weights' dtype: 'auto' (bf16 on capable GPUs, fp32 on CPU), float32, bfloat16.")
    warmup_ratio: float = _f(0.0, "Fraction of the steps over which the learning rate warms up from 0.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    lr_scheduler: str = _f("linear", "Learning-rate schedule: linear, cosine or constant.")
    max_grad_norm: float = _f(1.0, "Clip the gradient norm to this before each step (0 = off).")
    gradient_checkpointing: bool = _f(False, "Recompute activations in the backward pass: much less memory, "
                                             "~20-30% slower.")
    leave_core_for_gui: bool = _f(False, "On the CPU use one thread fewer than the cores (the GUI sets this).")

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = COMMON_PRESETS

    def validate(self) -> None:
        """Raise ConfigError naming the first field that has to change."""
        for name in ("learning_rate", "per_device_batch_size", "grad_accum", "max_length", "save_every",
                     "logging_steps", "lora_r", "lora_alpha"):
            require(getattr(self, name) > 0, name, "must be greater than 0")
        require(self.max_steps >= 0, "max_steps", "must be 0 (use num_epochs) or a positive number of steps")
        require(self.max_steps > 0 or self.num_epochs > 0, "num_epochs", "must be > 0 when max_steps is 0")
        require(0.0 <= self.lora_dropout < 1.0, "lora_dropout", "must be in [0, 1)")
        require(0.0 <= self.warmup_ratio < 1.0, "warmup_ratio", "must be in [0, 1)")
        require(self.weight_decay >= 0, "weight_decay", "must not be negative")
        require(self.max_grad_norm >= 0, "max_grad_norm", "must not be negative (0 turns clipping off)")
        require(self.lr_scheduler in ("linear", "cosine", "constant"), "lr_scheduler",
                f"must be linear, cosine or constant, not {self.lr_scheduler!r}")
        require(self.full_finetune or bool(self.lora_target_modules), "lora_target_modules",
                "name at least one module (e.g. q_proj,v_proj)", hint="or set full_finetune=true")
        require(self.dtype in ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16"), "dtype",
                f"unknown dtype {self.dtype!r}", hint="use auto, float32 or bfloat16")


def preset(cls: type, name: str, **overrides: Any) -> Any:
    """A `cls` config built from preset `name` plus `overrides`, validated."""
    from rlhf_desktop.core.config import from_dict
    from rlhf_desktop.core.errors import ConfigError

    presets = getattr(cls, "PRESETS", {})
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r}", where="preset", hint=f"one of {', '.join(sorted(presets))}")
    return from_dict(cls, {**presets[name], **overrides}, source=f"preset {name}")


def config_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a plain JSON-able dict."""
    return dataclasses.asdict(config)


# -- checkpoint metadata ---------------------------------------------------------------------
def write_metadata(folder: str | Path, **fields: Any) -> Path:
    """Write (or update) `rlhf_desktop.json` in a checkpoint folder."""
    path = Path(folder) / METADATA_FILE
    data = read_metadata(folder) if path.is_file() else {}
    data.update(fields)
    data.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_metadata(folder: str | Path) -> dict[str, Any]:
    """The `rlhf_desktop.json` of a checkpoint folder ({} when it has none)."""
    path = Path(folder) / METADATA_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


# -- failure handling ------------------------------------------------------------------------
def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "not enough memory" in text or "can't allocate memory" in text


def failure_message(exc: BaseException, config: Any) -> str:
    """One paragraph: what happened and what to change."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, UserError):
        return str(exc)
    if is_out_of_memory(exc):
        batch = getattr(config, "per_device_batch_size", "?")
        length = getattr(config, "max_length", "?")
        rank = getattr(config, "lora_r", "?")
        return (f"out of memory ({type(exc).__name__}: {first}). Lower per_device_batch_size (now {batch}) and "
                f"raise grad_accum to keep the effective batch, lower max_length (now {length}), turn on "
                f"gradient_checkpointing, or use a smaller LoRA rank (lora_r, now {rank}) instead of "
                "full fine-tuning.")
    return (f"{type(exc).__name__}: {first.rstrip('.')}. The run log has the full traceback; fix the setting or "
            "data it names and resume the run, or start a new one.")


def free_memory() -> None:
    """Drop what a finished or failed run left behind (the caller has dropped its references)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        mps.empty_cache()


# -- the TRL engine loop ---------------------------------------------------------------------
@dataclass
class DeviceSettings:
    """Where and in what precision a stage trains."""

    device: str  # "cpu", "cuda", "cuda:N", "mps"
    weights_dtype: Any  # torch dtype the model is loaded in
    mixed: str | None  # "bf16", "fp16" (autocast) or None


def device_settings(config: BaseRunConfig) -> DeviceSettings:
    """LoRA: weights in the device's preferred dtype; full fine-tuning: fp32 weights with autocast."""
    import torch

    from rlhf_desktop.modeling.device import choose_device, choose_dtype

    device = choose_device(config.device)
    if device.startswith("cuda:") and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        torch.cuda.set_device(device)  # the Trainer trains on the current "cuda" device of this thread
    dtype = getattr(config, "dtype", "auto")  # PPO's config has no dtype field
    preferred = choose_dtype(device, dtype)
    mixed = None
    if device != "cpu":
        mixed = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(preferred)
    weights = preferred
    if getattr(config, "full_finetune", False) and dtype == "auto":
        weights = torch.float32  # AdamW on half-precision weights loses small updates
    return DeviceSettings(device, weights, mixed)


def trainer_kwargs(config: BaseRunConfig, output_dir: Path, settings: DeviceSettings) -> dict[str, Any]:
    """TrainingArguments fields every stage sets the same way."""
    device = settings.device
    return dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        max_steps=config.max_steps if config.max_steps > 0 else -1,
        num_train_epochs=config.num_epochs,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_every,
        seed=config.seed,
        activation_checkpointing=config.gradient_checkpointing,  # transformers 5 name of gradient_checkpointing
        use_cpu=device == "cpu",
        bf16=settings.mixed == "bf16",
        fp16=settings.mixed == "fp16",
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=device.startswith("cuda"),
        ddp_find_unused_parameters=False,  # every trainable parameter is used (LoRA or full); saves a graph walk
        max_length=config.max_length,
    )


def run_trainer(stage: str, config: BaseRunConfig, ctx: JobContext, build: Callable[[Any], Any],
                resume_from: str | None = None) -> RunResult:
    """Build a TRL trainer with `build(callback)`, train it, and turn the outcome into a RunResult.

    Every exception becomes a failed RunResult whose error says what to change; the traceback goes
    to the run log; memory is freed whatever happens.
    """
    from transformers import PrinterCallback

    from rlhf_desktop.training.callback import ContextCallback

    callback = ContextCallback(ctx, stage)
    trainer = None
    saved_tokenizer = None
    threads = _limit_threads(config)
    # Everything alive before the run outlives it: frozen, it is skipped by the garbage collections
    # made during the run (automatic ones, the Trainer's own, ours at the end), which otherwise walk
    # the whole heap holding the GIL and stall the GUI thread for ~0.3 s each (bench/training.py).
    gc.freeze()
    try:
        config.validate()
        ctx.status("loading model")
        _quiet_libraries()
        trainer = build(callback)
        trainer.remove_callback(PrinterCallback)  # it prints every log dict on stdout, which the CLI keeps for JSON
        callback.dropped_note(trainer)
        saved_tokenizer = _save_tokenizer_once(trainer)
        if ctx.should_stop():  # stopped while loading: nothing trained, nothing new to save
            ctx.status("stopped")
            return RunResult("stopped", _checkpoint_step(resume_from), {}, resume_from)
        ctx.status("training")
        trainer.train(resume_from_checkpoint=resume_from)
        status = "stopped" if callback.stopped else "done"
        ctx.status(status)
        return RunResult(status, int(trainer.state.global_step), callback.final_metrics(), callback.last_checkpoint)
    except Exception as exc:  # every failure ends the run, never the app
        ctx.log(traceback.format_exc())
        message = failure_message(exc, config)
        ctx.status("failed")
        step = int(trainer.state.global_step) if trainer is not None else callback.step
        return RunResult("failed", step, callback.final_metrics(), callback.last_checkpoint, error=message)
    finally:
        trainer = None
        if saved_tokenizer is not None:
            saved_tokenizer.cleanup()
        _restore_threads(threads)
        free_memory()  # collects what the run built (the model and trainer hold reference cycles)
        gc.unfreeze()


def _save_tokenizer_once(trainer: Any) -> Any:
    """Make the Trainer copy the tokenizer's files into each checkpoint instead of re-serialising it.

    The tokenizer does not change during a run, and serialising a 49k-token vocabulary holds the GIL
    for ~0.1 s, a visible stall of the GUI at every checkpoint (bench/training.py). It is saved once
    here, while the model loads, and the files are copied afterwards.
    """
    import shutil
    import tempfile

    tokenizer = getattr(trainer, "processing_class", None)
    if tokenizer is None or not hasattr(tokenizer, "save_pretrained"):
        return None
    cache = tempfile.TemporaryDirectory(prefix="rlhf-desktop-tokenizer-")
    files = [Path(p) for p in tokenizer.save_pretrained(cache.name)]

    def save_pretrained(save_directory, *args, **kwargs):
        Path(save_directory).mkdir(parents=True, exist_ok=True)
        return tuple(shutil.copy2(f, Path(save_directory) / f.name) for f in files if f.is_file())

    tokenizer.save_pretrained = save_pretrained  # this run's tokenizer object only
    return cache


def _checkpoint_step(folder: str | None) -> int:
    """The global step a Trainer checkpoint folder was written at (0 for None)."""
    if not folder:
        return 0
    state = json.loads((Path(folder) / "trainer_state.json").read_text(encoding="utf-8"))
    return int(state.get("global_step", 0))


def _quiet_libraries() -> None:
    """No tqdm bars from datasets' map or weight loading: progress goes through the context instead."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()


def _limit_threads(config: BaseRunConfig) -> int | None:
    import torch

    if not config.leave_core_for_gui:
        return None
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    return before


def _restore_threads(before: int | None) -> None:
    import torch

    if before is not None:
        torch.set_num_threads(before)


from rlhf_desktop.training.memory import estimate_memory  # noqa: E402  (re-exported: the public name)

__all__ = ["ModelRef", "BaseRunConfig", "COMMON_PRESETS", "METADATA_FILE", "preset", "config_dict",
           "write_metadata", "read_metadata", "failure_message", "free_memory", "run_trainer",
           "trainer_kwargs", "device_settings", "DeviceSettings", "estimate_memory"]
