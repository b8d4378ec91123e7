"""`alarms` and `rm-report`: the dashboard's verdicts headless.

`alarms --project DIR --run ID` re-checks a run's stored metrics with the project's alarm settings
(the dashboard's Alarms dialog) and prints each alarm; `rm-report --project DIR --run ID` scores a
reward-model run's held-out pairs and prints its accuracy, interval and findings. Both end with one
JSON line on stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlhf_desktop.cli import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alarms", help="check a run's metrics for reward hacking and instability (JSON last)")
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--run", type=int, required=True, metavar="ID")
    p.set_defaults(func=cmd_alarms)
    p = sub.add_parser("rm-report", help="score a reward-model run's held-out pairs: accuracy, calibration, "
                                         "length bias (JSON last)")
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--run", type=int, required=True, metavar="ID")
    p.set_defaults(func=cmd_rm_report)


def cmd_alarms(args: argparse.Namespace) -> int:
    from rlhf_desktop.store import Project
    from rlhf_desktop.store import runs as run_store
    from rlhf_desktop.training.alarms import AlarmConfig, AlarmMonitor, config_max_length

    with Project.open(args.project) as project:
        run = run_store.get_run(project, args.run)
        config = AlarmConfig.from_dict(project.get_setting("alarms", {}))
        monitor = AlarmMonitor(config, max_length=config_max_length(run.get("config") or {}))
        rows = run_store.get_metrics(project, args.run)
        alarms = monitor.scan((r["step"], r["metrics"]) for r in rows)
    for alarm in alarms:
        print(f"[{alarm.action}] {alarm.message}", file=sys.stderr)
    print_json({"run_id": args.run, "stage": run["stage"], "steps_checked": len(rows),
                "alarms": [a.to_dict() for a in alarms]})
    return 0


def cmd_rm_report(args: argparse.Namespace) -> int:
    from rlhf_desktop.core.context import ConsoleContext
    from rlhf_desktop.training.rm_report import report_for_run

    report = report_for_run(ConsoleContext(), args.project, args.run)
    for line in report.findings:
        print(line, file=sys.stderr)
    print_json({"run_id": args.run, **report.summary()})
    return 0
