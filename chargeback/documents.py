"""The documents of a closed period, written to `DIR/YYYY-MM/` all at once.

Documents are written into a hidden staging folder beside the target and moved into
place only when every file is complete, so a failed or killed command never leaves a
half-written folder that looks finished. Everything written comes from the database
(timestamps included), so `report` writes the same bytes again.

The charge lines are read once, ordered by consumer; for a big period each batch of
consumers' invoices and statements is written by a worker process while this process
writes the auditors' workbook, so every core is busy. `journal.csv` is written from the
same read of the journal as the workbook, or, for a period whose entries are committed
(`report`), by a worker from a read of its own that starts at once and is checked
against this process's read.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import json
import multiprocessing
import os
import pickle
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from types import TracebackType

from sqlalchemy import Connection, func, select

from chargeback import variance
from chargeback.bills import Bill, DocumentContext, bills, document_context, service_totals
from chargeback.db import collector_paused, connect, url_for_another_process
from chargeback.export import CsvJournal, JournalRow, journal_chunks
from chargeback.invoices import template, write_invoice
from chargeback.processes import cores
from chargeback.progress import Progress
from chargeback.reconciliation import PeriodTotal, Reconciliation, period_totals, reconcile, stored_totals
from chargeback.reconciliation_workbook import matrix_of, write_reconciliation_workbook
from chargeback.schema import Book, Entry, Period
from chargeback.statements import Rollup, rollups, write_rollup, write_statement

#: Below this many charge lines and this many consumers, starting worker processes
#: (about a second each) costs more than it saves. Each consumer is one or two files of
#: some milliseconds whatever its lines: 2,000 consumers with 10,000 lines between them
#: took 19.7-22.7 s in one process and 13.5-15.4 s with two.
PARALLEL_LINES = 20_000
PARALLEL_CONSUMERS = 500
#: From this many charge lines on, writing takes long enough to show a progress bar.
PROGRESS_LINES = 20_000
#: Charge lines handed to a worker at a time.
BATCH_LINES = 5_000


def write_documents(conn: Connection, period: str, folder: Path, *, progress: bool = False,
                    workers: int | None = None, draft: bool = False,
                    issued: dt.datetime | None = None,
                    review: variance.Review | None = None,
                    totals: list[PeriodTotal] | None = None, committed: bool = False) -> int:
    """Write every document of `period` into `folder`; returns the number of files.
    `progress` allows a progress bar on a terminal for a big period; `workers` overrides
    the number of processes (by default one per core for a big period). `draft` writes an
    open period's documents as drafts (a preview's), dated `issued`; a closed period's are
    dated by its close, so `report` writes the same bytes again. `review`: the period's
    variance review, and `totals` its totals (`period_totals`), when the caller has them
    already; the period's figures are otherwise read once: a closed period's as its close
    stored them (`stored_totals`), an open one's from its entries (`period_totals`).
    `committed`: the period's entries are committed (`report`), so with workers one of
    them writes `journal.csv` from a read of its own while this process reads the
    period; not in the transaction that posted them (`close`), which no other connection
    sees."""
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        pool = None
        csv_elsewhere: Future[Fingerprint] | None = None
        if workers is None and _entries(conn, period) >= PARALLEL_LINES:
            workers = cores()  # started first: the workers load while the period is read
        if workers is not None and workers > 1:
            pool = stack.enter_context(worker_pool(workers))
            csv_elsewhere = _journal_csv_elsewhere(conn, pool, period, folder, committed)
        current = totals if totals is not None else (
            period_totals(conn, period) if draft else stored_totals(conn, period))
        del totals
        ctx = document_context(conn, period, draft=draft, issued=issued, totals=current)
        rec = reconcile(conn, period, current)
        by_service = service_totals(conn, ctx, current)
        parents = list(rollups(ctx, by_service))
        consumers = len({line.consumer for line in current})
        if workers is None and consumers >= PARALLEL_CONSUMERS and cores() > 1:
            pool = stack.enter_context(worker_pool(cores()))
            csv_elsewhere = _journal_csv_elsewhere(conn, pool, period, folder, committed)
        total = consumers + len(rec.consumers) + len(parents) + 2
        show = progress and rec.entries >= PROGRESS_LINES and sys.stderr.isatty()
        bar = stack.enter_context(Progress(total, f"writing the documents of {period}", show))
        writers = stack.enter_context(Writers(folder, ctx, pool, bar))
        writers.rollups(parents)  # first: the workers start on them while the rest is read
        review = review or variance.review(conn, period, current)
        matrix = matrix_of(current)
        del current  # half a million totals at a million lines: not kept while the files are written
        # The cycle collector is paused while millions of plain tuples and strings are
        # made (they hold no cycles); each bill's files are written with it paused too,
        # and it runs between bills, where a workbook's own cycles are left.
        with collector_paused() if pool is not None else nullcontext():
            for bill in bills(conn, ctx, by_service):
                writers.bill(bill)
        writers.flush()
        with collector_paused(), ExitStack() as files:
            seen = Seen()
            if csv_elsewhere is None:
                handle = files.enter_context(open(folder / "journal.csv", "w", encoding="utf-8", newline=""))
                entries = CsvJournal(handle, period, ctx.digits).passing(journal_chunks(conn, period))
            else:
                entries = seen.passing(journal_chunks(conn, period))
            write_reconciliation_workbook(conn, ctx, rec, folder / "reconciliation.xlsx", matrix,
                                          entries)
            for _ in entries:  # none are left unless the count disagreed; the CSV has them all
                pass
        if csv_elsewhere is not None and csv_elsewhere.result() != seen.fingerprint():
            raise RuntimeError(f"journal.csv of {period} was written from other entries than this "
                               "command read (was the period reopened meanwhile?); run `report` again")
        bar.add(2)
        write_variance(conn, period, folder, draft=draft, issued=issued, review=review)
        writers.finish()
    return write_manifest(conn, period, folder, draft=draft, reconciliation=rec)


#: A read of the journal: its entries' count, and the last one's id and hash (which
#: chains every entry before it).
Fingerprint = tuple[int, int | None, str | None]


class Seen:
    """Remembers the `Fingerprint` of the entries passing through it."""

    def __init__(self) -> None:
        self.count, self.last = 0, None  # type: ignore[var-annotated]

    def chunks(self, chunks: Iterable[list[JournalRow]]) -> Iterator[list[JournalRow]]:
        for chunk in chunks:
            self.count += len(chunk)
            self.last = chunk[-1] if chunk else self.last
            yield chunk

    def passing(self, chunks: Iterable[list[JournalRow]]) -> Iterator[JournalRow]:
        for chunk in self.chunks(chunks):
            yield from chunk

    def fingerprint(self) -> Fingerprint:
        # a row of `export.JOURNAL_COLUMNS`: the id first, the hash last
        return (self.count, None, None) if self.last is None else (self.count, self.last[0], self.last[-1])


def _journal_csv_elsewhere(conn: Connection, pool: ProcessPoolExecutor, period: str, folder: Path,
                           committed: bool) -> Future[Fingerprint] | None:
    """`journal.csv` handed to a worker, which starts on it at once: this process is busy
    reading the period for the first seconds, and the CSV, a tenth of the documents'
    work at a million lines, no longer waits for it. Only for `committed` entries."""
    url = url_for_another_process(conn)
    if not committed or url is None:
        return None
    digits = conn.execute(select(Book.minor_digits)).scalar_one()
    return pool.submit(write_journal_csv, url, period, folder / "journal.csv", digits)


def write_journal_csv(url: str, period: str, path: Path, digits: int) -> Fingerprint:
    """In a worker: `journal.csv` from the worker's own read of the period's committed
    entries; returns what it read, for the command to compare with its own read."""
    engine = connect(url, reader=True)
    seen = Seen()
    try:
        with collector_paused(), engine.connect() as conn, \
                open(path, "w", encoding="utf-8", newline="") as handle:
            journal = CsvJournal(handle, period, digits)
            for chunk in seen.chunks(journal_chunks(conn, period)):
                journal.write(chunk)
    finally:
        engine.dispose()
    return seen.fingerprint()


def _entries(conn: Connection, period: str) -> int:
    """The period's entries, counted on their index: whether it is big enough for workers."""
    return conn.execute(select(func.count()).select_from(Entry).where(Entry.period == period)).scalar() or 0


