"""The documents of a closed period, written to `DIR/YYYY-MM/` all at once.

Documents are written into a hidden staging folder beside the target and moved into
place only when every file is complete, so a failed or killed command never leaves a
half-written folder that looks finished. Everything written comes from the database
(timestamps included), so `report` writes the same bytes again.

The charges are read once, ordered by consumer, and the priced usage lines under them
once, into a Polars frame (`bills.period_lines`) that `lines.csv` is written from in one
pass and that each consumer's documents take their part of. A period of many consumers has
its invoices and statements written by a `ProcessPoolExecutor`, a batch of consumers
at a time, while this process writes `journal.csv` and the auditors' workbook from one
read of the journal.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from sqlalchemy import Connection, select

from chargeback.close import variance
from chargeback.close.reconciliation import (
    PeriodTotal,
    Reconciliation,
    period_totals,
    reconcile,
    stored_totals,
)
from chargeback.core import settings
from chargeback.core.digests import sha256_of
from chargeback.core.progress import Progress
from chargeback.documents.bills import (
    Bill,
    DocumentContext,
    bills,
    document_context,
    period_lines,
    service_totals,
    write_lines_csv,
)
from chargeback.documents.cloud_workbook import has_cloud, write_cloud_workbook
from chargeback.documents.invoices import write_invoice
from chargeback.documents.reconciliation_workbook import matrix_of, write_reconciliation_workbook
from chargeback.documents.revisions import REVISIONS, Revision, archive_name, keep_earlier, read_manifest, same_files
from chargeback.documents.statements import Rollup, rollups, write_rollup, write_statement
from chargeback.ledger.export import CsvJournal, journal_chunks
from chargeback.ledger.seals import seal_of
from chargeback.store.db import collector_paused
from chargeback.store.schema import Book, Period

#: Charge lines handed to a worker at a time.
BATCH_LINES = 5_000

T = TypeVar("T")


def workers_for(consumers: int) -> int:
    """The processes writing the invoices and statements of `consumers` consumers: one
    per core (the settings' `workers`) from the settings' `parallel_units` on, else 1
    (this process alone)."""
    tuned = settings.current()
    return tuned.cores() if consumers >= tuned.parallel_units else 1


def write_documents(
    conn: Connection,
    period: str,
    folder: Path,
    *,
    progress: bool = False,
    draft: bool = False,
    issued: dt.datetime | None = None,
    review: variance.Review | None = None,
    totals: list[PeriodTotal] | None = None,
) -> int:
    """Write every document of `period` into `folder`; returns the number of files.
    `progress` allows a progress bar on a terminal for a big period (from the settings'
    `progress_lines` entries). Invoices and statements are written by worker processes,
    one per core (`workers`), when the period has at least the settings' `parallel_units`
    consumers, else in this process.
    `draft` writes an open period's documents as drafts (a preview's), dated `issued`; a
    closed period's are dated by its close, so `report` writes the same bytes again.
    `review`: the period's variance review, and `totals` its totals (`period_totals`),
    when the caller has them already; the period's figures are otherwise read once: a
    closed period's as its close stored them (`stored_totals`), an open one's from its
    entries (`period_totals`). Workers get plain data, never a database connection: the
    close writes its documents inside its own transaction, which no other connection sees."""
    folder.mkdir(parents=True, exist_ok=True)
    current = totals if totals is not None else (period_totals(conn, period) if draft else stored_totals(conn, period))
    del totals
    ctx = document_context(conn, period, draft=draft, issued=issued, totals=current)
    rec = reconcile(conn, period, current)
    by_service = service_totals(conn, ctx, current)
    parents = list(rollups(ctx, by_service))
    usage = period_lines(conn, period)
    write_lines_csv(usage, ctx.digits, folder / "lines.csv")
    consumers = len({line.consumer for line in current})
    workers = workers_for(consumers)
    total = consumers + len(rec.consumers) + len(parents) + 2
    show = progress and rec.entries >= settings.current().progress_lines and sys.stderr.isatty()
    with ExitStack() as stack:
        bar = stack.enter_context(Progress(total, f"writing the documents of {period}", show))
        writers = stack.enter_context(Writers(folder, ctx, workers, bar))
        writers.rollups(parents)  # first: the workers start on them while the rest is read
        review = review or variance.review(conn, period, current)
        matrix = matrix_of(current)
        writers.feed(bills(conn, ctx, by_service, usage))
        del current, usage  # not kept while the files are written: the bills take their parts
        with open(folder / "journal.csv", "w", encoding="utf-8", newline="") as handle:
            chunks = writers.topping_up(journal_chunks(conn, period))
            entries = CsvJournal(handle, period, ctx.digits).passing(chunks)
            write_reconciliation_workbook(conn, ctx, rec, folder / "reconciliation.xlsx", matrix, entries)
            for _ in entries:  # none are left unless the count disagreed; the CSV has them all
                pass
        writers.drain()
        bar.add(2)
        write_variance(conn, period, folder, draft=draft, issued=issued, review=review)
        write_cloud(conn, period, folder, draft=draft, issued=issued)
        writers.finish()
    return write_manifest(conn, period, folder, draft=draft, reconciliation=rec, revision=ctx.revision)


def write_version(conn: Connection, period: str, out_dir: Path, staging: Path, **options: object) -> int:
    """Write a closed period's documents into `staging` to replace `out_dir/period`,
    with every earlier version under `revisions/` (see `revisions`), so that publishing
    the staging folder keeps them all: the version there now is kept too unless the new
    one is the same files. `options` go to `write_documents`. Returns the number of files
    of this version."""
    target = out_dir / period
    previous = None if target.is_symlink() else read_manifest(target)
    files = write_documents(conn, period, staging, **options)  # type: ignore[arg-type]  # options: write_documents' own keywords
    if previous is None or same_files(read_manifest(staging), previous):
        keep_earlier(target, staging, None)
    else:
        keep_earlier(target, staging, archive_name(target, previous))
    return files


@collector_paused()
def write_bill(folder: Path, ctx: DocumentContext, bill: Bill) -> int:
    """A consumer's invoice and, for an internal unit, its statement."""
    write_invoice(folder, ctx, bill)
    if bill.unit.kind == "internal" and any(line.customer_class == "internal" for line in bill.lines):
        write_statement(folder, ctx, bill)
        return 2
    return 1


