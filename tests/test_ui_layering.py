"""The layer rule: only rlhf_desktop/ui/ imports PySide6 or pyqtgraph (checked two ways)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

IMPORT_ALL_BUT_UI = r"""
import importlib, json, pathlib, sys
root = pathlib.Path("rlhf_desktop")
names = []
for path in sorted(root.rglob("*.py")):  # files, not pkgutil: walking would import ui/__init__
    parts = path.with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    if name.startswith("rlhf_desktop.ui") or name == "rlhf_desktop.__main__":
        continue
    importlib.import_module(name)
    names.append(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "pyqtgraph", "shiboken6")
                or m.startswith("rlhf_desktop.ui"))
print(json.dumps({"imported": names, "leaked": leaked}))
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(RLHF_DESKTOP_DATA=str(tmp_path / "data"), RLHF_DESKTOP_CACHE=str(tmp_path / "cache"),
               HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def test_headless_modules_never_import_qt(tmp_path):
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL_BUT_UI], cwd=ROOT, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "rlhf_desktop.cli" in report["imported"] and "rlhf_desktop.modeling.loading" in report["imported"]
    assert report["leaked"] == []


def test_import_linter_contracts_hold(tmp_path):
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.exists():
        pytest.fail("lint-imports is missing: install the test extras (pip install -e '.[test]')")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "broken" not in done.stdout.lower() or " 0 broken" in done.stdout.lower()
