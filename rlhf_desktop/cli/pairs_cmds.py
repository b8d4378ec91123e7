"""`generate-pairs`: fill a project with candidate pairs ahead of a labeling session (headless).

The pairs are stored as unlabeled responses with a pair key; the labeling view's queue shows them
first (when the same model is loaded), so pre-generated pairs make the first minutes wait-free.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rlhf_desktop.cli import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate-pairs", help="generate candidate pairs for labeling and store them")
    p.add_argument("--project", type=Path, required=True, help="the project folder")
    p.add_argument("--count", type=int, required=True, help="pairs to generate")
    p.add_argument("--model", default="default", help="'default', an HF folder, a .gguf file or a cached repo id")
    p.add_argument("--strategy", default=None, help="how prompts are chosen (default: the project's, 'random')")
    p.add_argument("--ranking", default=None, choices=["none", "uncertainty", "disagreement"],
                   help="keep the pairs the latest reward model is least sure of (uncertainty) or the two latest "
                        "reward models disagree on most (disagreement); default: the project's, 'none'")
    p.add_argument("--pool", type=int, default=None,
                   help="with a ranking: generate this many times more pairs than kept (default 3)")
    p.add_argument("--temperature", type=float, default=None, help="default: the project's pair settings")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the project's pair settings")
    p.add_argument("--batch", type=int, default=None, help="prompts generated together in one call")
    p.add_argument("--seed", type=int, default=None, help="reproducible prompt choice and sampling")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    p.set_defaults(func=cmd_generate_pairs)


def cmd_generate_pairs(args: argparse.Namespace) -> int:
    from rlhf_desktop.core.config import require
    from rlhf_desktop.core.context import ConsoleContext
    from rlhf_desktop.modeling.loading import LoadOptions, load_model
    from rlhf_desktop.modeling.pairs import load_pair_settings
    from rlhf_desktop.store import Project
    from rlhf_desktop.training.sampling_strategies import fill_for_settings, load_scorers

    require(args.count >= 1, "--count", f"must be at least 1, got {args.count}")
    with Project.open(args.project) as project:
        settings = load_pair_settings(project)
        overrides = {"strategy": args.strategy, "ranking": args.ranking, "ranking_pool": args.pool,
                     "temperature": args.temperature,
                     "max_new_tokens": args.max_new_tokens, "prompts_per_batch": args.batch}
        settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        settings.validate()
        ctx = ConsoleContext()
        scorers = load_scorers(project, settings.ranking, ctx) if settings.ranking != "none" else []
        loaded = load_model(args.model, LoadOptions(device=args.device, dtype=args.dtype), ctx)
        report = fill_for_settings(project, loaded, args.count, settings, scorers=scorers, seed=args.seed, ctx=ctx)
        print_json({"pairs": report.pairs, "responses": report.responses, "regenerated": report.regenerated,
                    "skipped_prompts": report.skipped_prompts, "seconds": round(report.seconds, 3),
                    "seconds_per_pair": round(report.seconds / report.pairs, 3) if report.pairs else None,
                    "model": loaded.name, "strategy": settings.strategy, "ranking": settings.ranking,
                    "reward_models": [s.checkpoint_dir for s in scorers],
                    "max_new_tokens": settings.max_new_tokens})
    return 0 if report.pairs else 1