@collector_paused()
def write_bill(folder: Path, ctx: DocumentContext, bill: Bill) -> int:
    """A consumer's invoice and, for an internal unit, its statement."""
    write_invoice(folder, ctx, bill)
    if bill.unit.kind == "internal" and any(line.customer_class == "internal" for line in bill.lines):
        write_statement(folder, ctx, bill)
        return 2
    return 1


def write_batch(folder: Path, ctx: DocumentContext, batch: list[Bill],
                parents: list[Rollup]) -> int:
    written = sum(write_bill(folder, ctx, bill) for bill in batch)
    for rollup in parents:
        with collector_paused():
            write_rollup(folder, ctx, rollup)
    return written + len(parents)


#: The document context a worker was last sent, and its token.
_WORKER_CONTEXT: tuple[str, DocumentContext] | None = None


#: How much lower the workers' CPU priority is than this process's: on two cores, three
#: busy processes would each get two thirds of one, and this process, which reads the
#: bills for the workers and writes the journal alone, is the longest of them.
WORKER_NICENESS = 5


def _start_worker() -> None:
    """A worker's start, while this process reads the period: lower priority, and the
    invoice template compiled."""
    if hasattr(os, "nice"):  # not on Windows
        os.nice(WORKER_NICENESS)
    template()


def _ready() -> None:
    """Nothing: submitted once per worker so that each starts at once (the pool starts
    them on demand)."""


