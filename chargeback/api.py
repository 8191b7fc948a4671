"""The engine's entry points: one function per command, each in one transaction.

The CLI only parses arguments, calls one of these and prints the result; scripts and
tests can call them directly with a database URL.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from sqlalchemy import Engine, insert, select

from chargeback import budgets as _budgets, db, delivery, variance
from chargeback.adjustments import AdjustResult, adjust as _adjust
from chargeback.book import LoadResult, load_book
from chargeback.documents import staged, write_documents
from chargeback.errors import Refused
from chargeback.export import export as _export
from chargeback.periods import (
    CloseResult,
    check_period,
    close_period,
    period_status,
    periods_with_activity,
    reopen_period,
)
from chargeback.reconciliation import Reconciliation, reconcile as _reconcile
from chargeback.safe import file_in
from chargeback.schema import Book, Delivery
from chargeback.usage import ImportResult, import_usage
from chargeback.verification import VerifyResult, verify as _verify


def now() -> dt.datetime:
    """The current UTC time, without microseconds, as stored."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)


def _engine(url: str | Engine | None) -> Engine:
    return url if isinstance(url, Engine) else db.connect(url)


def init(url: str | Engine | None = None) -> None:
    """Create the schema or upgrade it; safe to repeat."""
    db.upgrade(_engine(url))


def load(url: str | Engine | None, book: Path) -> LoadResult:
    """Load or update a book's reference data (creating the schema if needed)."""
    engine = _engine(url)
    db.upgrade(engine)
    with db.transaction(engine) as conn:
        return load_book(conn, Path(book), now())


def import_file(url: str | Engine | None, path: Path, period: str) -> ImportResult:
    check_period(period)
    with db.transaction(_engine(url)) as conn:
        return import_usage(conn, Path(path), period, now())


def adjust(url: str | Engine | None, period: str, service: str, consumer: str, amount: str,
           reason: str, reference: str | None = None) -> AdjustResult:
    check_period(period)
    with db.transaction(_engine(url)) as conn:
        return _adjust(conn, period, service, consumer, amount, reason, reference, now())


def close(url: str | Engine | None, period: str, out_dir: Path = Path("out")) -> CloseResult:
    """Close the period and write its documents: all of it, or nothing."""
    check_period(period)
    engine = _engine(url)
    with staged(Path(out_dir), period) as (folder, publish):
        with db.transaction(engine) as conn:
            result = close_period(conn, period, now())
            result.review = variance.review(conn, period)
            result.budget_warnings = _budgets.warnings(conn, period)
            try:
                write_documents(conn, period, folder, review=result.review)
            except OSError as exc:
                raise Refused(
                    f"cannot write the documents to {out_dir}: {exc.strerror or exc}; "
                    "the period stays open: free some space or choose another --out folder"
                ) from exc
        publish()
    return result


@dataclass
class PreviewResult:
    """What a close would post, its variance review, and where the drafts are."""

    period: str
    posted: int
    reconciliation: Reconciliation
    review: variance.Review
    budget_warnings: list[_budgets.BudgetStatus]
    folder: Path


def preview(url: str | Engine | None, period: str, out_dir: Path = Path("out")) -> PreviewResult:
    """Everything `close` does (it runs the close itself: pricing, recurring fees,
    allocations, net zero), in a transaction that is rolled back: nothing is posted or
    locked. The documents are written as drafts to `out_dir/YYYY-MM-draft/`, with the
    variance review."""
    check_period(period)
    issued = now()
    with staged(Path(out_dir), f"{period}-draft") as (folder, publish):
        with db.rolled_back(_engine(url)) as conn:
            if period_status(conn, period) == "closed":
                raise Refused(f"period {period} is closed: its documents are final; "
                              f"`chargeback report {period}` writes them again")
            result = close_period(conn, period, issued)
            result.reconciliation.status = "open"  # once the transaction is rolled back
            review = variance.review(conn, period)
            warnings = _budgets.warnings(conn, period)
            try:
                write_documents(conn, period, folder, draft=True, issued=issued, review=review)
            except OSError as exc:
                raise Refused(f"cannot write the drafts to {out_dir}: {exc.strerror or exc}") from exc
        publish()
    return PreviewResult(period, result.posted, result.reconciliation, review, warnings,
                         Path(out_dir) / f"{period}-draft")


def budgets(url: str | Engine | None, fiscal_year: int, out_dir: Path = Path("out")) -> tuple[_budgets.Table, Path]:
    """The budget table of a fiscal year, also written to `out_dir/budgets-FYYYYY.xlsx`."""
    if not 1000 <= fiscal_year <= 9999:
        raise Refused(f"{fiscal_year} is not a fiscal year: write the year it ends in, YYYY")
    with db.transaction(_engine(url)) as conn:
        table = _budgets.table(conn, fiscal_year)
        book = conn.execute(select(Book.name)).scalar() or ""
    path = Path(out_dir) / f"budgets-FY{fiscal_year}.xlsx"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        table.write(path, book, now())
    except OSError as exc:
        raise Refused(f"cannot write {path}: {exc.strerror or exc}") from exc
    return table, path


def report(url: str | Engine | None, period: str, out_dir: Path = Path("out")) -> Path:
    """Write a closed period's documents again."""
    check_period(period)
    with db.transaction(_engine(url)) as conn:
        if period_status(conn, period) != "closed":
            raise Refused(f"period {period} is not closed: documents are written for closed periods")
        with staged(Path(out_dir), period) as (folder, publish):
            try:
                write_documents(conn, period, folder)
            except OSError as exc:
                raise Refused(f"cannot write the documents to {out_dir}: {exc.strerror or exc}") from exc
            publish()
    return Path(out_dir) / period


