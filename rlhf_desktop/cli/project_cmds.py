"""`gui`, `init` and `info`."""

from __future__ import annotations

import argparse
from pathlib import Path

from rlhf_desktop.cli import print_json
from rlhf_desktop.store import Project


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="open the desktop app (the default command)")
    p.add_argument("--project", type=Path, help="project folder to open (default: the last one)")
    p.add_argument("--model", default=None, help="'default', an HF folder or a .gguf file to load at start")
    p.set_defaults(func=cmd_gui)

    p = sub.add_parser("init", help="create a new project folder")
    p.add_argument("dir", type=Path)
    p.add_argument("--starter-prompts", action="store_true", help="load the bundled starter prompts")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("info", help="print a project's counts and schema version as JSON")
    p.add_argument("--project", type=Path, required=True)
    p.set_defaults(func=cmd_info)


def cmd_gui(args: argparse.Namespace) -> int:
    from rlhf_desktop.ui.app import run_app  # the only place the CLI reaches the ui layer

    return run_app(project=args.project, model=args.model)


def cmd_init(args: argparse.Namespace) -> int:
    with Project.create(args.dir) as project:
        if args.starter_prompts:
            from rlhf_desktop.store.prompts import load_starter_prompts

            load_starter_prompts(project)
        print_json(project.info())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    with Project.open(args.project) as project:
        print_json(project.info())
    return 0
