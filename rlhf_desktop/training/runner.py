"""The glue the GUI and the CLI both call: a stage run recorded in the project store.

`start_run` creates (or resumes) the run row with its full config, data snapshot size and hash, base
model and lineage; takes the immutable data snapshot; dispatches to `run_<stage>`; and records the
outcome. `RunRecorder` is the JobContext that persists what the stage reports (metrics, samples,
checkpoints, status) and forwards everything to the caller's context (the GUI's or the CLI's).

Under `accelerate launch` / `torchrun` every process runs `start_run`; rank 0 alone writes to the
project (run row, metrics, checkpoints) and shares the plan (run id, config, data) with the others.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from rlhf_desktop.core.config import from_dict
from rlhf_desktop.core.context import JobContext
from rlhf_desktop.core.errors import ConfigError, DataError, UserError
from rlhf_desktop.core.results import RunResult
from rlhf_desktop.modeling.stack import import_ml_stack
from rlhf_desktop.store import runs as store
from rlhf_desktop.store import snapshot
from rlhf_desktop.store.project import Project
from rlhf_desktop.training.common import ModelRef, config_dict, failure_message, free_memory, read_metadata, \
    write_metadata
from rlhf_desktop.training.dpo import DPORunConfig
from rlhf_desktop.training.reward import RewardRunConfig
from rlhf_desktop.training.sft import SFTRunConfig

STAGE_CONFIGS: dict[str, type] = {"sft": SFTRunConfig, "rm": RewardRunConfig, "dpo": DPORunConfig}
STAGE_TITLES = {"sft": "Supervised fine-tuning", "rm": "Reward model", "dpo": "DPO", "ppo": "PPO"}
DATA_FILE = "data.json"  # the run's immutable snapshot, beside its checkpoints
LOG_FILE = "run.log"
_EXTRA_KEYS = ("reward_run_id", "reward_checkpoint")  # stored with the config, not config fields


def stage_config_class(stage: str) -> type:
    """The config dataclass of a stage ("ppo" is imported on first use)."""
    if stage == "ppo" and "ppo" not in STAGE_CONFIGS:
        from rlhf_desktop.training.ppo import PPORunConfig

        STAGE_CONFIGS["ppo"] = PPORunConfig
    if stage not in STAGE_CONFIGS and stage != "ppo":
        raise ConfigError(f"unknown stage {stage!r}", where="stage", hint="one of sft, rm, dpo, ppo")
    return STAGE_CONFIGS[stage]


@dataclass
class RunOutcome(RunResult):
    """A RunResult plus the project's run id and how many processes trained it."""

    run_id: int = 0
    world_size: int = 1


# -- the recording context -------------------------------------------------------------------
class RunRecorder(JobContext):
    """Persists a run's reports in its own connection and forwards everything downstream.

    Pause and stop share the downstream context's flags, so the GUI's pause() reaches the job.
    Metrics are buffered and written every `flush_seconds` or `flush_steps` steps (and at every
    checkpoint, status change and close).
    """

    def __init__(self, project_dir: str | Path, run_id: int, downstream: JobContext | None = None,
                 flush_seconds: float = 1.0, flush_steps: int = 20):
        super().__init__()
        self.run_id = int(run_id)
        self.downstream = downstream
        if downstream is not None:
            self._stop, self._running = downstream._stop, downstream._running
        self.project = Project.open(project_dir)
        self.flush_seconds, self.flush_steps = flush_seconds, flush_steps
        self._buffer: dict[int, tuple[float, dict[str, float]]] = {}
        self._last_flush = time.monotonic()
        self._log_path = store.run_dir(self.project, run_id) / LOG_FILE
        self._log_path.parent.mkdir(parents=True, exist_ok=True)

    def flush(self) -> None:
        if self._buffer:
            rows = [(step, wall, metrics) for step, (wall, metrics) in sorted(self._buffer.items())]
            self._buffer.clear()
            store.add_metrics(self.project, self.run_id, rows)
        self._last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()
        self.project.close()

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        wall, merged = self._buffer.get(int(step), (0.0, {}))
        merged.update(metrics)
        self._buffer[int(step)] = (time.time(), merged)
        if len(self._buffer) >= self.flush_steps or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()
        if self.downstream is not None:
            self.downstream.report(step, metrics)

    def samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        store.add_samples(self.project, self.run_id, step, rows)
        if self.downstream is not None:
            self.downstream.samples(step, rows)

    def checkpoint(self, step: int, path: str, kind: str = "adapter",
                   metrics: Mapping[str, float] | None = None) -> None:
        self.flush()
        checkpoint_id = store.add_checkpoint(self.project, self.run_id, step, path, kind, metrics)
        write_metadata(path, run_id=self.run_id, checkpoint_id=checkpoint_id)
        if self.downstream is not None:
            self.downstream.checkpoint(step, path, kind, metrics)

    def status(self, text: str) -> None:
        if text in ("paused", "resumed"):
            self.flush()
            store.set_run_status(self.project, self.run_id, "paused" if text == "paused" else "running")
        self.log(f"[status] {text}")
        if self.downstream is not None:
            self.downstream.status(text)

    def progress(self, done: float, total: float | None) -> None:
        if self.downstream is not None:
            self.downstream.progress(done, total)

    def log(self, text: str) -> None:
        with open(self._log_path, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text.rstrip()}\n")
        if self.downstream is not None and not text.startswith("[status]"):
            self.downstream.log(text)


