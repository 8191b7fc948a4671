"""The engine's entry points: one function per command, each in one transaction.

The CLI only parses arguments, calls one of these and prints the result; scripts and
tests can call them directly with a database URL. The names the CLI shows besides
these results (`Refused`, `Review`, `redact`...) are re-exported here (`import X as X`),
so that the CLI imports this module alone (import-linter's contract in pyproject.toml).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError
from xlsxwriter.exceptions import FileCreateError

from chargeback.book.load import LoadResult, load_book
from chargeback.book.snapshot import load_reference
from chargeback.bundled import bundled
from chargeback.close import budgets as _budgets
from chargeback.close import service_levels as _sla
from chargeback.close import status as _status
from chargeback.close import variance
from chargeback.close.budgets import BudgetStatus as BudgetStatus
from chargeback.close.budgets import warning_text as warning_text
from chargeback.close.periods import (
    CloseResult,
    close_period,
    cost_periods,
    period_status,
    periods_with_activity,
    reopen_period,
)
from chargeback.close.reconciliation import PeriodTotal, Reconciliation
from chargeback.close.reconciliation import reconcile as _reconcile
from chargeback.close.recovery import Recovery
from chargeback.close.recovery import percent as percent
from chargeback.close.recovery import recovery as _recovery
from chargeback.close.recovery import write_workbook as write_recovery
from chargeback.close.variance import Review as Review
from chargeback.close.variance import report_lines as report_lines
from chargeback.core.errors import InputRefused as InputRefused
from chargeback.core.errors import Refused
from chargeback.core.fields import check_period as check_period
from chargeback.core.safe import file_in
from chargeback.documents import delivery
from chargeback.documents.delivery import parse_server as parse_server
from chargeback.documents.folder import remove_draft, staged, write_documents, write_version
from chargeback.documents.unit_charges import write_unit_charges
from chargeback.ingest.cloud import CloudResult, import_cloud
from chargeback.ingest.measurements import MeasurementResult, import_measurements
from chargeback.ingest.usage import ImportResult, import_usage
from chargeback.ledger import audit
from chargeback.ledger import seals as _seals
from chargeback.ledger.adjustments import AdjustResult
from chargeback.ledger.adjustments import adjust as _adjust
from chargeback.ledger.export import export as _export
from chargeback.ledger.unit_charges import UnitCharges, unit_charges
from chargeback.ledger.verification import VerifyResult
from chargeback.ledger.verification import verify as _verify
from chargeback.ledger.voids import VoidResult
from chargeback.ledger.voids import void as _void
from chargeback.store import db
from chargeback.store.db import database_url as database_url
from chargeback.store.db import redact as redact
from chargeback.store.db import without_secrets as without_secrets
from chargeback.store.schema import Book, Delivery


class Imported(Protocol):
    """What an import of one file into a period gives back: its line for the audit log."""

    def outcome(self) -> str: ...


R = TypeVar("R", bound=Imported)


def now() -> dt.datetime:
    """The current UTC time, without microseconds, as stored."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def _engine(url: str | Engine | None) -> Engine:
    return url if isinstance(url, Engine) else db.connect(url)


def init(url: str | Engine | None = None) -> None:
    """Create the schema or upgrade it; safe to repeat."""
    engine = _engine(url)
    db.upgrade(engine)
    with db.transaction(engine) as conn:
        audit.append(conn, "init", {}, [], None, "done: schema is current")


def load(url: str | Engine | None, book: Path) -> LoadResult:
    """Load or update a book's reference data (creating the schema if needed)."""
    engine = _engine(url)
    db.upgrade(engine)
    with audit.command(engine, "load", {"book": str(book)}, audit.book_files(Path(book))) as log:
        with db.transaction(engine) as conn:
            result = load_book(conn, Path(book), now())
            log.done(
                conn,
                f"{result.units_added + result.units_updated} units, {len(result.book.services)} services, "
                f"{len(result.book.rates)} rates, {len(result.book.recurring)} recurring fees",
            )
            return result


