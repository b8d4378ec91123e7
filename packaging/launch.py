"""PyInstaller entry point: the `rlhf-desktop` command (the GUI when run without arguments)."""

import multiprocessing

from rlhf_desktop.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # datasets/torch may start worker processes from the bundle
    raise SystemExit(main())
