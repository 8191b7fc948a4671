"""Progress bars for the long phases of a command (reading a usage file, posting a
period's charges, writing its documents): on stderr, only on a terminal, and only when
the caller allows it (`--quiet` and piped output never show one)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import click

#: Below this many lines a phase is over before a bar would be worth drawing.
SHOW_FROM = 20_000


class Progress:
    """A progress bar on stderr, or nothing; `add` may be called from any thread."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self._lock = threading.Lock()
        self._bar = click.progressbar(length=total, label=label, file=sys.stderr) if enabled else None

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def add(self, done: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(done)


def on_terminal(allowed: bool) -> bool:
    """Whether a bar may be drawn: allowed by the caller and stderr is a terminal."""
    return allowed and sys.stderr.isatty()


def phase(label: str, total: int, allowed: bool) -> Progress:
    """A bar for a phase of `total` steps, shown when allowed, big enough and on a terminal."""
    return Progress(total, label, allowed and total >= SHOW_FROM and sys.stderr.isatty())


def csv_lines(path: Path) -> int:
    """The lines of a CSV file, counted in binary (about 30 ms for a million), to size an
    import's bar; 0 for a workbook."""
    if path.suffix.lower() != ".csv":
        return 0
    count = 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            count += chunk.count(b"\n")
    return max(count - 1, 0)
