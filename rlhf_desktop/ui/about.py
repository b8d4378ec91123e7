"""Help > About: the versions of the app and its main libraries, and the device it runs on."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

import PySide6
from PySide6.QtCore import qVersion
from PySide6.QtWidgets import QMessageBox, QWidget

from rlhf_desktop import __version__

LIBRARIES = ["torch", "transformers", "trl", "peft", "accelerate", "datasets", "pyqtgraph"]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    """{name: version} for the app, Python, Qt and the ML libraries (read from package metadata)."""
    found = {"rlhf-desktop": __version__, "Python": platform.python_version(),
             "PySide6": PySide6.__version__, "Qt": qVersion()}
    found.update({name: _version(name) for name in LIBRARIES})
    return found


def device_text(loaded: Any = None) -> str:
    """The device the loaded model runs on, else the one a load would choose."""
    from rlhf_desktop.modeling.device import choose_device, describe_device

    if loaded is not None:
        return f"{describe_device(loaded.device)}, {loaded.dtype} (model: {loaded.name})"
    return f"{describe_device(choose_device('auto'))} (automatic choice; no model loaded)"


def about_html(loaded: Any = None) -> str:
    rows = "".join(f"<tr><td>{k}</td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in versions().items())
    return (f"<h3>rlhf-desktop {__version__}</h3>"
            "<p>The whole RLHF loop on one workstation: prompts, labeling, SFT, reward model, "
            "PPO/DPO and export.</p>"
            f"<table>{rows}</table>"
            f"<p><b>Device:</b> {device_text(loaded)}<br>"
            f"<b>System:</b> {platform.system()} {platform.release()} ({platform.machine()})</p>")


def show_about(parent: QWidget | None, loaded: Any = None) -> None:
    QMessageBox.about(parent, "About rlhf-desktop", about_html(loaded))
