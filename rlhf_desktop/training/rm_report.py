"""The reward-model report's statistics, computed from held-out pair scores (no Qt).

Input: for each held-out pair, the reward model's score of the chosen and of the rejected
response and their lengths (tokens). Output: an `RMReport` with accuracy and its Wilson 95%
interval, a calibration table (Bradley-Terry predicted preference against observed rate), a
margin histogram, accuracy by length difference (a length-bias probe), reward against length,
and plain-language findings that answer "is my reward model good enough?".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from rlhf_desktop.core.errors import DataError
from rlhf_desktop.core.stats import Z95, wilson_interval  # noqa: F401 (re-exported)



def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))  # overflow-free


@dataclass
class RMReport:
    """Everything the reward-model report shows; plain lists so it serialises to JSON."""

    n: int
    accuracy: float  # share of pairs with score_chosen > score_rejected (a tie counts half)
    ci_low: float
    ci_high: float
    ties: int
    mean_margin: float  # mean of score_chosen - score_rejected
    calibration: list[dict[str, float]]  # {low, high, predicted, observed, count}
    ece: float  # expected calibration error over the symmetrised pairs
    margin_counts: list[int]
    margin_edges: list[float]
    length_bins: list[dict[str, float]]  # {low, high, accuracy, ci_low, ci_high, count}
    length_baseline: float  # accuracy of "the longer response wins"
    reward_length_corr: float  # Pearson correlation of score with length over all responses
    lengths: list[float] = field(default_factory=list)  # chosen then rejected, for the scatter
    rewards: list[float] = field(default_factory=list)
    is_chosen: list[bool] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> dict[str, Any]:
        """The headline numbers (for the CLI and the runs list)."""
        return {"n": self.n, "accuracy": self.accuracy, "ci95": [self.ci_low, self.ci_high],
                "ece": self.ece, "mean_margin": self.mean_margin, "length_baseline": self.length_baseline,
                "reward_length_corr": self.reward_length_corr, "findings": self.findings}


def _arrays(*columns: Sequence[float]) -> list[np.ndarray]:
    arrays = [np.asarray(c, dtype=np.float64).reshape(-1) for c in columns]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise DataError("score and length arrays differ in length", where="reward-model report",
                        hint="pass one score and one length per chosen and rejected response")
    if n == 0:
        raise DataError("no held-out pairs to report on", where="reward-model report",
                        hint="label more comparisons or give the reward-model run a held-out split")
    return arrays


def calibration_table(score_chosen: np.ndarray, score_rejected: np.ndarray,
                      bins: int = 10) -> tuple[list[dict[str, float]], float]:
    """Reliability of P(chosen preferred) = sigmoid(margin), with each pair seen both ways round.

    A pair predicted at p for "chosen wins" (observed 1) also counts as predicted 1 - p for
    "rejected wins" (observed 0), so the diagram spans [0, 1] and is symmetric.
    """
    p = sigmoid(score_chosen - score_rejected)
    predicted = np.concatenate([p, 1.0 - p])
    observed = np.concatenate([np.ones_like(p), np.zeros_like(p)])
    index = np.minimum((predicted * bins).astype(int), bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        if count == 0:
            continue
        pred, obs = float(predicted[mask].mean()), float(observed[mask].mean())
        table.append({"low": b / bins, "high": (b + 1) / bins, "predicted": pred, "observed": obs,
                      "count": count})
        ece += count / len(predicted) * abs(pred - obs)
    return table, ece


def length_bias_table(correct: np.ndarray, diff: np.ndarray,
                      edges: Sequence[float] | None = None, bins: int = 5) -> list[dict[str, float]]:
    """Accuracy per bin of length difference (chosen minus rejected); default edges are quantiles."""
    if edges is None:
        edges = np.unique(np.quantile(diff, np.linspace(0.0, 1.0, bins + 1)))
        if len(edges) == 1:
            edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    edges = np.asarray(edges, dtype=np.float64)
    index = np.clip(np.searchsorted(edges, diff, side="right") - 1, 0, len(edges) - 2)
    table = []
    for b in range(len(edges) - 1):
        mask = index == b
        count = int(mask.sum())
        if count == 0:
            continue
        hits = float(correct[mask].sum())
        low, high = wilson_interval(hits, count)
        table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "accuracy": hits / count,
                      "ci_low": low, "ci_high": high, "count": count})
    return table


def compute_report(score_chosen: Sequence[float], score_rejected: Sequence[float],
                   len_chosen: Sequence[float], len_rejected: Sequence[float], *,
                   calibration_bins: int = 10, margin_bins: int = 30,
                   length_edges: Sequence[float] | None = None) -> RMReport:
    """All report statistics from per-pair scores and lengths (four arrays of equal length)."""
    sc, sr, lc, lr = _arrays(score_chosen, score_rejected, len_chosen, len_rejected)
    n = len(sc)
    margin = sc - sr
    correct = np.where(margin > 0, 1.0, np.where(margin == 0, 0.5, 0.0))
    accuracy = float(correct.mean())
    ci_low, ci_high = wilson_interval(float(correct.sum()), n)
    calibration, ece = calibration_table(sc, sr, calibration_bins)
    counts, edges = np.histogram(margin, bins=margin_bins)
    diff = lc - lr
    length_bins = length_bias_table(correct, diff, length_edges)
    longer_wins = np.where(diff > 0, 1.0, np.where(diff == 0, 0.5, 0.0))
    lengths, rewards = np.concatenate([lc, lr]), np.concatenate([sc, sr])
    corr = _corr(lengths, rewards)
    report = RMReport(n=n, accuracy=accuracy, ci_low=ci_low, ci_high=ci_high, ties=int((margin == 0).sum()),
                      mean_margin=float(margin.mean()), calibration=calibration, ece=float(ece),
                      margin_counts=[int(c) for c in counts], margin_edges=[float(e) for e in edges],
                      length_bins=length_bins, length_baseline=float(longer_wins.mean()),
                      reward_length_corr=corr, lengths=lengths.tolist(), rewards=rewards.tolist(),
                      is_chosen=[True] * n + [False] * n)
    report.findings = findings(report)
    return report


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / denom if denom > 0 else 0.0


def findings(report: RMReport) -> list[str]:
    """Plain-language verdicts: is the model better than chance, calibrated, length-biased?"""
    out = []
    ci = f"{report.accuracy:.0%} (95% CI {report.ci_low:.0%}-{report.ci_high:.0%}, {report.n} pairs)"
    if report.ci_low > 0.5:
        out.append(f"Held-out accuracy {ci}: better than chance.")
    else:
        out.append(f"Held-out accuracy {ci}: not clearly better than chance; label more pairs or train longer.")
    if report.n < 50:
        out.append("Fewer than 50 held-out pairs: the interval is wide; label more before trusting it.")
    if report.ece > 0.15:
        out.append(f"Poorly calibrated (ECE {report.ece:.2f}): score differences overstate or understate "
                   "confidence; rank order may still be right.")
    if report.reward_length_corr > 0.5:
        out.append(f"Reward rises with response length (r = {report.reward_length_corr:.2f}): PPO may learn to "
                   "ramble; watch the length alarm.")
    by_len = [b for b in report.length_bins if b["count"] >= 5]
    if len(by_len) >= 2 and by_len[-1]["accuracy"] - by_len[0]["accuracy"] > 0.25:
        out.append("Accuracy is much higher when the chosen response is the longer one: a length bias.")
    if abs(report.accuracy - report.length_baseline) < 0.05 and report.length_baseline > 0.6:
        out.append(f"'The longer response wins' alone scores {report.length_baseline:.0%}: the model may "
                   "mostly measure length.")
    return out


# -- scoring a reward-model run's held-out pairs ------------------------------------------------
def heldout_pairs(project: Any, run_id: int) -> tuple[list[dict[str, Any]], str]:
    """The held-out pairs of a reward-model run and a note on where they come from.

    The run's own data snapshot (data.json beside its checkpoints) gives exactly the pairs it held
    out: its held-out prompts, or else the seeded split of its training pairs. Without the snapshot,
    the project's held-out prompts as they are today.
    """
    import json

    from rlhf_desktop.store import runs as run_store
    from rlhf_desktop.store.snapshot import preference_snapshot
    from rlhf_desktop.training.reward import split_eval
    from rlhf_desktop.training.runner import DATA_FILE

    run = run_store.get_run(project, run_id)
    if run["stage"] != "rm":
        raise DataError(f"run {run_id} is a {run['stage']} run, not a reward model", where=f"run {run_id}",
                        hint="choose a reward-model (rm) run")
    snapshot_file = run_store.run_dir(project, run_id) / DATA_FILE
    if snapshot_file.is_file():
        data = json.loads(snapshot_file.read_text(encoding="utf-8"))["data"]
        held = list(data.get("eval") or [])
        if held:
            return held, f"the run's {len(held)} held-out pairs (held-out prompts)"
        cfg = run.get("config") or {}
        _train, held = split_eval(list(data.get("train") or []), float(cfg.get("eval_fraction", 0.1)),
                                  int(cfg.get("seed", 0)))
        if held:
            return held, f"the run's {len(held)} held-out pairs (seeded split of its data)"
    held = preference_snapshot(project, "heldout")
    if not held:
        raise DataError("this reward-model run has no held-out pairs to report on", where=f"run {run_id}",
                        hint="mark some prompts held-out or train with eval_fraction above 0")
    return held, f"the project's {len(held)} held-out pairs today (the run's snapshot is gone)"


def score_pairs(model: Any, tokenizer: Any, pairs: Sequence[Mapping[str, Any]], batch_size: int = 8,
                ctx: Any = None) -> tuple[list[float], list[float], list[float], list[float]]:
    """(score_chosen, score_rejected, len_chosen, len_rejected) with lengths in response tokens."""
    from rlhf_desktop.training.reward import score

    sc: list[float] = []
    sr: list[float] = []
    for start in range(0, len(pairs), batch_size):
        if ctx is not None:
            ctx.check()
            ctx.progress(start, len(pairs))
        chunk = pairs[start:start + batch_size]
        prompts = [p["prompt"] for p in chunk]
        sc += score(model, tokenizer, prompts, [p["chosen"] for p in chunk], batch_size)
        sr += score(model, tokenizer, prompts, [p["rejected"] for p in chunk], batch_size)

    def tokens(text: str) -> float:
        return float(len(tokenizer(text, add_special_tokens=False)["input_ids"]))

    return sc, sr, [tokens(p["chosen"]) for p in pairs], [tokens(p["rejected"]) for p in pairs]


def report_for_run(ctx: Any, project_dir: Any, run_id: int, checkpoint_dir: Any = None) -> RMReport:
    """A job function: score a reward-model run's held-out pairs with its latest checkpoint.

    Opens its own Project (it runs in a worker thread); `ctx` is a JobContext.
    """
    from rlhf_desktop.core.errors import ModelLoadError
    from rlhf_desktop.store import Project
    from rlhf_desktop.store import runs as run_store
    from rlhf_desktop.training.reward import load_reward_model

    with Project.open(project_dir) as project:
        pairs, note = heldout_pairs(project, run_id)
        if checkpoint_dir is None:
            ckpt = run_store.latest_checkpoint(project, run_id)
            if ckpt is None:
                raise ModelLoadError(f"reward-model run {run_id} has no checkpoint", where=f"run {run_id}",
                                     hint="resume the run until it writes one")
            checkpoint_dir = ckpt["abs_path"]
    ctx.status("loading the reward model")
    model, tokenizer = load_reward_model(checkpoint_dir)
    ctx.status(f"scoring {len(pairs)} held-out pairs")
    arrays = score_pairs(model, tokenizer, pairs, ctx=ctx)
    del model
    report = compute_report(*arrays)
    report.findings.append(f"Source: {note}; lengths in tokens.")
    return report
