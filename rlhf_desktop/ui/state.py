"""What every view shares: the open project, the loaded model and the job slots.

Views receive the `AppState` in their constructor and subscribe to its signals; they never reach
into the main window. The Project here belongs to the GUI thread: a worker that needs the
database opens its own `Project.open(state.project.folder)`.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from rlhf_desktop.store import Project
from rlhf_desktop.ui.jobs import JobManager, free_memory


class AppState(QObject):
    """The open project, the loaded model and the job manager."""

    sig_project_changed = Signal(object)
    """A project was opened (the Project) or closed (None)."""
    sig_model_changed = Signal(object)
    """A model was loaded (the LoadedModel) or unloaded (None)."""
    sig_model_loading = Signal(str)
    """A model started loading (its spec: 'default', a folder or a .gguf path)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.project: Project | None = None
        self.model: Any = None  # rlhf_desktop.modeling.loading.LoadedModel
        self.jobs = JobManager(self)

    def set_project(self, project: Project | None) -> None:
        """Make `project` current and close the previous one."""
        old, self.project = self.project, project
        self.sig_project_changed.emit(project)
        if old is not None and old is not project:
            old.close()

    def set_model(self, loaded: Any) -> None:
        """Make `loaded` the current model; the previous one is released."""
        old, self.model = self.model, loaded
        self.sig_model_changed.emit(loaded)
        if old is not None and old is not loaded:
            del old
            free_memory()

    def close(self) -> None:
        self.set_model(None)
        self.set_project(None)
