"""`train sft|rm|dpo|ppo` and `runs`: training stages headless, recorded in the project like GUI runs.

Progress and metrics go to stderr; the last stdout line is one JSON object
{run_id, status, steps, final_metrics, checkpoint, error, world_size}. Ctrl+C asks for a clean stop
(a checkpoint is written, the run is marked stopped); a second Ctrl+C aborts. Under
`accelerate launch` / `torchrun` every process runs the command and rank 0 alone prints the JSON:

    accelerate launch --multi_gpu --num_processes 2 -m rlhf_desktop train rm --project DIR
    accelerate launch --config_file deepspeed.yaml -m rlhf_desktop train sft --project DIR
    torchrun --standalone --nproc_per_node 2 -m rlhf_desktop train rm --project DIR --set device=cpu

(on CPUs: `--multi_gpu` with `--set device=cpu` trains on gloo; `accelerate launch --cpu` without
MPI silently starts a single process).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tomllib
from pathlib import Path
from typing import Any

from rlhf_desktop.cli import print_json
from rlhf_desktop.core.errors import ConfigError

STAGES = ("sft", "rm", "dpo", "ppo")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a stage on the project's labeled data (progress on stderr, JSON last)")
    p.add_argument("stage", choices=STAGES)
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--config", type=Path, help="a TOML file of config fields")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config field")
    p.add_argument("--preset", help="start from a preset (quick-cpu-demo, standard-gpu)")
    p.add_argument("--from-checkpoint", type=int, metavar="ID", help="start from this checkpoint (its run is the parent)")
    p.add_argument("--max-steps", type=int, metavar="N", help="shorthand for --set max_steps=N")
    p.add_argument("--resume", type=int, metavar="RUN_ID", help="continue a stopped or failed run from its last checkpoint")
    p.add_argument("--reward-run", type=int, metavar="ID", help="PPO: the reward-model run to train against")
    p.add_argument("--model", default=None, help="base model: 'default', an HF folder or a cached repo id")
    p.add_argument("--name", default="", help="a name for the run")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("runs", help="list the project's training runs as JSON")
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--stage", choices=STAGES)
    p.add_argument("--run", type=int, metavar="ID", help="one run with its lineage, checkpoints and metric count")
    p.set_defaults(func=cmd_runs)


def config_values(args: argparse.Namespace) -> dict[str, Any]:
    """Preset < TOML file < --set < --max-steps, as a dict of field values (validated later)."""
    from rlhf_desktop.training.runner import stage_config_class

    cls = stage_config_class(args.stage)
    values: dict[str, Any] = {}
    if args.preset:
        presets = getattr(cls, "PRESETS", {})
        if args.preset not in presets:
            raise ConfigError(f"unknown preset {args.preset!r}", where="--preset",
                              hint=f"one of {', '.join(sorted(presets)) or '(none for this stage)'}")
        values.update(presets[args.preset])
    if args.config:
        try:
            values.update(tomllib.loads(args.config.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ConfigError("file not found", where=str(args.config)) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", where=str(args.config)) from None
    for text in args.set:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected key=value, got {text!r}", where="--set")
        values[key.strip()] = value.strip()
    if args.max_steps is not None:
        values["max_steps"] = args.max_steps
    return values


def _install_stop_handler(ctx) -> None:
    """First Ctrl+C: a clean stop at the next step; the second one aborts."""

    def handler(signum, frame):
        if ctx.should_stop():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        print("stopping after this step (a checkpoint is written); Ctrl+C again to abort", file=sys.stderr,
              flush=True)
        ctx.request_stop()

    signal.signal(signal.SIGINT, handler)


def cmd_train(args: argparse.Namespace) -> int:
    from rlhf_desktop.core.context import ConsoleContext, JobContext
    from rlhf_desktop.training.common import ModelRef
    from rlhf_desktop.training.runner import start_run, world

    rank, size = world()
    if size > 1:
        print(f"rank {rank} of {size}", file=sys.stderr, flush=True)
    ctx = ConsoleContext() if rank == 0 else JobContext()
    values = config_values(args)
    _install_stop_handler(ctx)
    models = ModelRef(base=args.model) if args.model else None
    outcome = start_run(args.project, args.stage, values,
                        models=models, parent_checkpoint_id=args.from_checkpoint, ctx=ctx,
                        resume_run_id=args.resume, reward_run_id=args.reward_run, name=args.name)
    if rank == 0:
        if outcome.error:
            print(f"run {outcome.run_id} {outcome.status}: {outcome.error}", file=sys.stderr, flush=True)
        print_json({"run_id": outcome.run_id, "status": outcome.status, "steps": outcome.steps,
                    "final_metrics": outcome.final_metrics, "checkpoint": outcome.checkpoint_path,
                    "error": outcome.error, "world_size": outcome.world_size})
    return 1 if outcome.status == "failed" else 0


def _run_summary(run: dict[str, Any], checkpoints: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("id", "stage", "name", "status", "base_model", "parent_run_id", "parent_checkpoint_id", "data_size",
            "data_hash", "error", "final_metrics", "created_at", "started_at", "finished_at", "config")
    summary = {k: run.get(k) for k in keys}
    summary["checkpoints"] = [{"id": c["id"], "step": c["step"], "path": c["path"], "kind": c["kind"]}
                              for c in checkpoints]
    return summary


def cmd_runs(args: argparse.Namespace) -> int:
    from rlhf_desktop.store import runs as store
    from rlhf_desktop.store.project import Project

    with Project.open(args.project) as project:
        if args.run is not None:
            run = store.get_run(project, args.run)
            summary = _run_summary(run, store.list_checkpoints(project, args.run))
            summary["lineage"] = [r["id"] for r in store.lineage(project, args.run)]
            summary["metric_steps"] = len(store.get_metrics(project, args.run))
            print_json(summary)
            return 0
        print_json([_run_summary(r, store.list_checkpoints(project, r["id"]))
                    for r in store.list_runs(project, args.stage)])
    return 0
