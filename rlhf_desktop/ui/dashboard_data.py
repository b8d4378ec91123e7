"""The dashboard's data side (numpy only, no Qt): growable metric buffers, EMA, panels per stage.

A `RunData` holds one run's metric rows as one `Series` per metric key; each series keeps its
own x (step and wall time) and y arrays, grown by amortized doubling so appending a batch of
rows costs only the new rows, and the plots take views of the filled part.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from rlhf_desktop.training.alarms import METRIC_KEYS

LR_KEYS = ("learning_rate", "lr")


@dataclass(frozen=True)
class PanelSpec:
    """A plot: its title and its series, each (label, candidate keys; the first present wins)."""

    title: str
    series: tuple[tuple[str, tuple[str, ...]], ...]


def _p(title: str, *series: tuple[str, tuple[str, ...]]) -> PanelSpec:
    return PanelSpec(title, tuple(series))


PANELS: dict[str, tuple[PanelSpec, ...]] = {
    "ppo": (
        _p("Reward", ("score", ("objective/scores",)), ("rlhf reward", ("objective/rlhf_reward",))),
        _p("KL", ("kl", ("objective/kl",))),
        _p("Response length", ("length", METRIC_KEYS["length"])),
        _p("Entropy", ("entropy", ("objective/entropy", "policy/entropy_avg"))),
        _p("Policy loss", ("policy", ("loss/policy_avg",))),
        _p("Value loss", ("value", ("loss/value_avg",))),
        _p("Clip fraction", ("policy", ("policy/clipfrac_avg",)), ("value", ("val/clipfrac_avg",))),
        _p("val/ratio", ("ratio", ("val/ratio",))),
        _p("Learning rate", ("lr", LR_KEYS)),
    ),
    "rm": (
        _p("Loss", ("train", ("loss",)), ("held-out", ("eval_loss",))),
        _p("Accuracy", ("train", ("accuracy",)), ("held-out", ("eval_accuracy",))),
        _p("Margin", ("train", ("margin",)), ("held-out", ("eval_margin",))),
        _p("Learning rate", ("lr", LR_KEYS)),
        _p("Grad norm", ("grad norm", ("grad_norm",))),
    ),
    "sft": (
        _p("Loss", ("train", ("loss",)), ("held-out", ("eval_loss",))),
        _p("Token accuracy", ("train", ("mean_token_accuracy",)), ("held-out", ("eval_mean_token_accuracy",))),
        _p("Learning rate", ("lr", LR_KEYS)),
        _p("Grad norm", ("grad norm", ("grad_norm",))),
        _p("Entropy", ("entropy", ("entropy",))),
    ),
    "dpo": (
        _p("Loss", ("train", ("loss",)), ("held-out", ("eval_loss",))),
        _p("Reward margin", ("margin", ("rewards/margins",)), ("held-out", ("eval_rewards/margins",))),
        _p("Reward accuracy", ("accuracy", ("rewards/accuracies",)), ("held-out", ("eval_rewards/accuracies",))),
        _p("Rewards", ("chosen", ("rewards/chosen",)), ("rejected", ("rewards/rejected",))),
        _p("Log-probs", ("chosen", ("logps/chosen",)), ("rejected", ("logps/rejected",))),
        _p("Learning rate", ("lr", LR_KEYS)),
    ),
}


def infer_stage(keys: Iterable[str]) -> str:
    """Guess a run's stage from its metric keys (for rows that arrive before the run is known)."""
    keys = set(keys)
    if any(k.startswith(("objective/", "policy/", "val/")) for k in keys):
        return "ppo"
    if any(k.startswith(("rewards/", "logps/")) for k in keys):
        return "dpo"
    if "mean_token_accuracy" in keys:
        return "sft"
    if {"accuracy", "margin"} & keys or "eval_accuracy" in keys:
        return "rm"
    return "sft"


