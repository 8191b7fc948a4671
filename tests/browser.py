"""Headless Chromium as the tests run it: the flags this machine's closed network needs, a
profile of the test's own, and a skip when Chromium is not installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium() -> str:
    """Chromium's command, or a skip saying how to install it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("Chromium is not installed (Debian package `chromium`)")


def run_chromium(profile: Path, *arguments: str) -> None:
    """Run headless Chromium with `arguments` (a --screenshot or --print-to-pdf and a page)."""
    subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *arguments],
        check=True,
        capture_output=True,
        timeout=120,
    )