# -- planning a run --------------------------------------------------------------------------
@dataclass
class RunPlan:
    """Everything a process needs to train: decided by rank 0, shared with the others."""

    run_id: int
    stage: str
    config: Any
    models: ModelRef
    data: Any
    output_dir: str
    resume_from: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # reward_checkpoint for ppo


def _build_config(stage: str, config: Any, stored: Mapping[str, Any] | None = None) -> Any:
    cls = stage_config_class(stage)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config.validate()
        return config
    values = {k: v for k, v in dict(stored or {}).items() if k not in _EXTRA_KEYS}
    values.update(dict(config or {}))
    return from_dict(cls, values, source="config")


def models_from_checkpoint(project: Project, checkpoint_id: int) -> tuple[ModelRef, int]:
    """(where a child run starts, the checkpoint's run id) for a checkpoint of this project."""
    ckpt = store.get_checkpoint(project, checkpoint_id)
    folder = Path(ckpt["abs_path"])
    if not folder.is_dir():
        raise DataError(f"checkpoint {checkpoint_id} is gone from disk", where=str(folder),
                        hint="choose another checkpoint")
    meta = read_metadata(folder)
    if meta.get("format") == "full" or not (folder / "adapter_config.json").is_file():
        return ModelRef(base=str(folder), full=True), int(ckpt["run_id"])
    return ModelRef(base=str(meta.get("base_model") or "default"), adapter=str(folder)), int(ckpt["run_id"])


def take_snapshot(project: Project, stage: str) -> Any:
    """The stage's training data from the database, as plain rows (raises DataError when empty)."""
    if stage == "sft":
        data = snapshot.sft_snapshot(project)
        size = len(data)
    elif stage == "rm":
        data = {"train": snapshot.preference_snapshot(project, "train"),
                "eval": snapshot.preference_snapshot(project, "heldout")}
        size = len(data["train"])
    elif stage == "dpo":
        data = snapshot.preference_snapshot(project, "train")
        size = len(data)
    else:
        data = snapshot.prompt_snapshot(project, "train")
        size = len(data)
    if size == 0:
        what = {"sft": "demonstrations or labeled comparisons", "ppo": "prompts"}.get(stage, "labeled comparisons")
        raise DataError(f"no training data: this project has no {what} (train split)", where=str(project.folder),
                        hint="label some pairs (or write demonstrations) first")
    return data


def _data_size(data: Any) -> int:
    if isinstance(data, dict):
        return sum(len(v) for v in data.values())
    return len(data)


def _reward_checkpoint(project: Project, reward_run_id: int | None) -> str:
    if reward_run_id is None:
        raise ConfigError("PPO needs a reward model", where="reward_run_id", hint="choose a reward-model run")
    run = store.get_run(project, reward_run_id)
    if run["stage"] != "rm":
        raise ConfigError(f"run {reward_run_id} is a {run['stage']} run, not a reward model", where="reward_run_id")
    ckpt = store.latest_checkpoint(project, reward_run_id)
    if ckpt is None:
        raise DataError(f"reward-model run {reward_run_id} has no checkpoint", where="reward_run_id",
                        hint="train it (or resume it) until it writes one")
    return ckpt["abs_path"]