def _work(folder: Path, context: tuple[str, bytes], batch: bytes, parents: list[Rollup]) -> int:
    """A batch in a worker. The cycle collector is paused for the whole batch, its
    unpickling included, and runs once after it on what the batch left (its workbooks'
    own cycles); the context, kept for the worker's life, is frozen out of its walks.
    Collecting as it went cost about 8% of a worker's instructions, mostly while
    unpickling (40 bills: 5.08 against 5.51 billion, with the faster amounts)."""
    global _WORKER_CONTEXT
    token, pickled = context
    if _WORKER_CONTEXT is None or _WORKER_CONTEXT[0] != token:
        _WORKER_CONTEXT = token, pickle.loads(pickled)
        gc.freeze()
    with collector_paused():
        written = write_batch(folder, _WORKER_CONTEXT[1], pickle.loads(batch), parents)
    gc.collect(1)  # all the batch made is young: the older generation need not be walked
    return written


@contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """`workers` processes for the documents, started at once. They get plain data, never
    a database connection: the close writes its documents inside its own transaction,
    which no other connection can see. On an error, work not yet started is dropped."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker)
    try:
        for _ in range(workers):
            pool.submit(_ready)
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


class Writers:
    """Writes bills' documents in this process, or in `pool`'s worker processes."""

    def __init__(self, folder: Path, ctx: DocumentContext, pool: ProcessPoolExecutor | None,
                 bar: Progress) -> None:
        self.folder, self.ctx, self.bar, self.pool = folder, ctx, bar, pool
        # the context goes with every batch, pickled once; a worker unpickles it once
        self.context = ("", b"") if pool is None else (
            os.urandom(8).hex(), pickle.dumps(ctx, protocol=pickle.HIGHEST_PROTOCOL))
        self.futures: list[Future[int]] = []
        self.batch: list[Bill] = []
        self.batch_lines = 0

    def __enter__(self) -> Writers:
        return self

    def bill(self, bill: Bill) -> None:
        if self.pool is None:
            self.bar.add(write_bill(self.folder, self.ctx, bill))
            return
        self.batch.append(bill)
        self.batch_lines += len(bill.lines)
        if self.batch_lines >= BATCH_LINES:
            self.flush()

    def rollups(self, parents: list[Rollup]) -> None:
        """Each roll-up on its own: a worker writes one while another writes the next."""
        if self.pool is None:
            self.bar.add(write_batch(self.folder, self.ctx, [], parents))
            return
        for parent in parents:
            self._submit([], [parent])

    def flush(self) -> None:
        """Hand over the last, partly filled batch of bills."""
        if self.pool is not None and self.batch:
            self._submit(self.batch, [])
            self.batch, self.batch_lines = [], 0

    def _submit(self, batch: list[Bill], parents: list[Rollup]) -> None:
        assert self.pool is not None
        # pickled now, not when a worker is free: bills waiting for a worker take a
        # quarter of the memory as bytes (200,000 lines: 19 MB)
        payload = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        future = self.pool.submit(_work, self.folder, self.context, payload, parents)
        future.add_done_callback(self._done)
        self.futures.append(future)

    def _done(self, future: Future[int]) -> None:
        if not future.cancelled() and future.exception() is None:
            self.bar.add(future.result())

    def finish(self) -> None:
        """Wait for every file handed to the workers; a worker's error is raised here."""
        for future in self.futures:
            future.result()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is not None:
            for future in self.futures:
                future.cancel()


