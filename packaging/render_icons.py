"""Render resources/icons/rlhf-desktop.svg to the PNG sizes desktops and PyInstaller want.

    QT_QPA_PLATFORM=offscreen python packaging/render_icons.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICONS = Path(__file__).resolve().parent.parent / "resources" / "icons"


def render(svg: Path, size: int, out: Path) -> None:
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    if not image.save(str(out)):
        raise SystemExit(f"{out}: could not write")


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - fonts/painting need it
    svg = ICONS / "rlhf-desktop.svg"
    for size in SIZES:
        out = ICONS / f"rlhf-desktop-{size}.png"
        render(svg, size, out)
        print(out)
    ico = ICONS / "rlhf-desktop.ico"  # Windows builds (PyInstaller's icon=)
    QImage(str(ICONS / "rlhf-desktop-256.png")).save(str(ico))
    print(ico)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
