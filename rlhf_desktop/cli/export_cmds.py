"""`export-model` and `arena-stats`: a checkpoint as a plain transformers/peft folder; arena results as JSON.

Progress goes to stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rlhf_desktop.cli import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-model", help="export a run's checkpoint as a merged model, a LoRA adapter or a "
                                            "reward model (JSON {path, files} last)")
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--run", type=int, required=True, metavar="ID", help="the run to export")
    p.add_argument("--checkpoint", type=int, metavar="ID", help="one of the run's checkpoints (default: its latest)")
    p.add_argument("--kind", choices=("merged", "adapter", "reward"), required=True,
                   help="merged: LoRA merged into the base; adapter: the LoRA weights alone; reward: a reward model")
    p.add_argument("--out", type=Path, required=True, metavar="PATH", help="the folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model folder or earlier export")
    p.set_defaults(func=cmd_export_model)

    p = sub.add_parser("arena-stats", help="arena results: win/tie/loss rates with 95%% intervals and the "
                                           "length-controlled win rate, as JSON")
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--session", metavar="ID", help="one session (default: every session)")
    p.set_defaults(func=cmd_arena_stats)


def cmd_export_model(args: argparse.Namespace) -> int:
    from rlhf_desktop.core.context import ConsoleContext
    from rlhf_desktop.training.export import export_model

    result = export_model(args.project, args.run, args.checkpoint, args.kind, args.out, overwrite=args.overwrite,
                          ctx=ConsoleContext())
    print_json(result)
    return 0


def cmd_arena_stats(args: argparse.Namespace) -> int:
    from rlhf_desktop.store.project import Project
    from rlhf_desktop.training.evaluation import list_sessions, session_results

    with Project.open(args.project) as project:
        ids = [args.session] if args.session else [s["id"] for s in list_sessions(project)]
        print_json({"sessions": [session_results(project, sid) for sid in ids]})
    return 0
