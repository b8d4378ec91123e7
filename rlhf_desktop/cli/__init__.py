"""The `rlhf-desktop` command: the GUI by default, and every operation headless (no Qt imported).

Each command group lives in its own module with a `register(subparsers)` function that adds its
subcommands and sets `func(args) -> int`. A UserError prints one line on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any, Sequence

from rlhf_desktop import __version__
from rlhf_desktop.core.errors import Cancelled, UserError

COMMAND_MODULES = [
    "rlhf_desktop.cli.project_cmds",
    "rlhf_desktop.cli.data_cmds",
    "rlhf_desktop.cli.model_cmds",
    "rlhf_desktop.cli.pairs_cmds",
    "rlhf_desktop.cli.train_cmds",
    "rlhf_desktop.cli.export_cmds",
    "rlhf_desktop.cli.report_cmds",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        print(f"rlhf-desktop: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rlhf-desktop", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"rlhf-desktop {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def print_json(obj: Any) -> None:
    print(json.dumps(obj, default=str), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv or ["gui"])
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"rlhf-desktop: error: {exc}", file=sys.stderr)
        return 2
    except Cancelled:
        print("rlhf-desktop: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("rlhf-desktop: interrupted", file=sys.stderr)
        return 130
