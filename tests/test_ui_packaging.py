"""Packaging files: the icon renders, the desktop entry is complete, the spec is valid Python."""

from __future__ import annotations

import ast
import configparser
import subprocess
from pathlib import Path

import pytest
from PySide6.QtGui import QImage
from PySide6.QtSvg import QSvgRenderer

from rlhf_desktop.core import paths

ROOT = Path(__file__).resolve().parent.parent
ICONS = ROOT / "resources" / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)

pytestmark = pytest.mark.qt_log_level_fail("WARNING")


def test_svg_icon_is_valid_and_png_renders_match_their_size(qapp):
    assert paths.resources_dir() == ROOT / "resources"
    renderer = QSvgRenderer(str(ICONS / "rlhf-desktop.svg"))
    assert renderer.isValid() and renderer.defaultSize().width() == 512
    for size in SIZES:
        image = QImage(str(ICONS / f"rlhf-desktop-{size}.png"))
        assert (image.width(), image.height()) == (size, size), size
        assert image.hasAlphaChannel() and image.pixelColor(0, 0).alpha() == 0  # transparent corners
        assert image.pixelColor(size // 2, size // 2).alpha() == 255


def test_app_icon_loads_every_size(qapp):
    from rlhf_desktop.ui.app import app_icon

    icon = app_icon()
    assert not icon.isNull()
    assert {s.width() for s in icon.availableSizes()} >= set(SIZES)


def test_desktop_entry_is_complete():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(ROOT / "packaging" / "rlhf-desktop.desktop", encoding="utf-8")
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application" and section["Terminal"] == "false"
    assert section["Exec"].split()[0] == "rlhf-desktop"
    assert section["Icon"] == "rlhf-desktop" and (ICONS / "rlhf-desktop.svg").is_file()
    assert section["StartupWMClass"] == "rlhf-desktop"  # QApplication.setDesktopFileName matches
    assert section["Categories"].endswith(";")


def test_spec_and_launcher_parse():
    spec = (ROOT / "packaging" / "rlhf-desktop.spec").read_text(encoding="utf-8")
    tree = ast.parse(spec)
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert {"Analysis", "PYZ", "EXE", "COLLECT"} <= called  # a one-folder build
    ast.parse((ROOT / "packaging" / "launch.py").read_text(encoding="utf-8"))


def test_install_script_writes_entry_and_icons(tmp_path):
    env = {"XDG_DATA_HOME": str(tmp_path), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(["sh", str(ROOT / "packaging" / "install-linux.sh"), "/opt/rlhf/rlhf-desktop"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    entry = (tmp_path / "applications" / "rlhf-desktop.desktop").read_text(encoding="utf-8")
    assert 'Exec="/opt/rlhf/rlhf-desktop" gui' in entry
    for size in SIZES:
        assert (tmp_path / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "rlhf-desktop.png").is_file()
