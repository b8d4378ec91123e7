"""How the dashboard's plots keep their x and y ranges a step ahead of a live run's data.

Autoranging would move axes on almost every drain (the newest step extends x, a noisy value
extends y), and re-rendering axes costs far more than drawing the curves. So ranges grow by "nice"
jumps with headroom, a live run's x axis is laid out before its first row, y ranges move one plot a
tick, and a tick that moves the shared x window does nothing else (bench/dashboard.py).
"""

from __future__ import annotations

from typing import Any

from rlhf_desktop.ui.dashboard_data import RunData
from rlhf_desktop.ui.plots import nice_step

MIN_LIVE_X_WINDOW = (50.0, 120.0)  # (steps, seconds): a live run's x axis spans at least this much


class RangesMixin:
    """The Dashboard's range following (it owns panels, runs, current, live, overlays, wall, log_y)."""

    def _follow_view(self) -> None:
        """Keep x and y ranges a step ahead of the data while the user has not zoomed or panned."""
        if self.follow_view and not self.log_y:  # log scale: pyqtgraph's autorange knows the transform
            for panel in self.panels:
                panel.follow_y()
        self._follow_x()

    def _follow_x(self) -> bool:
        """Move the shared x window when the data left it; True when it moved."""
        window = self._x_target()
        if window is None:
            return False
        self._x_window = window
        self.panels[0].view_box.setXRange(*window, padding=0.01)
        return True

    def _x_target(self) -> tuple[float, float] | None:
        """The x window the data needs, or None when the current one holds it (or the user moved it)."""
        if not self.follow_view or not self.panels:
            return None
        extent = [self._run_extent(self.runs[r]) for r in [self.current, *self.overlays] if r is not None]
        extent = [e for e in extent if e is not None]
        live = self.current is not None and self.current == self.live
        minimum = MIN_LIVE_X_WINDOW[1] if self.wall else min(MIN_LIVE_X_WINDOW[0], self._planned_steps or 1e18)
        if not extent:  # a live run about to stream: its axes are laid out before its rows come
            return (0.0, minimum) if live and self._x_window is None else None
        lo, hi = min(e[0] for e in extent), max(e[1] for e in extent)
        if self._x_window is not None and self._x_window[0] <= lo and hi <= self._x_window[1]:
            return None
        if live:  # room to grow into, and at least MIN_LIVE_X_WINDOW from the start (the first steps
            # would otherwise move every axis of every plot several times in the first seconds)
            return (lo, lo + max(minimum, nice_step(1.5 * (hi - lo))))
        return (lo, max(hi, lo + 1.0))

    def _run_extent(self, run: RunData) -> tuple[float, float] | None:
        if not len(run.steps):
            return None
        axis = run.walls.view() - (run.t0 or 0.0) if self.wall else run.steps.view()
        return float(axis[0]), float(axis[-1])

    def _user_moved_view(self, *_: Any) -> None:
        self.follow_view = False  # the user zoomed or panned: leave the view alone until Fit

    def _follow_y(self, moves: int | None) -> None:
        """Let the plots with new data follow it in y; at most `moves` ranges actually move per call
        (each move re-renders an axis and its grid), the rest on the next ticks."""
        moved = 0
        for index in list(self._y_pending):
            if moves is not None and moved >= moves:
                break
            del self._y_pending[index]
            if index < len(self.panels) and self.panels[index].follow_y():
                moved += 1
