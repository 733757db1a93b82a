"""Where the real Chromium is and how it is started: shared by the browser tests and by
`make bench` (bench/weight.py), so both drive the same browser the same way."""

import os
import shutil

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """Return the Chromium executable (Debian's package), or None when there is none."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    return shutil.which("chromium")