def _file_into_period(
    url: str | Engine | None,
    command: str,
    path: Path,
    period: str,
    kinds: str,
    read: Callable[[Connection, Path, str, dt.datetime], R],
) -> R:
    """One file read into an open period: audited (with the result's `outcome`), refused
    whole, in one transaction."""
    engine = _engine(url)
    with audit.command(engine, command, {"file": str(path), "period": period}, [Path(path)], period) as log:
        check_period(period)
        if Path(path).exists() and not Path(path).is_file():
            raise Refused(f"{path}: not a regular file: import {kinds}")
        with db.transaction(engine) as conn:
            result = read(conn, Path(path), period, now())
            log.done(conn, result.outcome())
            return result


def import_file(url: str | Engine | None, path: Path, period: str, progress: bool = False) -> ImportResult:
    """Import a usage file into an open period; `progress` allows a bar on a terminal."""

    def read(conn: Connection, file: Path, into: str, at: dt.datetime) -> ImportResult:
        return import_usage(conn, file, into, at, progress)

    return _file_into_period(url, "import", path, period, "a CSV or XLSX file", read)


def sla_import(url: str | Engine | None, path: Path, period: str) -> MeasurementResult:
    """Import service-level measurements into an open period; refused whole on any problem."""
    return _file_into_period(url, "sla import", path, period, "a CSV or XLSX file", import_measurements)


def import_cloud_bill(url: str | Engine | None, path: Path, period: str) -> CloudResult:
    """Import a cloud bill (a FOCUS export: CSV, gzip CSV or Parquet) into an open period."""
    kinds = "a FOCUS export (.csv, .csv.gz or .parquet)"
    return _file_into_period(url, "import-cloud", path, period, kinds, import_cloud)


def sla_report(url: str | Engine | None, fiscal_year: int, out_dir: Path = Path("out")) -> tuple[_sla.SlaReport, Path]:
    """The service levels of a fiscal year, also written to `out_dir/sla-FYYYYY.xlsx`."""
    if not 1000 <= fiscal_year <= 9999:
        raise Refused(f"{fiscal_year} is not a fiscal year: write the year it ends in, YYYY")
    with db.reading(_engine(url)) as conn:
        result = _sla.sla_report(conn, fiscal_year)
    path = Path(out_dir) / f"sla-FY{fiscal_year}.xlsx"
    try:
        _sla.write_workbook(result, path)
    except OSError as exc:
        raise Refused(f"cannot write {path}: {exc.strerror or exc}") from exc
    return result, path


def adjust(
    url: str | Engine | None,
    period: str,
    service: str | None,
    consumer: str | None,
    amount: str,
    reason: str,
    reference: str | None = None,
    against: str | None = None,
    memo: str | None = None,
) -> AdjustResult:
    """A manual charge or credit; `against` (`SERVICE:REFERENCE`) links it to the posted
    charge it corrects, and then `service` and `consumer` may be left out. `memo` is what
    documents show (default "Adjustment"); `reason` is internal."""
    engine = _engine(url)
    arguments = {
        "period": period,
        "service": service,
        "consumer": consumer,
        "amount": amount,
        "reason": reason,
        "reference": reference,
        "against": against,
        "memo": memo,
    }
    with audit.command(engine, "adjust", arguments, period=period) as log:
        check_period(period)
        with db.transaction(engine) as conn:
            result = _adjust(conn, period, service, consumer, amount, reason, reference, now(), against, memo)
            log.done(conn, f"adjustment {result.id}: {result.amount} {result.currency}")
            return result