def _plan_new(project: Project, stage: str, config: Any, models: ModelRef | None, parent_run_id: int | None,
              parent_checkpoint_id: int | None, reward_run_id: int | None, name: str,
              ctx: JobContext) -> RunPlan:
    from rlhf_desktop.training.checkpoints import resolve_base

    cfg = _build_config(stage, config)
    models = models or ModelRef()
    if parent_checkpoint_id is not None:
        models, checkpoint_run = models_from_checkpoint(project, parent_checkpoint_id)
        parent_run_id = checkpoint_run if parent_run_id is None else parent_run_id
        parent_task = read_metadata(models.adapter or models.base).get("task", "causal")
        if parent_task == "reward" and stage != "rm":
            raise ConfigError(f"checkpoint {parent_checkpoint_id} is a reward model; a {stage} run cannot start "
                              "from it", where="--from-checkpoint",
                              hint="start from the base model or an SFT/DPO checkpoint")
    extra: dict[str, Any] = {}
    if stage == "ppo":
        extra = {"reward_run_id": reward_run_id, "reward_checkpoint": _reward_checkpoint(project, reward_run_id)}
    data = take_snapshot(project, stage)
    ctx.status("resolving the base model")
    base = resolve_base(models.base)
    run_id = store.create_run(project, stage, {**config_dict(cfg), **extra}, str(base), parent_run_id,
                              parent_checkpoint_id, _data_size(data), snapshot.data_hash(data), name)
    output_dir = store.run_dir(project, run_id)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / DATA_FILE).write_text(json.dumps({"hash": snapshot.data_hash(data), "data": data}),
                                        encoding="utf-8")
    models = dataclasses.replace(models, base=str(base))
    return RunPlan(run_id, stage, cfg, models, data, str(output_dir), None, extra)


def _plan_resume(project: Project, stage: str, config: Any, run_id: int) -> RunPlan:
    run = store.get_run(project, run_id)
    if run["stage"] != stage:
        raise ConfigError(f"run {run_id} is a {run['stage']} run, not {stage}", where="--resume")
    cfg = _build_config(stage, config, stored=run["config"])
    if config:
        store.update_run_config(project, run_id, {**config_dict(cfg),
                                                  **{k: run["config"][k] for k in _EXTRA_KEYS if k in run["config"]}})
    if run["parent_checkpoint_id"] is not None:
        models, _ = models_from_checkpoint(project, run["parent_checkpoint_id"])
    else:
        models = ModelRef(base=run["base_model"])
    output_dir = store.run_dir(project, run_id)
    saved = json.loads((output_dir / DATA_FILE).read_text(encoding="utf-8"))
    if saved.get("hash") != run["data_hash"] or snapshot.data_hash(saved["data"]) != run["data_hash"]:
        raise DataError("the run's data snapshot does not match its recorded hash", where=str(output_dir / DATA_FILE),
                        hint="start a new run instead")
    latest = store.latest_checkpoint(project, run_id)
    extra = {k: run["config"][k] for k in _EXTRA_KEYS if k in run["config"]}
    return RunPlan(run_id, stage, cfg, models, saved["data"], str(output_dir),
                   latest["abs_path"] if latest else None, extra)


# -- several processes -----------------------------------------------------------------------
def world() -> tuple[int, int]:
    """(rank, world size) of this process as the launcher (accelerate, torchrun) set them."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _share(plan: RunPlan | UserError | None, cpu: bool) -> RunPlan:
    """Rank 0's plan (or its refusal) on every process."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    PartialState(cpu=cpu)  # joins the process group the Trainer will reuse
    box = [plan]
    broadcast_object_list(box, from_process=0)
    if isinstance(box[0], UserError):
        raise box[0]
    return box[0]


def _device_is_cpu(stage: str, config: Any, project: Project, resume_run_id: int | None) -> bool:
    from rlhf_desktop.modeling.device import choose_device

    stored = store.get_run(project, resume_run_id)["config"] if resume_run_id is not None else None
    return choose_device(_build_config(stage, config, stored).device) == "cpu"