def write_batch(folder: Path, ctx: DocumentContext, batch: list[Bill], parents: list[Rollup]) -> int:
    written = sum(write_bill(folder, ctx, bill) for bill in batch)
    for rollup in parents:
        write_rollup(folder, ctx, rollup)
    return written + len(parents)


#: A worker's document context, sent once when it starts (`_start_worker`).
_CONTEXT: DocumentContext | None = None


def _start_worker(ctx: DocumentContext, tuned: settings.Settings) -> None:
    global _CONTEXT
    _CONTEXT = ctx
    settings.adopt(tuned)
    follow_parent()


def follow_parent() -> None:
    """End this worker as soon as the process that started it is gone: a command killed
    mid-way (SIGKILL runs no clean-up) must not leave its workers running for good."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="chargeback-parent-watch", daemon=True).start()


def _work(folder: Path, batch: list[Bill], parents: list[Rollup]) -> int:
    """A batch in a worker, with the context it was started with."""
    assert _CONTEXT is not None
    return write_batch(folder, _CONTEXT, batch, parents)


class Writers:
    """Writes bills' documents in this process, or, for `workers` above one, in a pool
    of that many worker processes (spawned: nothing of this process's connection or
    threads is inherited).

    Bills are handed over as the workers take them: at most the settings'
    `batches_per_worker` batches wait for each worker, so the period's bills are never
    all in memory at once (a million lines' were 300 MB), and this process tops the
    queue up between the pieces of its own work (`topping_up`)."""

    def __init__(self, folder: Path, ctx: DocumentContext, workers: int, bar: Progress) -> None:
        self.folder, self.ctx, self.bar = folder, ctx, bar
        self.pool = (
            None
            if workers <= 1
            else ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(ctx, settings.current()),
            )
        )
        self.futures: list[Future[int]] = []
        self.batch: list[Bill] = []
        self.batch_lines = 0
        self.most = workers * settings.current().batches_per_worker
        self.in_flight = 0
        self.freed = threading.Condition()
        self.waiting: Iterator[Bill] = iter(())

    def __enter__(self) -> Writers:
        return self

    def feed(self, bills: Iterator[Bill]) -> None:
        """The bills to write, taken as the workers have room (`topping_up`, `drain`)."""
        self.waiting = bills

    def topping_up(self, chunks: Iterable[T]) -> Iterator[T]:
        """`chunks` as they are, the workers' queue topped up before each."""
        for chunk in chunks:
            self.top_up()
            yield chunk

    def top_up(self) -> None:
        """Hand over bills until the workers have `most` batches waiting (none in this
        process: it writes them all in `drain`)."""
        if self.pool is None:
            return
        while self.in_flight < self.most:
            bill = next(self.waiting, None)
            if bill is None:
                return
            self.bill(bill)

    def drain(self) -> None:
        """Write or hand over every bill left, waiting for room; then the last batch."""
        for bill in self.waiting:
            self.bill(bill)
        if self.pool is not None and self.batch:
            self._submit(self.batch, [])
            self.batch, self.batch_lines = [], 0

    def bill(self, bill: Bill) -> None:
        if self.pool is None:
            self.bar.add(write_bill(self.folder, self.ctx, bill))
            return
        self.batch.append(bill)
        self.batch_lines += len(bill.lines)
        if self.batch_lines >= BATCH_LINES:
            self._submit(self.batch, [])
            self.batch, self.batch_lines = [], 0

    def rollups(self, parents: list[Rollup]) -> None:
        """Each roll-up on its own: a worker writes one while another writes the next."""
        if self.pool is None:
            self.bar.add(write_batch(self.folder, self.ctx, [], parents))
            return
        for parent in parents:
            self._submit([], [parent])

    def _submit(self, batch: list[Bill], parents: list[Rollup]) -> None:
        assert self.pool is not None
        with self.freed:
            self.freed.wait_for(lambda: self.in_flight < self.most)
            self.in_flight += 1
        future = self.pool.submit(_work, self.folder, batch, parents)
        future.add_done_callback(self._done)
        self.futures.append(future)

    def _done(self, future: Future[int]) -> None:
        with self.freed:
            self.in_flight -= 1
            self.freed.notify()
        if not future.cancelled() and future.exception() is None:
            self.bar.add(future.result())

    def finish(self) -> None:
        """Wait for every file handed to the workers; a worker's error is raised here."""
        for future in self.futures:
            future.result()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=kind is not None)