def close(
    url: str | Engine | None,
    period: str,
    out_dir: Path = Path("out"),
    documents: bool = True,
    progress: bool = False,
    seconds: dict[str, float] | None = None,
) -> CloseResult:
    """Close the period and write its documents: all of it, or nothing.

    The documents are written into a staging folder inside the transaction; the
    transaction commits, then the folder is moved into place. A failure before the
    commit undoes everything; a kill between the commit and the move leaves the period
    closed with no `out_dir/period` folder (`report` writes it). With `documents=False`
    the period is closed without writing them (`report` writes them later); the
    benchmark uses this to time the two phases apart. `progress` allows a progress bar
    on a terminal while a big period's documents are written; `seconds` (when given)
    adds the wall seconds of the close and of its documents under "close" and
    "documents"."""
    engine = _engine(url)
    out_dir = Path(out_dir)
    arguments = {"period": period, "out": str(out_dir), "documents": documents}
    with audit.command(engine, "close", arguments, period=period) as log:
        check_period(period)
        if not documents:
            with db.transaction(engine) as conn:
                result = _close_reviewed(conn, period, now(), progress)
                _totals_used(result)
                log.done(conn, f"{result.posted} entries posted, no documents written")
                return result
        with _writing_documents(out_dir, "the period stays open"), staged(out_dir, period) as (folder, publish):
            with db.transaction(engine) as conn:
                started = time.perf_counter()
                result = _close_reviewed(conn, period, now(), progress)
                posted = time.perf_counter()
                write_version(
                    conn, period, out_dir, folder, progress=progress, review=result.review, totals=_totals_used(result)
                )
                if seconds is not None:
                    seconds["close"] = seconds.get("close", 0.0) + posted - started
                    seconds["documents"] = seconds.get("documents", 0.0) + time.perf_counter() - posted
                log.done(conn, f"{result.posted} entries posted, documents in {out_dir / period}")
            try:
                publish()
            except OSError as exc:
                raise Refused(
                    f"period {period} is closed, but its documents could not be moved into "
                    f"{out_dir / period}: {exc.strerror or exc}; write them with "
                    f"`chargeback report {period} --out {out_dir}`"
                ) from exc
            remove_draft(out_dir, period)
        return result


def _close_reviewed(conn: Connection, period: str, when: dt.datetime, progress: bool = False) -> CloseResult:
    """The close (or a preview's), with the variance review and the budget warnings that
    `close` and `preview` print, computed in the same transaction."""
    result = close_period(conn, period, when, progress)
    result.review = variance.review(conn, period, result.totals)
    if result.service_levels is not None:
        result.review = dataclasses.replace(result.review, service_levels=tuple(result.service_levels.review_lines()))
    result.budget_warnings = _budgets.warnings(conn, period, result.totals)
    return result


def _totals_used(result: CloseResult) -> list[PeriodTotal]:
    """The close's period totals, taken off the result once used (half a million of them
    at a million lines: a `run` of many periods keeps its results)."""
    totals, result.totals = result.totals, []
    return totals


@contextmanager
def _writing_documents(out_dir: Path, consequence: str) -> Iterator[None]:
    """An OSError while writing documents (full disk, read-only or missing folder) as a
    refusal that says what happened to the command and what to do."""
    try:
        yield
    except (OSError, FileCreateError) as exc:
        cause = exc.args[0] if isinstance(exc, FileCreateError) and exc.args else exc  # XlsxWriter's, of an OSError
        reason = getattr(cause, "strerror", None) or cause
        raise Refused(
            f"cannot write the documents to {out_dir}: {reason}; {consequence}: "
            "free some space, make the folder writable or choose another --out folder"
        ) from exc


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
                raise Refused(
                    f"period {period} is closed: its documents are final; "
                    f"`chargeback report {period}` writes them again"
                )
            result = _close_reviewed(conn, period, issued)
            result.reconciliation.status = "open"  # once the transaction is rolled back
            try:
                write_documents(
                    conn, period, folder, draft=True, issued=issued, review=result.review, totals=_totals_used(result)
                )
            except OSError as exc:
                raise Refused(f"cannot write the drafts to {out_dir}: {exc.strerror or exc}") from exc
        publish()
    return PreviewResult(
        period,
        result.posted,
        result.reconciliation,
        result.review,  # type: ignore[arg-type]  # _close_reviewed always sets it
        result.budget_warnings,
        Path(out_dir) / f"{period}-draft",
    )


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


def report(url: str | Engine | None, period: str, out_dir: Path = Path("out"), progress: bool = False) -> Path:
    """Write a closed period's documents again: the same bytes for the same close; a
    version that differs from the one in the folder becomes its next revision, the one
    there kept under `revisions/` (see `documents.revisions`)."""
    engine = _engine(url)
    out_dir = Path(out_dir)
    with audit.command(engine, "report", {"period": period, "out": str(out_dir)}, period=period) as log:
        check_period(period)
        with _writing_documents(out_dir, "the documents already there are left as they were"):
            with db.transaction(engine) as conn:
                if period_status(conn, period) != "closed":
                    raise Refused(f"period {period} is not closed: documents are written for closed periods")
                with staged(out_dir, period) as (folder, publish):
                    files = write_version(conn, period, out_dir, folder, progress=progress)
                    publish()
                log.done(conn, f"{files} files written to {out_dir / period}")
    return out_dir / period


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


