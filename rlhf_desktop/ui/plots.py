"""pyqtgraph building blocks for the dashboard: one `MetricPanel` per plot, curves created once.

Each panel owns a PlotItem that clips to the view and peak-downsamples once its series are long
(so 100,000-point series redraw in milliseconds), one raw and one smoothed PlotDataItem per (run, metric), alarm markers,
a hover cursor and the selected-step line.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterable, Iterator

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGraphicsItem, QGraphicsScene

# Tableau 10: distinct on a white background and for most colour-blind readers.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
OVERLAY_ALPHA = 90
RAW_ALPHA_SMOOTHED = 70  # the raw curve stays visible, faint, behind its EMA
ALARM_COLORS = {"pause": "#c0392b", "warn": "#e67e22"}
BACKGROUND = "w"
LEFT_AXIS_WIDTH = 52  # px: room for labels such as -0.125 or 1.5e+03
FOREGROUND = "#333333"
LARGE_SERIES = 5000  # points in a series from which its plot clips to the view and downsamples
Y_HEADROOM = 0.25  # when data leaves a plot's y range, the new range leaves this much of its span spare


def style_plot(plot: pg.PlotItem, title: str = "") -> None:
    """House style for a PlotItem: dark-on-white axes, horizontal grid lines, a readable title.

    Measured on 5 plots of 100,000 points (bench/dashboard.py): the axes, not the curves, dominate a
    redraw; a full grid costs ~25 ms a repaint, and x grid lines move on every live update as the
    x range grows. So: y grid only, and each axis cached as a pixmap until its ticks change.
    """
    if title:
        plot.setTitle(title, color=FOREGROUND, size="10pt")
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(pg.mkPen(FOREGROUND))
        axis.setTextPen(pg.mkPen(FOREGROUND))
        axis.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        axis.enableAutoSIPrefix(False)  # it rewrites the label's HTML on every range change
    plot.showGrid(x=False, y=True, alpha=0.15)
    # A fixed width for the value axis: when new ticks change its label width pyqtgraph would
    # otherwise re-lay out the whole layout, every plot included (measured: 90-120 ms paints).
    plot.getAxis("left").setWidth(LEFT_AXIS_WIDTH)


@contextmanager
def vector_export(scene: QGraphicsScene) -> Iterator[None]:
    """Turn item caches off while exporting, so cached axes are drawn as vectors, not pixmaps."""
    cached = [item for item in scene.items() if item.cacheMode() != QGraphicsItem.CacheMode.NoCache]
    modes = [item.cacheMode() for item in cached]
    for item in cached:
        item.setCacheMode(QGraphicsItem.CacheMode.NoCache)
    try:
        yield
    finally:
        for item, mode in zip(cached, modes):
            item.setCacheMode(mode)


def color(index: int, alpha: int = 255) -> QColor:
    """Palette colour `index`, faded toward the white background by `alpha` but kept opaque.

    Opaque pens draw several times faster than translucent ones (no blending per pixel): on
    5 curves of 100,000 points, translucent raw curves behind their EMA doubled the redraw time.
    """
    c = QColor(PALETTE[index % len(PALETTE)])
    a = alpha / 255.0
    return QColor(round(255 - a * (255 - c.red())), round(255 - a * (255 - c.green())),
                  round(255 - a * (255 - c.blue())))


def nice_step(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is at least `value` (1 for value <= 0)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= value * (1 - 1e-12))


def nice_bounds(lo: float, hi: float, ticks: int = 4) -> tuple[float, float]:
    """[lo, hi] widened outward to multiples of a nice step of about (hi - lo) / ticks."""
    span = hi - lo if hi > lo else (abs(hi) or 1.0)
    step = nice_step(span / ticks)
    low, high = math.floor(lo / step) * step, math.ceil(hi / step) * step
    return (low, high) if high > low else (low - step, high + step)


class LogFriendlyAxis(pg.AxisItem):
    """On a log scale spanning a decade or two, pyqtgraph labels every 2..9 x 10^k and the labels
    overlap; this axis keeps the labels of 1, 2 and 5 x 10^k when there are more than six."""

    def logTickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        strings = super().logTickStrings(values, scale, spacing)
        if len(values) <= 6:
            return strings
        return [s if round(10 ** (v % 1.0)) in (1, 2, 5, 10) else "" for v, s in zip(values, strings)]


class MetricPanel:
    """One plot of the dashboard: a title, series by (run id, metric key), markers and cursors."""

    def __init__(self, layout: pg.GraphicsLayout, row: int, col: int, title: str) -> None:
        self.title = title
        self.plot: pg.PlotItem = layout.addPlot(row=row, col=col, axisItems={"left": LogFriendlyAxis("left")})
        style_plot(self.plot, title)
        self.large = False  # clip-to-view and peak downsampling from LARGE_SERIES points (see set_series)
        self.plot.setMenuEnabled(False)  # our toolbar has the options; the stock menu would fight them
        self.plot.disableAutoRange()  # the dashboard sets ranges (follow_y, its x window, Fit)
        self.plot.hideButtons()  # pyqtgraph's "A" autorange button: the toolbar's Fit does that
        self.curves: dict[tuple[int, str], tuple[pg.PlotDataItem, pg.PlotDataItem]] = {}
        self.labels: dict[str, str] = {}  # key -> series label
        self.markers: list[pg.InfiniteLine] = []
        self._spare: list[tuple[pg.PlotDataItem, pg.PlotDataItem]] = []  # curves made ahead (prepare)
        self.y_window: tuple[float, float] | None = None  # the y range set by follow_y
        self.cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen("#888888", style=Qt.PenStyle.DashLine))
        self.selected = pg.InfiniteLine(angle=90, pen=pg.mkPen("#2c3e50", width=1.5))
        for line in (self.cursor, self.selected):
            line.setVisible(False)
            line.setZValue(20)
            self.plot.addItem(line, ignoreBounds=True)

    @property
    def view_box(self) -> pg.ViewBox:
        return self.plot.getViewBox()

    def keys(self, run_id: int) -> list[str]:
        return [key for (rid, key) in self.curves if rid == run_id]

    def set_series(self, run_id: int, key: str, label: str, index: int, overlay: bool,
                   x: np.ndarray, y: np.ndarray, smooth: np.ndarray | None, show_raw: bool = True) -> None:
        """Create the run's curves for `key` once, then only hand them new arrays."""
        pair = self.curves.get((run_id, key))
        if pair is None:
            pair = self._spare.pop() if self._spare else self._new_pair()
            self.curves[(run_id, key)] = pair
            self.labels[key] = label
            self._style(pair, index, overlay, smooth is not None)
        if not self.large and len(x) >= LARGE_SERIES:
            self.make_large()
        raw, smoothed = pair
        raw.setData(x, y, skipFiniteCheck=True)
        raw.setVisible(show_raw)
        if smooth is not None:
            smoothed.setData(x, smooth, skipFiniteCheck=True)
        smoothed.setVisible(smooth is not None)

    def make_large(self) -> None:
        """Clip to the view and peak-downsample: 100,000-point series redraw in milliseconds. Below
        LARGE_SERIES points this costs more than it saves: every x or y range change recomputes
        every curve's shown points in Python (a live run's x window growing would pay it on 9 plots)."""
        self.large = True
        self.plot.setClipToView(True)
        self.plot.setDownsampling(auto=True, mode="peak")

    def _new_pair(self) -> tuple[pg.PlotDataItem, pg.PlotDataItem]:
        pair = (pg.PlotDataItem(), pg.PlotDataItem())
        for item in pair:
            self.plot.addItem(item)
        return pair

    def prepare(self, count: int) -> None:
        """Create `count` (raw, smoothed) curve pairs ahead of the data, empty: adding items to a plot
        is the costly part of a series' first drawing, and a live run's first rows all come at once."""
        while len(self._spare) < count:
            self._spare.append(self._new_pair())

    def restyle(self, run_id: int, key: str, index: int, overlay: bool, smoothing: bool) -> None:
        pair = self.curves.get((run_id, key))
        if pair is not None:
            self._style(pair, index, overlay, smoothing)

    def _style(self, pair: tuple[pg.PlotDataItem, pg.PlotDataItem], index: int, overlay: bool,
               smoothing: bool) -> None:
        raw, smoothed = pair
        strong = OVERLAY_ALPHA if overlay else 255
        raw_alpha = min(strong, RAW_ALPHA_SMOOTHED) if smoothing else strong
        # 1-pixel pens only: Qt's raster engine draws wider lines on a slow path (measured: 5
        # smoothed curves at width 2 added 17 ms to a repaint, at width 1 about 3 ms)
        raw.setPen(pg.mkPen(color(index, raw_alpha), width=1))
        smoothed.setPen(pg.mkPen(color(index, strong), width=1))
        raw.setZValue(0 if overlay else 5)
        smoothed.setZValue(1 if overlay else 6)

    def set_legend(self, labels: list[str]) -> None:
        """Name the panel's series in the title, in their colours (only where there are several).

        Set once, when the panel is built, from the stage's series (a series colour is its index):
        a title that changed as curves appeared would re-lay out the whole grid of plots in the
        middle of a live run (measured: 60-140 ms paints). A legend inside the view would cover
        the newest points, which is where users look.
        """
        if len(labels) < 2:
            self.plot.setTitle(self.title, color=FOREGROUND, size="10pt")
            return
        names = [f"<span style='color:{color(i).name()}'>━ {text}</span>" for i, text in enumerate(labels)]
        self.plot.setTitle(f"{self.title} &nbsp; <span style='font-size:8pt'>{' '.join(names)}</span>",
                           color=FOREGROUND, size="10pt")

    def remove_run(self, run_id: int) -> None:
        for key in [k for (r, k) in self.curves if r == run_id]:
            for item in self.curves.pop((run_id, key)):
                self.plot.removeItem(item)

    def clear_markers(self) -> None:
        for line in self.markers:
            self.plot.removeItem(line)
        self.markers = []

    def add_marker(self, x: float, action: str, text: str) -> pg.InfiniteLine:
        """A vertical line at an alarm, labelled, coloured by its action (warn or pause)."""
        pen = pg.mkPen(ALARM_COLORS.get(action, ALARM_COLORS["warn"]), width=1.5, style=Qt.PenStyle.DashLine)
        line = pg.InfiniteLine(pos=x, angle=90, pen=pen, label=text,
                               labelOpts={"position": 0.92, "color": ALARM_COLORS.get(action, "#e67e22"),
                                          "fill": (255, 255, 255, 210), "anchors": [(0, 0), (0, 0)]})
        line.setZValue(15)
        self.plot.addItem(line, ignoreBounds=True)
        self.markers.append(line)
        return line

    def follow_y(self) -> bool:
        """Set the y range to the data's bounds widened to whole ticks, only when the data leaves it;
        True when the range moved."""
        bounds = [(float(y.min()), float(y.max())) for raw, _s in self.curves.values()
                  if (y := raw.getOriginalDataset()[1]) is not None and len(y)]
        if not bounds:
            return False
        lo, hi = min(b[0] for b in bounds), max(b[1] for b in bounds)
        if self.y_window is not None and self.y_window[0] <= lo and hi <= self.y_window[1]:
            return False
        # Headroom on the side the data left by: a value that keeps creeping up (reward, KL) moves
        # the axis every few steps otherwise, and each move re-renders the axis and its grid.
        span = hi - lo if hi > lo else (abs(hi) or 1.0)
        if self.y_window is not None:
            lo = lo - Y_HEADROOM * span if lo < self.y_window[0] else lo
            hi = hi + Y_HEADROOM * span if hi > self.y_window[1] else hi
        self.y_window = nice_bounds(lo, hi)
        self.plot.setYRange(*self.y_window, padding=0.02)
        return True

    def set_log(self, on: bool) -> None:
        self.plot.setLogMode(x=False, y=on)

    def data_items(self) -> Iterable[pg.PlotDataItem]:
        for pair in self.curves.values():
            yield from pair
