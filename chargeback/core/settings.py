"""The engine's thresholds in one object: batch sizes, when to go parallel, how many
workers, when to show progress, how big a sheet or chart gets.

The defaults are the figures the benchmark chose (docs/PERFORMANCE.md); every module
reads them through `current()`, and a caller (a test, a benchmark) sets others for a
block with `using(...)` instead of patching a module's names. Worker processes get the
caller's settings with their work (`documents.folder`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    #: Rows per SQLite INSERT at most; fewer when the row is wide (SQLite binds at most
    #: `SQLITE_LIMIT_VARIABLE_NUMBER` values a statement, 32,766 by default).
    rows_per_insert: int = 2_000
    #: Bytes of a usage file read and checked at a time (about a million lines): an
    #: import's memory is one piece's lines, not the whole file's text (10M lines: 3.5 GB).
    usage_piece_bytes: int = 64 << 20
    #: Usage lines a close prices and posts at a time at most (a range of consumers; a
    #: consumer's lines are never split): a million lines take some 900 MB.
    close_lines: int = 1_000_000
    #: From this many consumers on, their documents are written by worker processes. Each
    #: consumer is one or two files of some milliseconds whatever its lines, and starting
    #: the workers costs about a second: 2,000 consumers with 10,000 lines between them
    #: took 19.7-22.7 s in one process and 13.5-15.4 s with two.
    parallel_units: int = 500
    #: Worker processes (documents) and threads (the manifest's digests); None: one per core.
    workers: int | None = None
    #: Batches of bills waiting for each document worker at most: enough to keep it busy
    #: while this process writes the auditors' workbook a piece at a time, few enough
    #: that the period's bills are not all in memory at once.
    batches_per_worker: int = 8
    #: From this many entries on, writing the documents shows a progress bar (on a terminal).
    progress_lines: int = 20_000
    #: Journal lines on one sheet of the reconciliation workbook (Excel's 1,048,576 rows,
    #: less the header and a spare row); past it the journal continues on the next sheet.
    journal_lines_per_sheet: int = 1_048_574
    #: A statement's chart shows this many services at most (the largest).
    chart_services: int = 15

    def cores(self) -> int:
        """The workers to use when going parallel."""
        return self.workers or os.cpu_count() or 1


_current: ContextVar[Settings] = ContextVar("chargeback_settings", default=Settings())  # noqa: B039 frozen: never mutated


def current() -> Settings:
    """The settings in force (the defaults unless a caller is `using` others)."""
    return _current.get()


def adopt(settings: Settings) -> None:
    """`settings` in force from now on in this thread: a worker process's, its parent's."""
    _current.set(settings)


@contextmanager
def using(settings: Settings) -> Iterator[Settings]:
    """`settings` in force for the block (in this thread; worker processes get them with
    their work)."""
    token = _current.set(settings)
    try:
        yield settings
    finally:
        _current.reset(token)
