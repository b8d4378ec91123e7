"""The alarm settings dialog: thresholds (with the documented defaults as tooltips) and warn/pause per alarm."""

from __future__ import annotations

import dataclasses

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout,
                               QGroupBox, QHBoxLayout, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from rlhf_desktop.training.alarms import ACTIONS, KIND_TITLES, KINDS, AlarmConfig

SETTINGS_KEY = "alarms"
_RANGES = {  # field -> (low, high, step, decimals)
    "length_corr_threshold": (-1.0, 1.0, 0.05, 2), "length_min_rise": (0.0, 10.0, 0.05, 2),
    "pinned_fraction": (0.05, 1.0, 0.01, 2), "kl_max": (0.0, 1e6, 1.0, 2), "kl_spike_sigmas": (0.1, 1000.0, 0.5, 1),
    "kl_spike_min": (0.0, 1e6, 0.1, 2), "kl_negative": (-1e6, 0.0, 0.05, 3), "ratio_factor": (1.01, 1000.0, 0.05, 2),
    "entropy_fraction": (0.01, 0.99, 0.05, 2),
}


class AlarmSettingsDialog(QDialog):
    """Edit an AlarmConfig; `config()` returns the edited (validated) copy."""

    def __init__(self, config: AlarmConfig, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Alarm settings")
        self._boxes: dict[str, QSpinBox | QDoubleSpinBox] = {}
        self._actions: dict[str, QComboBox] = {}
        thresholds = QGroupBox("Thresholds")
        form = QFormLayout(thresholds)
        defaults = AlarmConfig()
        for f in dataclasses.fields(AlarmConfig):
            if f.name == "actions":
                continue
            box = self._box(f.name, getattr(config, f.name))
            box.setToolTip(f"{f.metadata.get('help', '')} Default: {getattr(defaults, f.name)}")
            form.addRow(f.name.replace("_", " "), box)
            self._boxes[f.name] = box
        actions = QGroupBox("When an alarm fires")
        action_form = QFormLayout(actions)
        for kind in KINDS:
            combo = QComboBox()
            combo.addItems(["warn (mark the plot and log)", "pause the run"])
            combo.setCurrentIndex(ACTIONS.index(config.actions.get(kind, "warn")))
            action_form.addRow(KIND_TITLES[kind], combo)
            self._actions[kind] = combo
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        reset = QPushButton("Restore defaults")
        reset.clicked.connect(lambda: self.load(AlarmConfig()))
        columns = QHBoxLayout()
        columns.addWidget(thresholds)
        columns.addWidget(actions)
        bottom = QHBoxLayout()
        bottom.addWidget(reset)
        bottom.addStretch(1)
        bottom.addWidget(buttons)
        layout = QVBoxLayout(self)
        layout.addLayout(columns)
        layout.addLayout(bottom)

    def _box(self, name: str, value: float) -> QSpinBox | QDoubleSpinBox:
        if isinstance(value, int) and not isinstance(value, bool):
            box = QSpinBox()
            box.setRange(1, 100_000)
            box.setValue(int(value))
            return box
        low, high, step, decimals = _RANGES.get(name, (-1e6, 1e6, 0.1, 3))
        box = QDoubleSpinBox()
        box.setDecimals(decimals)
        box.setRange(low, high)
        box.setSingleStep(step)
        box.setValue(float(value))
        return box

    def load(self, config: AlarmConfig) -> None:
        for name, box in self._boxes.items():
            box.setValue(getattr(config, name))
        for kind, combo in self._actions.items():
            combo.setCurrentIndex(ACTIONS.index(config.actions.get(kind, "warn")))

    def config(self) -> AlarmConfig:
        """The edited configuration (ConfigError when a value is out of range)."""
        values = {name: box.value() for name, box in self._boxes.items()}
        values["actions"] = {kind: ACTIONS[combo.currentIndex()] for kind, combo in self._actions.items()}
        return AlarmConfig.from_dict(values)
