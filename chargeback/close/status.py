"""Where things stand: each period's state, what waits in it, its last close and seal,
its documents; and the imports of a period.

Every figure is a grouping query over all periods at once (usage lines, adjustments,
voids, entries, deliveries), never a query per line or per period; the one exception is
the amount of the usage waiting in an open period, which is priced as the close would
price it (`charges.price_usage`, over whole columns), so the figure is the one the close
will post.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
from sqlalchemy import Connection, func, select

from chargeback.book.snapshot import load_reference
from chargeback.close.reconciliation import Pending
from chargeback.core.errors import Refused
from chargeback.core.money import InCurrency
from chargeback.ledger.charges import adjustment_posted, price_usage, unposted_usage_count, usage_waiting
from chargeback.store.db import frame
from chargeback.store.schema import (
    Adjustment,
    Book,
    ChargeLine,
    Delivery,
    Entry,
    Import,
    Period,
    PeriodEvent,
    Usage,
    Void,
)


@dataclass
class Documents:
    """A period's documents: the folder's manifest (`written`, its file count and the
    journal hash it was written from: `current` when that is the last close's) and the
    units they were delivered to (`delivered`, from the `deliveries` table)."""

    folder: str
    written: bool = False
    draft: bool = False
    files: int = 0
    current: bool | None = None
    delivered: list[str] = field(default_factory=list)
    delivered_at: dt.datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "written": self.written,
            "draft": self.draft,
            "files": self.files,
            "current": self.current,
            "delivered": self.delivered,
            "delivered_at": _iso(self.delivered_at),
        }


@dataclass
class PeriodStatus(InCurrency):
    """One period: `state` is open (never closed), closed, or reopened (open after a
    close); what waits to be posted; what is posted; the last close and its seal."""

    period: str
    state: str
    digits: int
    currency: str
    imports: int = 0
    pending: Pending = field(default_factory=Pending)
    #: The usage waiting, priced as the close will price it; None when a line has no
    #: rate in force (`pending_problem` says which)
    pending_amount_minor: int | None = 0
    pending_problem: str | None = None
    voids: int = 0
    voided_lines: int = 0
    entries: int = 0
    posted_minor: int = 0
    closes: int = 0
    closed_at: dt.datetime | None = None
    closed_by: str | None = None
    seal_entry: int | None = None
    seal_hash: str | None = None
    signed: bool = False
    documents: Documents | None = None

    unknown: ClassVar[str] = "unknown"  # an amount no rate could price

    def as_json(self) -> dict[str, Any]:
        m = self.money
        seal = (
            {"entry": self.seal_entry, "journal_hash": self.seal_hash, "signed": self.signed}
            if self.seal_hash
            else None
        )
        return {
            "period": self.period,
            "state": self.state,
            "currency": self.currency,
            "imports": self.imports,
            "pending": {
                "usage_lines": self.pending.usage_lines,
                "usage_amount": None if self.pending_amount_minor is None else m(self.pending_amount_minor),
                "usage_problem": self.pending_problem,
                "adjustments": self.pending.adjustments,
                "adjustments_amount": m(self.pending.adjustments_minor),
            },
            "voids": self.voids,
            "voided_lines": self.voided_lines,
            "posted": {"entries": self.entries, "amount": m(self.posted_minor)},
            "closes": self.closes,
            "last_close": None
            if self.closed_at is None
            else {"at": _iso(self.closed_at), "user": self.closed_by, "seal": seal},
            "documents": self.documents.as_json() if self.documents else None,
        }

    def lines(self) -> list[str]:
        """The text `chargeback status` prints for the period."""
        m, cur = self.money, self.currency
        head = f"{self.period}  {self.state}"
        if self.closed_at is not None:
            head += f"; last closed {self.closed_at:%Y-%m-%d %H:%M} UTC by {self.closed_by or 'unknown'}"
            if self.seal_hash:
                head += f", seal entry {self.seal_entry} {self.seal_hash[:16]}..." + (" signed" if self.signed else "")
        out = [head]
        if self.state != "closed":
            amount = m(self.pending_amount_minor)
            waiting = f"  waiting: {self.pending.usage_lines} usage lines ({amount} {cur})"
            waiting += f", {self.pending.adjustments} adjustments ({m(self.pending.adjustments_minor)} {cur})"
            out.append(waiting + (f"; {self.pending_problem}" if self.pending_problem else ""))
        out.append(
            f"  {self.imports} imports, {self.voids} voids ({self.voided_lines} usage lines voided); "
            f"posted: {self.entries} entries, {m(self.posted_minor)} {cur}"
        )
        if self.documents is not None:
            d = self.documents
            if d.written:
                kind = "draft documents" if d.draft else "documents"
                note = "" if d.current is not False else " (from an earlier close: `chargeback report` rewrites them)"
                written = f"{kind} in {d.folder}: {d.files} files{note}"
            else:
                written = f"no documents in {d.folder}"
            sent = (
                f"; delivered to {len(d.delivered)} units ({', '.join(d.delivered)}), last {d.delivered_at:%Y-%m-%d}"
                if d.delivered and d.delivered_at
                else "; not delivered"
            )
            out.append(f"  {written}{sent}")
        return out


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def statuses(conn: Connection, period: str | None = None, out_dir: Path | None = None) -> list[PeriodStatus]:
    """Every period the database knows (or only `period`), oldest first; with `out_dir`,
    what each one's documents folder holds."""
    book = conn.execute(select(Book.currency, Book.minor_digits)).first()
    currency, digits = (book.currency, book.minor_digits) if book else ("", 2)
    where = [Period.period == period] if period else []
    rows = conn.execute(select(Period.period, Period.status).where(*where).order_by(Period.period)).all()
    if period and not rows:
        raise Refused(f"period {period}: nothing was imported, adjusted or closed in it")
    found = {p: PeriodStatus(p, s, digits, currency) for p, s in rows}
    scope = (lambda column: [column == period]) if period else (lambda column: [])

    def grouped(query: Any) -> list[Any]:
        return list(conn.execute(query).all())

    for p, count in grouped(
        select(Usage.period, func.count()).where(*scope(Usage.period), *usage_waiting()).group_by(Usage.period)
    ):
        found[p].pending.usage_lines = int(count)
    for p, count, amount in grouped(
        select(Adjustment.period, func.count(), func.sum(Adjustment.amount_minor))
        .where(*scope(Adjustment.period), Adjustment.void_id.is_(None), ~adjustment_posted())
        .group_by(Adjustment.period)
    ):
        found[p].pending.adjustments, found[p].pending.adjustments_minor = int(count), int(amount)
    for p, count in grouped(select(Import.period, func.count()).where(*scope(Import.period)).group_by(Import.period)):
        found[p].imports = int(count)
    for p, count, lines in grouped(
        select(Void.period, func.count(), func.sum(Void.lines)).where(*scope(Void.period)).group_by(Void.period)
    ):
        found[p].voids, found[p].voided_lines = int(count), int(lines)
    for p, count, amount in grouped(
        select(Entry.period, func.count(), func.sum(Entry.amount_minor))
        .where(*scope(Entry.period))
        .group_by(Entry.period)
    ):
        found[p].entries, found[p].posted_minor = int(count), int(amount)
    for event in grouped(
        select(PeriodEvent.period, PeriodEvent.action, PeriodEvent.at, PeriodEvent.user)
        .add_columns(PeriodEvent.journal_entry, PeriodEvent.journal_hash, PeriodEvent.signature)
        .where(*scope(PeriodEvent.period), PeriodEvent.action == "close")
        .order_by(PeriodEvent.id)
    ):
        state = found[event.period]
        state.closes += 1
        state.closed_at, state.closed_by = event.at, event.user
        state.seal_entry, state.seal_hash, state.signed = event.journal_entry, event.journal_hash, bool(event.signature)
    for state in found.values():
        if state.state == "open" and state.closes:
            state.state = "reopened"
    _price_pending(conn, [s for s in found.values() if s.state != "closed" and s.pending.usage_lines])
    if out_dir is not None:
        _documents(conn, found, Path(out_dir), scope)
    return list(found.values())


def pending(conn: Connection, period: str) -> Pending:
    """What `period` holds that no close has posted."""
    adjustments, amount = conn.execute(
        select(func.count(), func.coalesce(func.sum(Adjustment.amount_minor), 0)).where(
            Adjustment.period == period, Adjustment.void_id.is_(None), ~adjustment_posted()
        )
    ).one()
    return Pending(unposted_usage_count(conn, period), int(adjustments), int(amount))


def _price_pending(conn: Connection, waiting: list[PeriodStatus]) -> None:
    """The waiting usage of each open period, priced over whole columns as its close will."""
    if not waiting:
        return
    ref = load_reference(conn)
    for state in waiting:
        try:
            priced = price_usage(conn, ref, state.period)
        except Refused as exc:
            state.pending_amount_minor, state.pending_problem = None, str(exc)
            continue
        state.pending_amount_minor = int(priced.lines["amount_minor"].sum())


def _documents(conn: Connection, found: dict[str, PeriodStatus], out_dir: Path, scope: Any) -> None:
    """Each period's folder as its manifest describes it, and its deliveries."""
    for state in found.values():
        folder = out_dir / state.period
        docs = Documents(str(folder))
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = None
        if isinstance(manifest, dict):
            docs.written = True
            docs.draft = bool(manifest.get("draft"))
            docs.files = len(manifest.get("files") or [])
            if state.seal_hash and state.state == "closed" and not docs.draft:
                docs.current = manifest.get("journal_hash") == state.seal_hash
        state.documents = docs
    for p, unit, sent in conn.execute(
        select(Delivery.period, Delivery.unit, Delivery.sent_at)
        .where(*scope(Delivery.period))
        .order_by(Delivery.period, Delivery.unit, Delivery.sent_at)
    ):
        kept = found[p].documents
        assert kept is not None
        docs = kept
        if unit not in docs.delivered:
            docs.delivered.append(unit)
        docs.delivered_at = max(docs.delivered_at or sent, sent)


@dataclass
class ImportLine:
    """One import of a period: the file, what it held, its amount (posted or, while it
    waits, as the close will price it) and who imported it when."""

    id: int
    file: str
    sha256: str
    at: dt.datetime
    user: str | None
    lines_read: int
    imported: int
    duplicates: int
    posted_lines: int
    amount_minor: int | None
    void: int | None
    void_reason: str | None

    @property
    def state(self) -> str:
        if self.void is not None:
            return "voided"
        if self.imported and self.posted_lines == self.imported:
            return "posted"
        return "pending" if self.imported else "nothing imported"


@dataclass
class Imports(InCurrency):
    period: str
    digits: int
    currency: str
    imports: list[ImportLine]
    problem: str | None = None

    unknown: ClassVar[str] = "unknown"  # an amount no rate could price

    def lines(self) -> list[str]:
        """What `imports` prints: two lines an import (what it did; its sha256 and void)."""
        lines = [] if self.imports else [f"{self.period}: no imports"]
        for i in self.imports:
            amount = "-" if i.amount_minor is None else f"{self.money(i.amount_minor)} {self.currency}"
            lines.append(
                f"{i.id:>5}  {i.at:%Y-%m-%d %H:%M}  {i.user or 'unknown':<12} {Path(i.file).name}  "
                f"{i.imported}/{i.lines_read} lines ({i.duplicates} duplicates)  {amount}  {i.state}"
            )
            lines.append(f"       sha256 {i.sha256}" + (f"; voided: {i.void_reason}" if i.void_reason else ""))
        if self.problem:
            lines.append(f"  amounts unknown: {self.problem}")
        return lines

    def as_json(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "currency": self.currency,
            "imports": [
                {
                    "id": i.id,
                    "file": i.file,
                    "sha256": i.sha256,
                    "at": i.at.isoformat(),
                    "user": i.user,
                    "lines_read": i.lines_read,
                    "imported": i.imported,
                    "duplicates": i.duplicates,
                    "state": i.state,
                    "amount": None if i.amount_minor is None else self.money(i.amount_minor),
                    "void": None if i.void is None else {"id": i.void, "reason": i.void_reason},
                }
                for i in self.imports
            ],
            "problem": self.problem,
        }


def imports(conn: Connection, period: str) -> Imports:
    """Each import of `period`, oldest first: a grouping of its lines' posted amounts
    (`charge_lines`) and, for lines still waiting, their price as the close will post it."""
    book = conn.execute(select(Book.currency, Book.minor_digits)).first()
    currency, digits = (book.currency, book.minor_digits) if book else ("", 2)
    posted = {
        i: (int(n), int(a))
        for i, n, a in conn.execute(
            select(Usage.import_id, func.count(), func.sum(ChargeLine.amount_minor))
            .join(ChargeLine, ChargeLine.usage_id == Usage.id)
            .where(Usage.period == period)
            .group_by(Usage.import_id)
        )
    }
    waiting: dict[int, int] = {}
    problem = None
    if conn.execute(select(Period.status).where(Period.period == period)).scalar() == "open":
        try:
            priced = price_usage(conn, load_reference(conn), period).lines
        except Refused as exc:
            problem = str(exc)
        else:
            owners = frame(
                conn,
                select(Usage.id, Usage.import_id).where(Usage.period == period, Usage.void_id.is_(None)),
                {"usage_id": pl.Int64, "import_id": pl.Int64},
            )
            sums = priced.join(owners, on="usage_id").group_by("import_id").agg(pl.col("amount_minor").sum())
            waiting = {int(i): int(a) for i, a in sums.iter_rows()}
    result = Imports(period, digits, currency, [], problem)
    for row in conn.execute(
        select(Import.__table__, Void.id.label("void"), Void.reason.label("void_reason"))
        .outerjoin(Void, (Void.kind == "import") & (Void.target == Import.id))
        .where(Import.period == period)
        .order_by(Import.id)
    ):
        lines, amount = posted.get(row.id, (0, 0))
        unknown = problem is not None and row.void is None and lines < row.imported
        result.imports.append(
            ImportLine(
                row.id,
                row.file_name,
                row.sha256,
                row.at,
                row.user,
                row.lines_read,
                row.imported,
                row.duplicates,
                lines,
                None if unknown or row.void is not None else amount + waiting.get(row.id, 0),
                row.void,
                row.void_reason,
            )
        )
    return result
