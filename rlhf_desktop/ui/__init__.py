"""The desktop app: the only package that imports PySide6 / pyqtgraph.

Entry point: `rlhf_desktop.ui.app.run_app`. Views plug into `MainWindow.add_view` and share one
`AppState` (project, loaded model, job manager); long work runs through `ui.jobs`.
"""