def deliver(
    url: str | Engine | None,
    period: str,
    out_dir: Path = Path("out"),
    smtp: str = "localhost:25",
    sender: str = "chargeback@localhost",
    dry_run: bool = False,
) -> DeliverResult:
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

    @contextmanager
    def claim(message: delivery.Sent) -> Iterator[bool]:
        """The message's record, written before it is sent and committed once the server
        took it. Another run claiming the same unit waits on the record's unique key
        (PostgreSQL's index; SQLite's write lock, which the send holds meanwhile) and then
        finds it there."""
        with db.transaction(engine) as conn:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(Delivery).values(
                            period=period,
                            unit=message.unit,
                            journal_hash=todo.journal_hash,
                            email=message.to,
                            sent_at=now(),
                            message_id=message.message_id,
                            attachments=delivery.attachments_text(message.files),
                        )
                    )
            except IntegrityError:
                recorded = conn.execute(
                    select(Delivery.id).where(
                        Delivery.period == period,
                        Delivery.unit == message.unit,
                        Delivery.journal_hash == todo.journal_hash,
                    )
                ).first()
                if recorded is None:  # not the other run's record: some other refusal
                    raise
                ours = False
            else:
                ours = True
            yield ours

    arguments = {"period": period, "out": str(out_dir), "smtp": smtp, "from": sender}
    with audit.command(engine, "deliver", arguments, period=period) as log:
        result.sent, result.failed, elsewhere = delivery.send(server, messages, claim)
        result.sent_before += elsewhere
        log.record_apart(f"done: {len(result.sent)} units sent, {len(result.failed)} failed")
    return result


def reopen(url: str | Engine | None, period: str, reason: str) -> None:
    engine = _engine(url)
    with audit.command(engine, "reopen", {"period": period, "reason": reason}, period=period) as log:
        check_period(period)
        with db.transaction(engine) as conn:
            reopen_period(conn, period, reason, now())
            log.done(conn, "reopened")


def void(url: str | Engine | None, kind: str, target: int, reason: str) -> VoidResult:
    """Void an import (its usage lines) or an adjustment of an open period, before a close
    posts it; the void is recorded with its reason and is in the audit log."""
    engine = _engine(url)
    with audit.command(engine, "void", {"kind": kind, "id": target, "reason": reason}) as log:
        with db.transaction(engine) as conn:
            result = _void(conn, kind, target, reason, now())
            log.period = result.period
            what = f"{result.lines} usage lines" if kind == "import" else f"{result.amount} {result.currency}"
            log.done(conn, f"void {result.id}: {kind} {target} ({result.label}), {what}")
            return result


def status(
    url: str | Engine | None, period: str | None = None, out_dir: Path | None = Path("out")
) -> list[_status.PeriodStatus]:
    """Every period's state (or one's): what waits, what is posted, the last close and its
    seal, the documents in `out_dir` and their deliveries."""
    if period is not None:
        check_period(period)
    with db.reading(_engine(url)) as conn:
        return _status.statuses(conn, period, out_dir)


def imports(url: str | Engine | None, period: str) -> _status.Imports:
    """Each import of the period: file, sha256, lines, amount, when, who, void."""
    check_period(period)
    with db.reading(_engine(url)) as conn:
        return _status.imports(conn, period)


def charges(
    url: str | Engine | None,
    unit: str,
    period: str | None = None,
    fiscal_year: int | None = None,
    xlsx: Path | None = None,
) -> UnitCharges:
    """One unit's posted charges in a period or a fiscal year; with `xlsx`, also written
    to that workbook."""
    if period is not None:
        check_period(period)
    with db.reading(_engine(url)) as conn:
        result = unit_charges(conn, unit, period, fiscal_year)
        if xlsx is not None:
            try:
                write_unit_charges(result, load_reference(conn), Path(xlsx), now())
            except (OSError, FileCreateError) as exc:
                raise Refused(f"--xlsx: {xlsx} cannot be written: {exc}") from exc
        return result


def reconcile(url: str | Engine | None, period: str) -> Reconciliation:
    check_period(period)
    with db.reading(_engine(url)) as conn:
        result = _reconcile(conn, period)
        if result.status == "open":
            result.pending = _status.pending(conn, period)
        return result