# -- running ---------------------------------------------------------------------------------
def _dispatch(plan: RunPlan, ctx: JobContext) -> RunResult:
    args = (plan.config, plan.data, plan.models, ctx, Path(plan.output_dir), plan.resume_from)
    if plan.stage == "sft":
        from rlhf_desktop.training.sft import run_sft

        return run_sft(*args)
    if plan.stage == "rm":
        from rlhf_desktop.training.reward import run_reward

        return run_reward(*args)
    if plan.stage == "dpo":
        from rlhf_desktop.training.dpo import run_dpo

        return run_dpo(*args)
    from rlhf_desktop.training.ppo import run_ppo

    return run_ppo(*args, reward_checkpoint=plan.extra.get("reward_checkpoint"))


def start_run(project_dir: str | Path, stage: str, config: Any = None, models: ModelRef | None = None,
              parent_run_id: int | None = None, parent_checkpoint_id: int | None = None,
              ctx: JobContext | None = None, resume_run_id: int | None = None, reward_run_id: int | None = None,
              name: str = "", on_created: Callable[[int], None] | None = None) -> RunOutcome:
    """Run `stage` on the project's data and record it; returns how it ended (never raises for training failures).

    config: a stage config dataclass, or a dict of fields (over the defaults, or over the stored config
    when resuming). parent_checkpoint_id: start from that checkpoint (its run becomes the parent).
    resume_run_id: continue that run from its last checkpoint on its own data snapshot.
    reward_run_id: the reward-model run PPO trains against. on_created(run_id) is called once the row
    exists. Raises UserError (bad config, no data, unknown ids) before any run row is written.
    """
    ctx = ctx or JobContext()
    rank, size = world()
    stage_config_class(stage)
    import_ml_stack(with_trl=stage in ("sft", "rm", "dpo"))  # PPO is our own engine
    with Project.open(project_dir) as project:
        plan_or_error: RunPlan | UserError | None = None
        if rank == 0:
            try:
                if resume_run_id is not None:
                    plan_or_error = _plan_resume(project, stage, config, resume_run_id)
                else:
                    plan_or_error = _plan_new(project, stage, config, models, parent_run_id, parent_checkpoint_id,
                                              reward_run_id, name, ctx)
            except UserError as exc:
                if size == 1:
                    raise
                plan_or_error = exc
        if size > 1:
            plan = _share(plan_or_error, _device_is_cpu(stage, config, project, resume_run_id))
            ctx.log(f"rank {rank} of {size}: run {plan.run_id}")
        else:
            plan = plan_or_error
        if rank == 0:
            store.set_run_status(project, plan.run_id, "running")
    if on_created is not None:
        on_created(plan.run_id)
    return _execute(project_dir, plan, ctx, rank, size)


def _execute(project_dir: str | Path, plan: RunPlan, ctx: JobContext, rank: int, size: int) -> RunOutcome:
    job_ctx: JobContext = RunRecorder(project_dir, plan.run_id, downstream=ctx) if rank == 0 else ctx
    result: RunResult | None = None
    try:
        job_ctx.status(f"{STAGE_TITLES[plan.stage]}: run {plan.run_id}"
                       + (f", resuming from {Path(plan.resume_from).name}" if plan.resume_from else ""))
        result = _dispatch(plan, job_ctx)
    except Exception as exc:  # a stage that raised instead of returning a failed result
        job_ctx.log(traceback.format_exc())
        result = RunResult("failed", 0, {}, None, error=failure_message(exc, plan.config))
        free_memory()  # the stages free their own memory when they return
    finally:
        if isinstance(job_ctx, RunRecorder):
            if result is None:  # interrupted by KeyboardInterrupt / SystemExit
                result = RunResult("stopped", 0, {}, None, error="interrupted")
            job_ctx.close()
            with Project.open(project_dir) as project:
                store.set_run_status(project, plan.run_id, result.status, error=result.error,
                                     final_metrics=result.final_metrics)
    return RunOutcome(result.status, result.steps, result.final_metrics, result.checkpoint_path, result.error,
                      run_id=plan.run_id, world_size=size)
