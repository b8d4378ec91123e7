"""What every training entry point returns."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunResult:
    """The outcome of `run_<stage>(config, data, models, ctx)`."""

    status: str  # "done", "stopped" or "failed"
    steps: int  # global step count reached (continues across resumes)
    final_metrics: dict[str, float] = field(default_factory=dict)
    checkpoint_path: str | None = None  # the last complete checkpoint folder
    error: str = ""  # for "failed": what happened and what to change