def write_variance(
    conn: Connection, period: str, folder: Path, *, draft: bool, issued: dt.datetime | None, review: variance.Review
) -> None:
    """`variance.xlsx`: the period's variance `review` (see `variance`)."""
    book = conn.execute(select(Book.name)).scalar()
    closed_at = conn.execute(select(Period.closed_at).where(Period.period == period)).scalar()
    when = issued if draft or closed_at is None else closed_at
    if when is None:
        raise ValueError(f"period {period} is not closed: give the draft's issue date")
    variance.write_workbook(review, folder / "variance.xlsx", book=book or "", draft=draft, when=when)


def write_cloud(conn: Connection, period: str, folder: Path, *, draft: bool, issued: dt.datetime | None) -> None:
    """`cloud.xlsx` when the period has imported cloud bills (see `cloud_workbook`)."""
    if not has_cloud(conn, period):
        return
    closed_at = conn.execute(select(Period.closed_at).where(Period.period == period)).scalar()
    when = issued if draft or closed_at is None else closed_at
    write_cloud_workbook(conn, period, folder / "cloud.xlsx", draft=draft, when=when or dt.datetime(2000, 1, 1))


def write_manifest(
    conn: Connection,
    period: str,
    folder: Path,
    *,
    draft: bool = False,
    reconciliation: Reconciliation | None = None,
    revision: Revision | None = None,
) -> int:
    """`manifest.json`: every file with its sha256 and size, and the period's totals;
    the earlier versions under `revisions/` have their own."""
    paths = [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p != folder / "manifest.json" and p.relative_to(folder).parts[0] != REVISIONS
    ]
    # hashlib and file reads let other threads run: a million-line period's gigabyte of
    # files is hashed on every core (one: 1.2 s)
    with ThreadPoolExecutor(settings.current().cores()) as pool:
        digests = list(pool.map(_sha256_and_size, paths))
    files = [
        {"path": path.relative_to(folder).as_posix(), "sha256": digest, "bytes": size}
        for path, (digest, size) in zip(paths, digests, strict=False)
    ]
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
        "seal": None if draft or (seal := seal_of(conn, period)) is None else seal.as_json(),
        "revision": None if draft else (revision or Revision()).as_json(),
        "totals": totals,
        "files": files,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return len(files) + 1


def _sha256_and_size(path: Path) -> tuple[str, int]:
    return sha256_of(path), path.stat().st_size


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
        if target.exists() or target.is_symlink():
            target.rename(old)
        staging.rename(target)
        if old.is_symlink():  # a link put in the folder's place: removed, what it points to untouched
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)

    try:
        yield staging, publish
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_draft(out_dir: Path, period: str) -> None:
    """A closed period's preview (`out_dir/YYYY-MM-draft/`) is out of date: removed (a
    link put in its place is removed, what it points to untouched)."""
    draft = out_dir / f"{period}-draft"
    if draft.is_symlink():
        draft.unlink()
    elif draft.is_dir():
        shutil.rmtree(draft, ignore_errors=True)


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
        kind, _, pid = path.name[len(name) + 2 :].rpartition("-")
        if kind not in ("partial", "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        if kind == "old" and not (out_dir / name).exists():
            path.rename(out_dir / name)
        else:
            shutil.rmtree(path, ignore_errors=True)