def export(
    url: str | Engine | None,
    period: str | None,
    fmt: str,
    out: Path | None = None,
    *,
    first: str | None = None,
    through: str | None = None,
    fiscal_year: int | None = None,
) -> str | None:
    """The journal of `period`, or of every closed period from `first` through `through`
    (or of the fiscal year `fiscal_year`) in one file, as text (when `out` is None) or
    written to `out`; refused while a period in it is open (its journal is not final, and
    may lack what is pending)."""
    with db.reading(_engine(url)) as conn:
        periods = export_periods(conn, period, first, through, fiscal_year)
        for each in periods:
            if period_status(conn, each) != "closed":
                rec = _reconcile(conn, each)
                rec.pending = _status.pending(conn, each)
                raise Refused(
                    f"period {each} is open: {rec.pending_text()}; its journal is exported once it is "
                    f"closed (`chargeback close {each}`)"
                )
        if out is None:
            buffer = io.StringIO()
            _export(conn, periods, fmt, buffer)
            return buffer.getvalue()
        with open(out, "w", encoding="utf-8", newline="") as handle:
            _export(conn, periods, fmt, handle)
        return None


def export_periods(
    conn: Connection, period: str | None, first: str | None, through: str | None, fiscal_year: int | None
) -> list[str]:
    """The periods an export covers: `period` alone, or every period with activity from
    `first` through `through`, or in `fiscal_year` (book.toml's `fiscal_year_start`)."""
    if period is not None:
        return [check_period(period)]
    if fiscal_year is not None:
        if not 1000 <= fiscal_year <= 9999:
            raise Refused(f"{fiscal_year} is not a fiscal year: write the year it ends in, YYYY")
        start = conn.execute(select(Book.fiscal_year_start)).scalar()
        if start is None:
            raise Refused("no book is loaded: run `chargeback load BOOK` first")
        months = _budgets.fiscal_periods(fiscal_year, start)
        first, through = months[0], months[-1]
        span = f"fiscal year {fiscal_year} ({first} to {through})"
    elif first is not None and through is not None:
        check_period(first)
        check_period(through)
        if first > through:
            raise Refused(f"--from {first} is after --through {through}: give the earlier period first")
        span = f"{first} to {through}"
    else:
        raise Refused("give a period, --from and --through, or --fiscal-year")
    periods = [p for p, _ in periods_with_activity(conn) if first <= p <= through]
    if not periods:
        raise Refused(f"no period of {span} has any activity: nothing to export")
    return periods


def verify(
    url: str | Engine | None, seals_file: Path | Sequence[Path] | None = None, public_key: Path | None = None
) -> VerifyResult:
    """Check the whole journal; with `seals_file` (a list of seals as `seals --json`
    prints it, or manifests; one file or several) also that the journal still holds each
    seal, and with `public_key` (a PEM file) that each seal is signed by it."""
    files = [Path(seals_file)] if isinstance(seals_file, (str, Path)) else seals_file
    listed = _seals.read_seals(files) if files is not None else None
    key = _seals.load_public_key(Path(public_key)) if public_key is not None else None
    with db.reading(_engine(url)) as conn:
        return _verify(conn, listed, key)


def seals(url: str | Engine | None) -> list[_seals.Seal]:
    """Every close's seal, in the order of the closes."""
    with db.transaction(_engine(url)) as conn:
        return _seals.seals(conn)


def audit_log(
    url: str | Engine | None, period: str | None = None
) -> tuple[list[audit.Record], tuple[int, list[str], str]]:
    """The audit records (of one period, or all) and the chain's state: (records checked,
    problems, hash of the last record)."""
    if period is not None:
        check_period(period)
    with db.reading(_engine(url)) as conn:
        count, problems = audit.verify_chain(conn)
        return audit.records(conn, period), (count, problems, audit.head(conn)[1])


