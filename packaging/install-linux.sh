#!/bin/sh
# Install the desktop entry and icons for the current user (no root needed):
#
#     packaging/install-linux.sh [EXECUTABLE]
#
# EXECUTABLE defaults to the PyInstaller build (dist/rlhf-desktop/rlhf-desktop) when it exists,
# else the `rlhf-desktop` command on PATH. XDG_DATA_HOME (default ~/.local/share) is honoured.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
data=${XDG_DATA_HOME:-$HOME/.local/share}
exe=${1:-}
if [ -z "$exe" ]; then
    if [ -x "$root/dist/rlhf-desktop/rlhf-desktop" ]; then
        exe="$root/dist/rlhf-desktop/rlhf-desktop"
    else
        exe=rlhf-desktop
    fi
fi
case "$exe" in
    /*) ;;
    */*) exe=$(cd "$(dirname "$exe")" && pwd)/$(basename "$exe") ;;  # relative: make it absolute
esac
for size in 16 24 32 48 64 128 256 512; do
    dest="$data/icons/hicolor/${size}x${size}/apps"
    mkdir -p "$dest"
    cp "$root/resources/icons/rlhf-desktop-$size.png" "$dest/rlhf-desktop.png"
done
mkdir -p "$data/icons/hicolor/scalable/apps" "$data/applications"
cp "$root/resources/icons/rlhf-desktop.svg" "$data/icons/hicolor/scalable/apps/rlhf-desktop.svg"
sed "s|^Exec=rlhf-desktop|Exec=\"$exe\"|" "$here/rlhf-desktop.desktop" > "$data/applications/rlhf-desktop.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$data/applications" || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$data/icons/hicolor" || true
echo "installed $data/applications/rlhf-desktop.desktop (Exec: $exe)"