def resolve_series(spec: PanelSpec, keys: Iterable[str]) -> list[tuple[str, str]]:
    """The panel's (label, key) pairs whose key is among `keys`."""
    keys = set(keys)
    out = []
    for label, candidates in spec.series:
        key = next((k for k in candidates if k in keys), None)
        if key is not None:
            out.append((label, key))
    return out


def panel_keys(stage: str) -> set[str]:
    """Every candidate key the stage's panels may show."""
    return {k for spec in PANELS.get(stage, ()) for _label, cands in spec.series for k in cands}


class GrowArray:
    """A float64 array with amortized O(1) append; `view()` is the filled part (no copy)."""

    __slots__ = ("_data", "_n")

    def __init__(self, capacity: int = 256) -> None:
        self._data = np.empty(max(16, capacity), dtype=np.float64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def extend(self, values: Sequence[float] | np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        need = self._n + len(values)
        if need > len(self._data):
            grown = np.empty(max(need, 2 * len(self._data)), dtype=np.float64)
            grown[:self._n] = self._data[:self._n]
            self._data = grown
        self._data[self._n:need] = values
        self._n = need

    def view(self) -> np.ndarray:
        return self._data[:self._n]


def ema(values: np.ndarray, weight: float, state: tuple[float, int] = (0.0, 0)) -> tuple[np.ndarray, tuple[float, int]]:
    """Debiased exponential moving average (TensorBoard's smoothing), continuing from `state`.

    state = (accumulator, count). Vectorized in chunks short enough that weight**-chunk stays
    below 1e12, so there is no Python loop per point and no overflow.
    """
    values = np.asarray(values, dtype=np.float64)
    acc, count = state
    if weight <= 0.0 or len(values) == 0:
        last = float(values[-1]) if len(values) else acc
        return values.copy(), (last, count + len(values))
    log_w = math.log(weight)
    chunk = int(max(1, min(4096, 12.0 * math.log(10.0) / -log_w)))
    out = np.empty_like(values)
    for start in range(0, len(values), chunk):
        x = values[start:start + chunk]
        k = np.arange(len(x), dtype=np.float64)
        inner = np.cumsum(np.exp(-k * log_w) * x)
        accs = np.exp((k + 1) * log_w) * acc + (1.0 - weight) * np.exp(k * log_w) * inner
        n = count + start + 1 + k
        out[start:start + len(x)] = accs / -np.expm1(n * log_w)
        acc = float(accs[-1])
    return out, (acc, count + len(values))


class Series:
    """One metric of one run: x by step and by wall time, raw y and its EMA."""

    def __init__(self) -> None:
        self.steps, self.walls, self.y, self.smooth = GrowArray(), GrowArray(), GrowArray(), GrowArray()
        self._ema_state: tuple[float, int] = (0.0, 0)
        self._weight = 0.0

    def __len__(self) -> int:
        return len(self.y)

    def extend(self, steps: list[float], walls: list[float], ys: list[float]) -> None:
        self.steps.extend(steps)
        self.walls.extend(walls)
        self.y.extend(ys)
        smoothed, self._ema_state = ema(np.asarray(ys), self._weight, self._ema_state)
        self.smooth.extend(smoothed)

    def set_smoothing(self, weight: float) -> None:
        """Recompute the EMA of the whole series with a new weight (0 = none)."""
        if weight == self._weight:
            return
        self._weight = weight
        smoothed, self._ema_state = ema(self.y.view(), weight)
        self.smooth = GrowArray(len(smoothed))
        self.smooth.extend(smoothed)


class RunData:
    """One run's metrics as series per key; `add_rows` takes (step, wall_time, metrics) rows."""

    def __init__(self, run_id: int, stage: str | None = None, name: str = "") -> None:
        self.run_id = run_id
        self.stage = stage
        self.name = name
        self.t0: float | None = None
        self.series: dict[str, Series] = {}
        self.steps = GrowArray()  # every row's step, for nearest-step lookup
        self.walls = GrowArray()
        self.smoothing = 0.0

    @property
    def label(self) -> str:
        return f"#{self.run_id} {self.name}".strip()

    def add_rows(self, rows: Iterable[tuple[int, float, Mapping[str, Any]]]) -> set[str]:
        """Append rows (non-finite values are skipped: alarms see them, plots do not); return keys touched."""
        cols: dict[str, tuple[list[float], list[float], list[float]]] = {}
        steps, walls = [], []
        for step, wall, metrics in rows:
            if self.t0 is None:
                self.t0 = float(wall)
            steps.append(float(step))
            walls.append(float(wall))
            for key, value in metrics.items():
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    continue
                if math.isfinite(value):
                    col = cols.setdefault(key, ([], [], []))
                    col[0].append(float(step))
                    col[1].append(float(wall))
                    col[2].append(value)
        self.steps.extend(steps)
        self.walls.extend(walls)
        for key, (xs, ws, ys) in cols.items():
            series = self.series.get(key)
            if series is None:
                series = self.series[key] = Series()
                series.set_smoothing(self.smoothing)
            series.extend(xs, ws, ys)
        return set(cols)

    def rows(self) -> list[tuple[int, dict[str, float]]]:
        """The (step, metrics) rows rebuilt from the series (non-finite values were never kept)."""
        table: dict[int, dict[str, float]] = {int(s): {} for s in self.steps.view()}
        for key, series in self.series.items():
            for step, y in zip(series.steps.view().tolist(), series.y.view().tolist()):
                table.setdefault(int(step), {})[key] = y
        return sorted(table.items())

    def set_smoothing(self, weight: float) -> None:
        self.smoothing = weight
        for series in self.series.values():
            series.set_smoothing(weight)

    def x_of(self, series: Series, wall: bool) -> np.ndarray:
        """The series' x: steps, or seconds since the run's first row."""
        return series.walls.view() - (self.t0 or 0.0) if wall else series.steps.view()

    def nearest_step(self, x: float, wall: bool) -> int | None:
        """The step of the row nearest to x (a step, or seconds since start)."""
        steps = self.steps.view()
        if len(steps) == 0:
            return None
        axis = self.walls.view() - (self.t0 or 0.0) if wall else steps
        i = int(np.clip(np.searchsorted(axis, x), 1, len(axis) - 1)) if len(axis) > 1 else 0
        if i > 0 and abs(axis[i - 1] - x) <= abs(axis[i] - x):
            i -= 1
        return int(steps[i])

    def value_at(self, key: str, x: float, wall: bool) -> tuple[float, float] | None:
        """(x, y) of the series point nearest to x."""
        series = self.series.get(key)
        if series is None or len(series) == 0:
            return None
        xs = self.x_of(series, wall)
        i = int(np.clip(np.searchsorted(xs, x), 0, len(xs) - 1))
        if i > 0 and abs(xs[i - 1] - x) <= abs(xs[i] - x):
            i -= 1
        return float(xs[i]), float(series.y.view()[i])


def write_csv(path: str, runs: Sequence[RunData]) -> int:
    """Write runs' metrics as one wide CSV (run_id, step, wall_time, one column per key); return rows."""
    keys = sorted({k for run in runs for k in run.series})
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["run_id", "step", "wall_time", *keys])
        for run in runs:
            table: dict[int, dict[str, float]] = {}
            walls: dict[int, float] = {}
            for key, series in run.series.items():
                for step, wall, y in zip(series.steps.view(), series.walls.view(), series.y.view()):
                    table.setdefault(int(step), {})[key] = float(y)
                    walls[int(step)] = float(wall)
            for step in sorted(table):
                row = table[step]
                writer.writerow([run.run_id, step, f"{walls[step]:.3f}", *[repr(row[k]) if k in row else "" for k in keys]])
                count += 1
    return count
