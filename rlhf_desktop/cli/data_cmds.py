"""`import` and `export`: prompts, preference pairs and demonstrations in and out of a project.

`import` prints a JSON summary {imported, skipped, errors: [{line, reason}], duplicates, preview}
and exits 1 when nothing could be imported (a file that cannot be read at all exits 2 with one
line on stderr). `export` prints {path, format, rows, files, splits, ...}.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rlhf_desktop.cli import print_json
from rlhf_desktop.store import Project

KINDS = ("prompts", "preferences", "demonstrations")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import prompts, preference pairs or demonstrations from a file")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("file", type=Path, help="JSONL, JSON, CSV, TSV, Parquet, .txt (prompts) or a datasets folder")
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--map", default=None, metavar="OURS=THEIRS,...",
                   help="column names, e.g. prompt=question,chosen=good,rejected=bad")
    p.add_argument("--preview", action="store_true", help="report what would be imported; write nothing")
    p.add_argument("--split", choices=("train", "heldout"), default=None,
                   help="put every new prompt in this split (default: the file's split, else by hash)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="export preference pairs or demonstrations for TRL")
    p.add_argument("kind", choices=KINDS[1:])
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--format", choices=("jsonl", "parquet", "hf"), default="jsonl")
    p.add_argument("--out", type=Path, required=True, help="output file (jsonl, parquet) or folder (hf)")
    p.add_argument("--include-ties", action="store_true",
                   help="preferences: write each tie as two mirrored rows with a tie column")
    p.add_argument("--conversational", action="store_true", help="message lists instead of plain text")
    p.add_argument("--split", choices=("train", "heldout"), default=None, help="only this split")
    p.set_defaults(func=cmd_export)


def cmd_import(args: argparse.Namespace) -> int:
    from rlhf_desktop.store.records import parse_mapping

    mapping = parse_mapping(args.map) or None
    with Project.open(args.project) as project:
        if args.kind == "prompts":
            from rlhf_desktop.store.io_prompts import import_prompts as run
        elif args.kind == "preferences":
            from rlhf_desktop.store.io_preferences import import_preferences as run
        else:
            from rlhf_desktop.store.io_demonstrations import import_demonstrations as run
        report = run(project, args.file, mapping=mapping, split=args.split, preview=args.preview)
    print_json(report.to_dict())
    return 0 if report.imported else 1


def cmd_export(args: argparse.Namespace) -> int:
    with Project.open(args.project) as project:
        if args.kind == "preferences":
            from rlhf_desktop.store.io_preferences import export_preferences

            result = export_preferences(project, args.out, fmt=args.format, include_ties=args.include_ties,
                                        conversational=args.conversational, split=args.split)
        else:
            from rlhf_desktop.store.io_demonstrations import export_demonstrations

            result = export_demonstrations(project, args.out, fmt=args.format, conversational=args.conversational,
                                           split=args.split)
    print_json(result)
    return 0
