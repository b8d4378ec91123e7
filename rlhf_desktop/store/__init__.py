"""The project store: one SQLite file per project (through sqlite-utils), plus checkpoints/ and exports/."""

from rlhf_desktop.store.project import Project, SCHEMA_VERSION

__all__ = ["Project", "SCHEMA_VERSION"]
