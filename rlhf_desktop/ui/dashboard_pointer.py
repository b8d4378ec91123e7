"""Hover and click on the dashboard's plots: the values under the cursor, the rollouts of a step."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt

from rlhf_desktop.ui.plots import MetricPanel


class PointerMixin:
    """The Dashboard's cursor readout and step selection (it owns panels, runs, samples_panel, tabs)."""

    def _panel_at(self, scene_pos: Any) -> MetricPanel | None:
        for panel in self.panels:
            if panel.view_box.sceneBoundingRect().contains(scene_pos):
                return panel
        return None

    def _on_hover(self, event: tuple) -> None:
        pos = event[0]
        panel = self._panel_at(pos)
        for other in self.panels:
            other.cursor.setVisible(other is panel)
        if panel is None or self.current is None:
            return
        x = panel.view_box.mapSceneToView(pos).x()
        panel.cursor.setPos(x)
        self.readout.setText(self.readout_text(panel, x))

    def readout_text(self, panel: MetricPanel, x: float) -> str:
        """The values nearest to x in `panel`, current run first, then overlays."""
        parts = []
        for run_id in [self.current, *self.overlays]:
            run = self.runs[run_id]
            for key in panel.keys(run_id):
                found = run.value_at(key, x, self.wall)
                if found is not None:
                    where = f"{found[0]:.0f}s" if self.wall else f"step {found[0]:.0f}"
                    parts.append(f"{run.label} {key} = {found[1]:.5g} ({where})")
        return f"{panel.title}: " + " · ".join(parts) if parts else " "

    def _on_click(self, event: Any) -> None:
        if event.button() != Qt.MouseButton.LeftButton or event.double():
            return
        panel = self._panel_at(event.scenePos())
        if panel is not None and self.current is not None:
            x = panel.view_box.mapSceneToView(event.scenePos()).x()
            step = self.runs[self.current].nearest_step(x, self.wall)
            if step is not None:
                self.select_step(step)

    def select_step(self, step: int) -> None:
        """Show the samples nearest to `step` of the current run and mark the step on every plot."""
        if self.current is None:
            return
        self.selected_step = int(step)
        self.follow_latest = False
        by_step = self._samples_of(self.current)
        self._place_selected()
        if not by_step:
            self.samples_panel.show_rows(step, [], "this run stored no samples")
        else:
            nearest = min(by_step, key=lambda s: (abs(s - step), s))
            note = "clicked" if nearest == step else f"nearest to clicked step {step}"
            self.samples_panel.show_rows(nearest, by_step[nearest], note)
        self.tabs.setCurrentWidget(self.samples_panel)
        self.sig_step_selected.emit(int(step))

    def follow_latest_samples(self) -> None:
        self.follow_latest = True
        self.selected_step = None
        self._place_selected()
        by_step = self._samples_of(self.current) if self.current is not None else {}
        if by_step:
            last = max(by_step)
            self.samples_panel.show_rows(last, by_step[last], "latest")

    def _place_selected(self) -> None:
        run = self.runs.get(self.current) if self.current is not None else None
        for panel in self.panels:
            panel.selected.setVisible(self.selected_step is not None and run is not None)
            if self.selected_step is not None and run is not None:
                panel.selected.setPos(self._x_of_step(run, self.selected_step))