@dataclass
class DeliverResult:
    """What `deliver` did, unit by unit."""

    period: str
    folder: Path
    sent: list[delivery.Sent] = field(default_factory=list)
    failed: list[delivery.Failed] = field(default_factory=list)
    sent_before: list[str] = field(default_factory=list)
    no_email: list[delivery.Recipient] = field(default_factory=list)
    rewritten: bool = False  # the documents were written again first
    outbox: Path | None = None  # a dry run's .eml files
    written: int = 0


def deliver(url: str | Engine | None, period: str, out_dir: Path = Path("out"),
            smtp: str = "localhost:25", sender: str = "chargeback@localhost",
            dry_run: bool = False) -> DeliverResult:
    """Send each unit charged in the closed `period` its documents from
    `out_dir/YYYY-MM/` (written again first when they are missing or from another close),
    one message per unit; a dry run writes them to `out_dir/YYYY-MM-outbox/` instead."""
    check_period(period)
    try:
        server = delivery.parse_server(smtp)
    except ValueError as exc:
        raise Refused(f"--smtp: {exc}") from None
    if len(delivery.addresses(sender) or ()) != 1:
        raise Refused(f"--from: {sender!r} is not an email address")
    engine = _engine(url)
    folder = Path(out_dir) / period
    with db.transaction(engine) as conn:
        todo = delivery.plan(conn, period)
    result = DeliverResult(period, folder, sent_before=todo.delivered, no_email=todo.no_email)
    if todo.pending and (not todo.current(folder) or todo.missing(folder)):
        report(engine, period, out_dir)
        result.rewritten = True
    missing = todo.missing(folder)
    if missing:
        listed = "; ".join(f"{unit}: {', '.join(files)}" for unit, files in missing.items())
        raise Refused(f"cannot deliver {period}: documents missing from {folder}: {listed}; nothing was sent")
    issued = now()
    messages = ((r, *delivery.message(todo, r, folder, sender, issued)) for r in todo.pending)
    if dry_run:
        with staged(Path(out_dir), f"{period}-outbox") as (staging, publish):
            for recipient, msg, _ in messages:
                file_in(staging, recipient.unit, ".eml").write_bytes(bytes(msg))
                result.written += 1
            publish()
        result.outbox = Path(out_dir) / f"{period}-outbox"
        return result

    def record(done: delivery.Sent) -> None:
        with db.transaction(engine) as conn:
            conn.execute(insert(Delivery).values(
                period=period, unit=done.unit, journal_hash=todo.journal_hash, email=done.to,
                sent_at=now(), message_id=done.message_id,
                attachments=delivery.attachments_text(done.files)))

    result.sent, result.failed = delivery.send(server, messages, record)
    return result


def reopen(url: str | Engine | None, period: str, reason: str) -> None:
    check_period(period)
    with db.transaction(_engine(url)) as conn:
        reopen_period(conn, period, reason, now())


def reconcile(url: str | Engine | None, period: str) -> Reconciliation:
    check_period(period)
    with db.transaction(_engine(url)) as conn:
        return _reconcile(conn, period)


def export(url: str | Engine | None, period: str, fmt: str, out: Path | None = None) -> str | None:
    """The period's journal as text (when `out` is None) or written to `out`."""
    check_period(period)
    with db.transaction(_engine(url)) as conn:
        if out is None:
            buffer = io.StringIO()
            _export(conn, period, fmt, buffer)
            return buffer.getvalue()
        with open(out, "w", encoding="utf-8", newline="") as handle:
            _export(conn, period, fmt, handle)
        return None


def verify(url: str | Engine | None) -> VerifyResult:
    with db.transaction(_engine(url)) as conn:
        return _verify(conn)


@dataclass
class RunResult:
    """What `run` did: the book loaded, each import, each close."""

    load: LoadResult
    imports: list[ImportResult] = field(default_factory=list)
    closes: list[CloseResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    out_dir: Path = Path("out")


def usage_files(book: Path, through: str | None = None) -> list[tuple[str, Path]]:
    """(period, file) of every usage file of the book, in name order."""
    folder = Path(book) / "usage"
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in (".csv", ".xlsx"):
            continue
        period = path.name[:7]
        try:
            check_period(period)
        except Refused:
            raise Refused(f"{path.name}: a usage file's name must start with its period, YYYY-MM") from None
        if through is None or period <= through:
            found.append((period, path))
    return found


def run(url: str | Engine | None, book: Path, out_dir: Path = Path("out"),
        through: str | None = None) -> RunResult:
    """The monthly job: load the book, import its usage files, close the periods in order.

    Safe to run again: imported lines are skipped as duplicates and closed periods are
    left as they are."""
    if through is not None:
        check_period(through)
    engine = _engine(url)
    result = RunResult(load(engine, book), out_dir=Path(out_dir))
    files = usage_files(book, through)
    periods = sorted({p for p, _ in files})
    with db.transaction(engine) as conn:
        status = dict(periods_with_activity(conn))
    for period, path in files:
        if status.get(period) == "closed":
            continue
        result.imports.append(import_file(engine, path, period))
    for period in periods:
        if status.get(period) == "closed":
            result.skipped.append(period)
            continue
        result.closes.append(close(engine, period, out_dir))
    return result


def demo_book() -> Path:
    """The bundled demo book (installed in the package, or at the top of a checkout)."""
    packaged = Path(str(resources.files("chargeback"))) / "ledgers" / "demo"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "ledgers" / "demo"


def demo(out_dir: Path = Path("out")) -> tuple[RunResult, str]:
    """`run` on the bundled demo book with a fresh SQLite database in `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    database = out_dir / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{database.resolve()}"
    return run(url, demo_book(), out_dir), url
