"""The bridge between a JobContext and TRL's Trainer: metrics out, pause and stop in, checkpoints announced."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from rlhf_desktop.core.context import JobContext

# Trainer's end-of-training summary: a duplicate of what was logged per step, not a step metric.
_SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss")


def _floats(logs: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _any_rank(flag: bool) -> bool:
    """True when `flag` is true on any process: every rank must stop at the same step, or DDP hangs."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)  # host-device sync point, once per step
    return bool(value.item() > 0)


class ContextCallback(TrainerCallback):
    """Forwards TRL's logs to `ctx.report`, honours pause/stop at step boundaries, announces checkpoints.

    Pause: the step that finishes while paused is logged first (so the GUI shows where it paused),
    then the trainer waits inside that log call. Stop: at the first step boundary after the request
    (at the latest right after the current step is logged) a checkpoint is written and training
    ends; the run's status becomes "stopped". Every rank takes the same decision (one all-reduce).
    """

    def __init__(self, ctx: JobContext, stage: str, metadata: dict[str, Any] | None = None):
        self.ctx = ctx
        self.stage = stage
        self.metadata = dict(metadata or {})  # what rlhf_desktop.json gets besides step and created
        self.kind = "adapter"
        self.stopped = False
        self.step = 0
        self.last_checkpoint: str | None = None
        self.world_size = 1
        self._latest: dict[str, float] = {}
        self._pause_pending = False

    def describe(self, start: Any, models: Any, config: Any, task: str, data_rows: int, **extra: Any) -> None:
        """Record what rlhf_desktop.json will say about the checkpoints of this run."""
        from rlhf_desktop.training.checkpoints import start_metadata

        self.metadata.update(start_metadata(start, models, config, task, data_rows), **extra)
        self.kind = "adapter" if start.fmt == "lora" else "full"
        lora = getattr(start.model, "peft_config", {}).get("default")
        if models.adapter and lora is not None:
            self.ctx.log(f"continuing the parent adapter (r={lora.r}, alpha={lora.lora_alpha}, modules="
                         f"{','.join(sorted(lora.target_modules))}); lora_r, lora_alpha and lora_target_modules "
                         "of this config do not apply")

    # -- results ---------------------------------------------------------------------------
    def final_metrics(self) -> dict[str, float]:
        """The latest finite value of every metric reported (eval metrics included)."""
        return {k: v for k, v in self._latest.items() if math.isfinite(v)}

    def dropped_note(self, trainer: Any) -> None:
        """Tell the user when the trainer's length filter dropped rows."""
        given = self.metadata.get("data_rows")
        kept = len(getattr(trainer, "train_dataset", None) or [])
        if given and kept < given:
            self.ctx.log(f"{given - kept} of {given} training rows are longer than max_length and were left out")
        if given and kept == 0:
            from rlhf_desktop.core.errors import ConfigError

            raise ConfigError(f"none of the {given} training rows fits in max_length tokens", where="max_length",
                              hint="raise max_length")

    # -- TrainerCallback -------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        self.world_size = max(1, int(getattr(args, "world_size", 1)))
        self.step = state.global_step
        self.ctx.progress(state.global_step, state.max_steps)
        return control

    def on_step_begin(self, args, state, control, **kwargs):
        # A pause that arrived after the last boundary's log call waits here, before any new work.
        if self.ctx.paused and self.ctx.wait_if_paused():
            self._request_stop(control)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        self.step = state.global_step
        self.ctx.progress(state.global_step, state.max_steps)
        if _any_rank(self.ctx.should_stop()):
            self._request_stop(control)
        elif self.ctx.paused:
            control.should_log = True  # log this step now; the wait happens in on_log
            self._pause_pending = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        metrics = {k: v for k, v in _floats(logs or {}).items() if k not in _SUMMARY_KEYS}
        if set(metrics) - {"epoch"} and state.is_world_process_zero:
            self._latest.update(metrics)
            self.ctx.report(state.global_step, metrics)
        if _any_rank(self.ctx.should_stop()):  # asked during this step's report: save right after it
            self._request_stop(control)
        elif self._pause_pending:
            self._pause_pending = False
            if self.ctx.wait_if_paused():
                self._request_stop(control)
        return control

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            from rlhf_desktop.training.common import write_metadata

            write_metadata(folder, **self.metadata, stage=self.stage, step=state.global_step,
                           world_size=self.world_size)
            self.last_checkpoint = str(folder)
            self.ctx.checkpoint(state.global_step, str(folder), self.kind, self.final_metrics())
        return control

    def _request_stop(self, control) -> None:
        if not self.stopped:
            self.ctx.status("stopping: saving a checkpoint")
        self.stopped = True
        control.should_save = True
        control.should_training_stop = True
