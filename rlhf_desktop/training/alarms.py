"""Reward-hacking and instability alarms over a stream of training metric rows (no Qt).

Feed an `AlarmMonitor` one row at a time (step, metrics under TRL's names); it returns the alarms
that fired at that row. Each alarm fires when its condition becomes true and is re-armed only once
the condition has stayed false for `AlarmConfig.rearm_steps` rows, so a lasting problem is
reported once, not every step. The same monitor serves the live dashboard, a finished run's
history (`scan`) and the CLI.

    monitor = AlarmMonitor(AlarmConfig(), max_length=64)
    for step, metrics in rows:
        for alarm in monitor.feed(step, metrics):
            print(alarm.message)
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from rlhf_desktop.core.errors import ConfigError

ACTIONS = ("warn", "pause")

# Candidate metric keys, first present wins: our PPO engine uses TRL's names; the alternatives
# cover the other spellings of response length and entropy that trainers use.
METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "reward": ("objective/scores", "objective/rlhf_reward", "reward", "rewards/mean"),
    "length": ("response_length", "objective/response_length", "response_length_mean",
               "gen/response_length_mean", "gen/response_length", "completions/mean_length",
               "mean_response_length", "len/response_mean"),
    "kl": ("objective/kl", "kl"),
    "ratio": ("val/ratio",),
    "entropy": ("objective/entropy", "policy/entropy_avg", "entropy"),
    "eos": ("val/num_eos_tokens",),
}
# A non-finite value under one of these keys means the run is broken.
FINITE_KEYS = ("loss", "eval_loss", "loss/policy_avg", "loss/value_avg", "objective/kl",
               "objective/scores", "objective/rlhf_reward", "grad_norm", "val/ratio")

KINDS = ("length_hacking", "length_pinned", "kl_high", "kl_spike", "kl_negative", "ratio_far",
         "entropy_collapse", "non_finite")
KIND_TITLES = {
    "length_hacking": "Length rises with reward",
    "length_pinned": "Length pinned at the maximum",
    "kl_high": "KL above threshold",
    "kl_spike": "KL spike",
    "kl_negative": "Negative KL",
    "ratio_far": "val/ratio far from 1",
    "entropy_collapse": "Entropy collapse",
    "non_finite": "NaN or infinite metric",
}


def _default_actions() -> dict[str, str]:
    return {kind: ("pause" if kind == "non_finite" else "warn") for kind in KINDS}


@dataclass
class AlarmConfig:
    """Alarm thresholds and what each alarm does. The defaults suit PPO on a small instruct model.

    Reward hacking:
      - length_hacking: over the last `window` (20) steps, Pearson correlation between mean response
        length and reward (`objective/scores`) is at least `length_corr_threshold` (0.8) and the
        length grew by at least `length_min_rise` (10%) from the window's first quarter to its last.
      - length_pinned: mean response length at least `pinned_fraction` (0.95) of the maximum response
        length for `pinned_steps` (10) steps in a row; without a known maximum, no response ended
        with EOS (`val/num_eos_tokens` == 0) for that many steps.
    Instability:
      - kl_high: `objective/kl` above `kl_max` (20 nats per response).
      - kl_spike: KL above the median of the previous `window` steps by more than `kl_spike_sigmas`
        (8) robust standard deviations (1.4826 x the median absolute deviation) and by more than
        `kl_spike_min` (1 nat); a steady rise of KL, normal in PPO, does not count.
      - kl_negative: KL below `kl_negative` (-0.1) for `kl_negative_steps` (3) steps in a row (true KL
        is never negative: sampling and reference settings disagree, or the estimator is broken).
      - ratio_far: `val/ratio` outside [1/`ratio_factor`, `ratio_factor`] (1.5): updates too drastic.
      - entropy_collapse: entropy below `entropy_fraction` (0.2) of its mean over the first
        `baseline_steps` (10) steps.
      - non_finite: a loss, KL, reward or ratio is NaN or infinite.
    `actions` maps each kind to "warn" or "pause" (default: warn, except non_finite pauses).
    """

    window: int = field(default=20, metadata={"help": "Steps in the rolling window (correlation, KL median)."})
    length_corr_threshold: float = field(default=0.8, metadata={
        "help": "Length-hacking alarm: rolling correlation of response length with reward at or above this."})
    length_min_rise: float = field(default=0.10, metadata={
        "help": "Length-hacking alarm: relative growth of length across the window needed as well."})
    pinned_fraction: float = field(default=0.95, metadata={
        "help": "Pinned-length alarm: mean length at least this fraction of the maximum response length."})
    pinned_steps: int = field(default=10, metadata={"help": "Pinned-length alarm: steps in a row."})
    kl_max: float = field(default=20.0, metadata={"help": "KL alarm: objective/kl above this (nats per response)."})
    kl_spike_sigmas: float = field(default=8.0, metadata={
        "help": "KL-spike alarm: KL above the rolling median by this many robust standard deviations..."})
    kl_spike_min: float = field(default=1.0, metadata={"help": "...and by at least this much (nats)."})
    kl_negative: float = field(default=-0.1, metadata={"help": "Negative-KL alarm: KL below this..."})
    kl_negative_steps: int = field(default=3, metadata={"help": "...for this many steps in a row."})
    ratio_factor: float = field(default=1.5, metadata={
        "help": "Ratio alarm: val/ratio above this or below its inverse."})
    entropy_fraction: float = field(default=0.2, metadata={
        "help": "Entropy-collapse alarm: entropy below this fraction of its early baseline."})
    baseline_steps: int = field(default=10, metadata={"help": "Steps that set the entropy baseline."})
    rearm_steps: int = field(default=50, metadata={
        "help": "An alarm fires again only after its condition was clear for this many steps."})
    actions: dict[str, str] = field(default_factory=_default_actions, metadata={
        "help": "Per alarm kind: 'warn' (mark and log) or 'pause' (also pause the run)."})

    def validate(self) -> None:
        checks = [("window", self.window >= 4, "at least 4"),
                  ("length_corr_threshold", -1.0 <= self.length_corr_threshold <= 1.0, "between -1 and 1"),
                  ("pinned_fraction", 0.0 < self.pinned_fraction <= 1.0, "in (0, 1]"),
                  ("pinned_steps", self.pinned_steps >= 1, "at least 1"),
                  ("kl_spike_sigmas", self.kl_spike_sigmas > 0.0, "above 0"),
                  ("kl_negative_steps", self.kl_negative_steps >= 1, "at least 1"),
                  ("ratio_factor", self.ratio_factor > 1.0, "above 1"),
                  ("entropy_fraction", 0.0 < self.entropy_fraction < 1.0, "in (0, 1)"),
                  ("baseline_steps", self.baseline_steps >= 1, "at least 1"),
                  ("rearm_steps", self.rearm_steps >= 1, "at least 1")]
        for name, ok, what in checks:
            if not ok:
                raise ConfigError(f"must be {what} (got {getattr(self, name)!r})", where=f"alarms.{name}",
                                  hint="change it in the dashboard's alarm settings")
        for kind, action in self.actions.items():
            if kind not in KINDS or action not in ACTIONS:
                raise ConfigError(f"bad action {kind!r}: {action!r}", where="alarms.actions",
                                  hint=f"kinds: {', '.join(KINDS)}; actions: warn or pause")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "AlarmConfig":
        """Build from stored settings, ignoring unknown keys (settings outlive versions)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in dict(values or {}).items() if k in names}
        actions = _default_actions()
        actions.update({k: v for k, v in dict(kept.pop("actions", {}) or {}).items() if k in KINDS})
        cfg = cls(**kept, actions=actions)
        cfg.validate()
        return cfg