@dataclass
class RunResult:
    """What `run` did: the book loaded, each import, each close."""

    load: LoadResult
    imports: list[ImportResult] = field(default_factory=list)
    cloud: list[CloudResult] = field(default_factory=list)
    closes: list[CloseResult] = field(default_factory=list)
    measurements: list[MeasurementResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    out_dir: Path = Path("out")
    #: Wall seconds per phase: load, import, close (pricing, posting, checks), documents.
    seconds: dict[str, float] = field(default_factory=dict)


def usage_files(book: Path, through: str | None = None, folder_name: str = "usage") -> list[tuple[str, Path]]:
    """(period, file) of every usage file of the book (or, with `folder_name`, of
    another folder of period files: `measurements`), in name order."""
    return _period_files(Path(book) / folder_name, (".csv", ".xlsx"), f"a {folder_name} file", through)


def cloud_files(book: Path, through: str | None = None) -> list[tuple[str, Path]]:
    """(period, file) of every cloud bill of the book (`cloud/YYYY-MM*.csv`, `.csv.gz`
    or `.parquet`), in name order."""
    return _period_files(Path(book) / "cloud", (".csv", ".csv.gz", ".parquet"), "a cloud bill", through)


def _period_files(folder: Path, endings: tuple[str, ...], what: str, through: str | None) -> list[tuple[str, Path]]:
    """(period, file) of the files of `folder` whose names end in one of `endings` (in any
    case) and start with their period, through `through`, in name order; hidden files are
    passed over, a name without its period refused."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.name.lower().endswith(endings):
            continue
        period = path.name[:7]
        try:
            check_period(period)
        except Refused:
            raise Refused(f"{path.name}: {what}'s name must start with its period, YYYY-MM") from None
        if through is None or period <= through:
            found.append((period, path))
    return found


def run(
    url: str | Engine | None,
    book: Path,
    out_dir: Path = Path("out"),
    through: str | None = None,
    progress: bool = False,
) -> RunResult:
    """The monthly job: load the book, import its usage files, its cloud bills and its
    service-level measurements (`BOOK/measurements/YYYY-MM*.csv|xlsx`), close the periods in order
    (with the months that have allocation costs, up to the last month with usage).

        Safe to run again: imported lines are skipped as duplicates and closed periods are
        left as they are."""
    if through is not None:
        check_period(through)
    engine = _engine(url)
    started = time.perf_counter()
    result = RunResult(load(engine, book), out_dir=Path(out_dir))
    result.seconds["load"] = time.perf_counter() - started
    files = usage_files(book, through)
    bills = cloud_files(book, through)
    periods = sorted({p for p, _ in files} | {p for p, _ in bills})
    with db.transaction(engine) as conn:
        status = dict(periods_with_activity(conn))
        if periods:
            # A month with allocation costs but no usage file is closed too, up to the
            # last month with usage (costs budgeted for later months wait for them).
            periods = sorted(set(periods) | set(cost_periods(conn, periods[-1])))
    for period, path in files:
        if status.get(period) == "closed":
            continue
        started = time.perf_counter()
        result.imports.append(import_file(engine, path, period, progress))
        result.seconds["import"] = result.seconds.get("import", 0.0) + time.perf_counter() - started
    for period, path in usage_files(book, through, "measurements"):
        if status.get(period) != "closed" and period in periods:
            result.measurements.append(sla_import(engine, path, period))
    for period, path in bills:
        if status.get(period) == "closed":
            continue
        started = time.perf_counter()
        result.cloud.append(import_cloud_bill(engine, path, period))
        result.seconds["import"] = result.seconds.get("import", 0.0) + time.perf_counter() - started
    for period in periods:
        if status.get(period) == "closed":
            result.skipped.append(period)
            continue
        result.closes.append(close(engine, period, out_dir, progress=progress, seconds=result.seconds))
    return result


def demo_book() -> Path:
    """The bundled demo book (installed in the package, or at the top of a checkout)."""
    return bundled("ledgers", "demo")


def demo(out_dir: Path = Path("out")) -> tuple[RunResult, str]:
    """`run` on the bundled demo book with a fresh SQLite database in `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    database = out_dir / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{database.resolve()}"
    return run(url, demo_book(), out_dir), url


def recovery(url: str | Engine | None, fiscal_year: int, out: Path | None = Path("recovery.xlsx")) -> Recovery:
    """The cost-recovery report of a fiscal year; writes `recovery.xlsx` to `out` unless
    `out` is None."""
    with db.reading(_engine(url)) as conn:
        result = _recovery(conn, fiscal_year)
    if out is not None:
        try:
            write_recovery(result, Path(out))
        except OSError as exc:
            raise Refused(f"cannot write {out}: {exc.strerror or exc}") from exc
    return result
