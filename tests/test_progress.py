"""Progress bars: drawn on a terminal for the long phases (reading a usage file, pricing
and posting, writing documents), never with --quiet and never when output is piped."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from conftest import usage_file

LINES = 25_000


def big_feed(folder: Path) -> Path:
    return usage_file(folder, "2026-03.csv", [["2026-03-02", "HELP", "ART", "1", f"T-{n}", ""] for n in range(LINES)])


def on_terminal(*args: str, cwd: Path) -> tuple[int, str]:
    """Run `chargeback ARGS` with a pseudo-terminal as its stdout and stderr."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "chargeback", *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    return process.wait(), output.decode(errors="replace")


def test_bars_on_a_terminal(mini_book: Path, tmp_path: Path) -> None:
    db = ["--db", f"sqlite:///{tmp_path / 'db.sqlite'}"]
    assert on_terminal(*db, "load", str(mini_book), cwd=tmp_path)[0] == 0
    code, shown = on_terminal(*db, "import", str(big_feed(tmp_path)), "--period", "2026-03", cwd=tmp_path)
    assert code == 0, shown
    assert "reading 2026-03.csv" in shown and "100%" in shown
    assert f"{LINES} lines read" in shown
    code, shown = on_terminal(*db, "close", "2026-03", "--no-documents", cwd=tmp_path)
    assert code == 0, shown
    assert "pricing and posting 2026-03" in shown and "100%" in shown


def test_no_bar_when_quiet_or_piped(mini_book: Path, tmp_path: Path) -> None:
    db = ["--db", f"sqlite:///{tmp_path / 'db.sqlite'}"]
    feed = big_feed(tmp_path)
    assert on_terminal(*db, "load", str(mini_book), cwd=tmp_path)[0] == 0
    code, shown = on_terminal(*db, "--quiet", "import", str(feed), "--period", "2026-03", cwd=tmp_path)
    assert code == 0 and shown == ""
    piped = subprocess.run(
        [sys.executable, "-m", "chargeback", *db, "close", "2026-03", "--no-documents"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert piped.returncode == 0 and piped.stderr == ""
    assert "closed 2026-03" in piped.stdout and "pricing and posting" not in piped.stdout