@dataclass(frozen=True)
class Alarm:
    """One alarm event: which check fired, at which step, why, and what to do about the run."""

    kind: str
    step: int
    message: str
    severity: str  # "warning" or "critical"
    action: str  # "warn" or "pause"
    metric: str = ""  # the metric key the alarm concerns (to mark its plot)
    value: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_key(metrics: Mapping[str, Any], role: str) -> str | None:
    """The first candidate key of `role` present in `metrics`."""
    for key in METRIC_KEYS[role]:
        if key in metrics:
            return key
    return None


def config_max_length(config: Mapping[str, Any]) -> float | None:
    """The maximum response length a run's config sets (PPO: response_length), or None."""
    for key in ("response_length", "max_new_tokens", "max_response_length", "max_completion_length"):
        value = config.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x = x - x.mean()
    y = y - y.mean()
    denom = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / denom if denom > 0 else 0.0


class AlarmMonitor:
    """Stateful checks over metric rows; `feed` returns the alarms that fire at each row."""

    def __init__(self, config: AlarmConfig | None = None, max_length: float | None = None) -> None:
        self.config = config or AlarmConfig()
        self.config.validate()
        self.max_length = max_length
        w = self.config.window
        self._length: deque[float] = deque(maxlen=w)
        self._reward: deque[float] = deque(maxlen=w)
        self._kl: deque[float] = deque(maxlen=w)
        self._entropy_base: list[float] = []
        self._streak: dict[str, int] = {}  # consecutive rows with a raw condition (pinned, negative KL)
        self._armed = {kind: True for kind in KINDS}
        self._clear_for = {kind: 0 for kind in KINDS}
        self.fired: list[Alarm] = []

    def scan(self, rows: Iterable[tuple[int, Mapping[str, Any]]]) -> list[Alarm]:
        """Feed many (step, metrics) rows; return every alarm that fired."""
        out: list[Alarm] = []
        for step, metrics in rows:
            out.extend(self.feed(step, metrics))
        return out

    def feed(self, step: int, metrics: Mapping[str, Any]) -> list[Alarm]:
        """Check one row; return the alarms that fired at it (edge-triggered, see the module doc)."""
        found: dict[str, tuple[str, str, float]] = {}  # kind -> (message, metric, value)
        self._check_finite(metrics, found)
        self._check_length(metrics, found)
        self._check_kl(metrics, found)
        self._check_ratio_entropy(metrics, found)
        fired = []
        for kind in KINDS:
            if kind in found:
                self._clear_for[kind] = 0
                if self._armed[kind]:
                    self._armed[kind] = False
                    message, metric, value = found[kind]
                    fired.append(self._alarm(kind, step, message, metric, value))
            else:
                self._clear_for[kind] += 1
                if self._clear_for[kind] >= self.config.rearm_steps:
                    self._armed[kind] = True
        self.fired.extend(fired)
        return fired

    def _alarm(self, kind: str, step: int, message: str, metric: str, value: float) -> Alarm:
        action = self.config.actions.get(kind, "warn")
        severity = "critical" if kind in ("non_finite", "kl_high", "ratio_far") else "warning"
        return Alarm(kind, int(step), f"step {step}: {KIND_TITLES[kind]}: {message}", severity, action,
                     metric, float(value))

    def _streak_of(self, name: str, condition: bool) -> int:
        self._streak[name] = self._streak.get(name, 0) + 1 if condition else 0
        return self._streak[name]

    # -- the checks ---------------------------------------------------------------------------
    def _check_finite(self, metrics: Mapping[str, Any], found: dict) -> None:
        for key in FINITE_KEYS:
            value = metrics.get(key)
            if value is not None and not math.isfinite(float(value)):
                found["non_finite"] = (f"{key} is {value}", key, float(value))
                return

    def _check_length(self, metrics: Mapping[str, Any], found: dict) -> None:
        cfg = self.config
        lkey, rkey = resolve_key(metrics, "length"), resolve_key(metrics, "reward")
        length = float(metrics[lkey]) if lkey else math.nan
        reward = float(metrics[rkey]) if rkey else math.nan
        if math.isfinite(length) and math.isfinite(reward):
            self._length.append(length)
            self._reward.append(reward)
            if len(self._length) == cfg.window:
                lengths, rewards = np.asarray(self._length), np.asarray(self._reward)
                corr = _pearson(lengths, rewards)
                quarter = max(1, cfg.window // 4)
                first, last = lengths[:quarter].mean(), lengths[-quarter:].mean()
                rise = (last - first) / max(abs(first), 1e-9)
                if corr >= cfg.length_corr_threshold and rise >= cfg.length_min_rise:
                    found["length_hacking"] = (
                        f"response length rose {rise:+.0%} over {cfg.window} steps with correlation "
                        f"{corr:.2f} to the reward: the policy may be learning to ramble", lkey, corr)
        if self.max_length and math.isfinite(length):
            pinned = self._streak_of("pinned", length >= cfg.pinned_fraction * self.max_length)
            if pinned >= cfg.pinned_steps:
                found["length_pinned"] = (f"mean response length {length:.1f} of at most {self.max_length:g} "
                                          f"for {pinned} steps", lkey, length)
        elif not self.max_length and (ekey := resolve_key(metrics, "eos")):
            eos = float(metrics[ekey])
            pinned = self._streak_of("pinned", math.isfinite(eos) and eos == 0.0)
            if pinned >= cfg.pinned_steps:
                found["length_pinned"] = (f"no response ended with EOS for {pinned} steps: every response "
                                          "runs to the maximum length", lkey or ekey, eos)

    def _check_kl(self, metrics: Mapping[str, Any], found: dict) -> None:
        cfg = self.config
        key = resolve_key(metrics, "kl")
        if key is None or not math.isfinite(kl := float(metrics[key])):
            return
        if kl > cfg.kl_max:
            found["kl_high"] = (f"{key} = {kl:.3g} is above {cfg.kl_max:g}: the policy drifts far from the "
                                "reference (raise the KL coefficient or lower the learning rate)", key, kl)
        if len(self._kl) >= min(cfg.window, 10):
            recent = np.asarray(self._kl)
            median = float(np.median(recent))
            sigma = 1.4826 * float(np.median(np.abs(recent - median)))
            if kl - median > max(cfg.kl_spike_min, cfg.kl_spike_sigmas * sigma):
                found["kl_spike"] = (f"{key} jumped to {kl:.3g} from a recent median of {median:.3g}", key, kl)
        self._kl.append(kl)
        negative = self._streak_of("kl_negative", kl < cfg.kl_negative)
        if negative >= cfg.kl_negative_steps:
            found["kl_negative"] = (f"{key} = {kl:.3g} below {cfg.kl_negative:g} for {negative} steps: check "
                                    "that sampling settings match between rollout and reference", key, kl)

    def _check_ratio_entropy(self, metrics: Mapping[str, Any], found: dict) -> None:
        cfg = self.config
        if (rkey := resolve_key(metrics, "ratio")) and math.isfinite(ratio := float(metrics[rkey])):
            if ratio > cfg.ratio_factor or ratio < 1.0 / cfg.ratio_factor:
                found["ratio_far"] = (f"{rkey} = {ratio:.3g}, outside [{1 / cfg.ratio_factor:.2f}, "
                                      f"{cfg.ratio_factor:g}]: updates are too drastic (lower the learning "
                                      "rate or the number of PPO epochs)", rkey, ratio)
        if (ekey := resolve_key(metrics, "entropy")) and math.isfinite(entropy := float(metrics[ekey])):
            if len(self._entropy_base) < cfg.baseline_steps:
                self._entropy_base.append(entropy)
                return
            base = float(np.mean(self._entropy_base))
            if base > 0 and entropy < cfg.entropy_fraction * base:
                found["entropy_collapse"] = (f"{ekey} = {entropy:.3g}, under {cfg.entropy_fraction:.0%} of "
                                             f"its early level {base:.3g}: the policy became near "
                                             "deterministic", ekey, entropy)


# -- synthetic streams (tests, benchmarks, screenshots) ----------------------------------------
SCENARIOS = ("clean", "length_hacking", "kl_spike")


def synthetic_ppo_rows(n: int, scenario: str = "clean", seed: int = 0,
                       start_time: float = 1.7e9) -> list[tuple[int, float, dict[str, float]]]:
    """A plausible PPO metric stream of `n` steps under TRL's names: (step, wall_time, metrics).

    "clean": reward and KL rise smoothly, length stays flat. "length_hacking": from a third of the
    way in, response length climbs steeply and the reward climbs with it. "kl_spike": clean, with
    KL jumping to 40 for three steps at 60% of the run.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {SCENARIOS}")
    rng = np.random.default_rng(seed)
    t = np.arange(1, n + 1, dtype=np.float64)
    scale = max(n / 5.0, 1.0)
    kl = 3.0 * (1.0 - np.exp(-t / scale))
    kl = kl + rng.normal(0.0, 1.0, n) * (0.05 * kl + 0.01)
    length = 40.0 + rng.normal(0.0, 3.0, n)
    score = 0.8 * (1.0 - np.exp(-t / scale)) + rng.normal(0.0, 0.05, n)
    if scenario == "length_hacking":
        t0 = n // 3
        ramp = np.clip(0.4 * (t - t0), 0.0, 160.0)
        length = 40.0 + ramp + rng.normal(0.0, 1.5, n)
        score = np.where(t > t0, score[t0 - 1] + 0.01 * (length - 40.0) + rng.normal(0.0, 0.01, n), score)
    if scenario == "kl_spike":
        at = int(n * 0.6)
        kl[at:at + 3] = 40.0
    entropy = 30.0 - 6.0 * (1.0 - np.exp(-t / scale)) + rng.normal(0.0, 0.3, n)
    beta = 0.05
    rows = []
    for i in range(n):
        metrics = {
            "objective/kl": float(kl[i]), "objective/entropy": float(entropy[i]),
            "objective/scores": float(score[i]), "objective/non_score_reward": float(-beta * kl[i]),
            "objective/rlhf_reward": float(score[i] - beta * kl[i]),
            "policy/approxkl_avg": float(abs(rng.normal(0.002, 0.001))),
            "policy/clipfrac_avg": float(abs(rng.normal(0.08, 0.02))),
            "policy/entropy_avg": float(entropy[i] / max(length[i], 1.0)),
            "loss/policy_avg": float(rng.normal(-0.01, 0.01)),
            "loss/value_avg": float(0.5 * np.exp(-t[i] / scale) + abs(rng.normal(0.05, 0.01))),
            "val/clipfrac_avg": float(abs(rng.normal(0.1, 0.02))),
            "val/ratio": float(1.0 + rng.normal(0.0, 0.01)), "val/ratio_var": float(abs(rng.normal(1e-4, 5e-5))),
            "val/num_eos_tokens": 4.0, "response_length": float(length[i]),
            "lr": float(1e-5 * (1.0 - t[i] / (n + 1))), "episode": float(4 * t[i]),
        }
        rows.append((int(t[i]), start_time + 0.5 * t[i], metrics))
    return rows