def write_variance(conn: Connection, period: str, folder: Path, *, draft: bool,
                   issued: dt.datetime | None, review: variance.Review) -> None:
    """`variance.xlsx`: the period's variance `review` (see `variance`)."""
    book = conn.execute(select(Book.name)).scalar()
    closed_at = conn.execute(select(Period.closed_at).where(Period.period == period)).scalar()
    when = issued if draft or closed_at is None else closed_at
    if when is None:
        raise ValueError(f"period {period} is not closed: give the draft's issue date")
    variance.write_workbook(review, folder / "variance.xlsx", book=book, draft=draft, when=when)


def write_manifest(conn: Connection, period: str, folder: Path, *, draft: bool = False,
                   reconciliation: Reconciliation | None = None) -> int:
    """`manifest.json`: every file with its sha256 and size, and the period's totals."""
    paths = [p for p in sorted(folder.rglob("*")) if p.is_file() and p != folder / "manifest.json"]
    # hashlib and file reads let other threads run: a million-line period's gigabyte of
    # files is hashed on every core (one: 1.2 s)
    with ThreadPoolExecutor(cores()) as pool:
        digests = list(pool.map(_sha256_of, paths))
    files = [{"path": path.relative_to(folder).as_posix(), "sha256": digest, "bytes": size}
             for path, (digest, size) in zip(paths, digests)]
    book = conn.execute(select(Book.name)).scalar()
    record = None if draft else conn.execute(select(Period.__table__).where(Period.period == period)).first()
    totals = (reconciliation or reconcile(conn, period)).as_json()
    status = totals.pop("status")
    manifest = {
        "book": book,
        "period": period,
        "draft": draft,  # a preview's: the period stays open, nothing was posted
        "status": "open" if draft else status,
        "closed_at": record.closed_at.isoformat() if record and record.closed_at else None,
        "journal_hash": record.closed_hash if record else None,
        "totals": totals,
        "files": files,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return len(files) + 1


def _sha256_of(path: Path) -> tuple[str, int]:
    """sha256 and size of a file, read a piece at a time (journal.csv can be 250 MB)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest(), os.fstat(handle.fileno()).st_size


@contextmanager
def staged(out_dir: Path, name: str) -> Iterator[tuple[Path, Callable[[], None]]]:
    """Yield a staging folder and a `publish` function that moves it to `out_dir/name`.

    Without `publish` (or on an error) the staging folder is removed and an existing
    `out_dir/name` is left as it was."""
    out_dir.mkdir(parents=True, exist_ok=True)
    recover(out_dir, name)
    target = out_dir / name
    staging = out_dir / f".{name}.partial-{os.getpid()}"
    old = out_dir / f".{name}.old-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()

    def publish() -> None:
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)

    try:
        yield staging, publish
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but belongs to someone else
        return True
    return True


def recover(out_dir: Path, name: str) -> None:
    """Tidy up after a command killed while writing `out_dir/name`: a staging folder is
    removed; a previous version moved aside just before the new one was moved in is put
    back when nothing replaced it (so the folder is the old one or the new one, never
    missing for good). Only leftovers of processes that are gone are touched."""
    for path in sorted(out_dir.glob(f".{name}.*-*")):
        kind, _, pid = path.name[len(name) + 2:].rpartition("-")
        if kind not in ("partial", "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        if kind == "old" and not (out_dir / name).exists():
            path.rename(out_dir / name)
        else:
            shutil.rmtree(path, ignore_errors=True)
