"""Periods: opening on first use, closing (the month-end post), and reopening.

A period row is locked (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite's
`BEGIN IMMEDIATE` already serializes writers) by every command that changes the
period, so two closes of one period, or an import racing a close, cannot interleave:
the second waits, then sees the first one's result and is refused cleanly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Connection, exists, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from chargeback.book.snapshot import load_reference
from chargeback.close.reconciliation import (
    PeriodTotal,
    Reconciliation,
    Tally,
    period_totals,
    reconcile,
    store_totals,
)
from chargeback.core import settings
from chargeback.core.errors import Refused
from chargeback.core.fields import check_period
from chargeback.core.progress import on_terminal, phase
from chargeback.ledger import journal, seals
from chargeback.ledger import service_levels as sla
from chargeback.ledger.audit import os_user
from chargeback.ledger.charges import (
    allocation_charges,
    consumer_ranges,
    period_charges,
    price_usage,
    store_lines,
    unposted_usage_count,
)
from chargeback.store.db import collector_paused
from chargeback.store.schema import Adjustment, Cost, Entry, Period, Usage

if TYPE_CHECKING:
    from chargeback.close.budgets import BudgetStatus
    from chargeback.close.variance import Review


def lock_period(conn: Connection, period: str, create: bool) -> str | None:
    """Lock the period's row (creating it open when asked) and return its status."""
    check_period(period)
    if create:
        table = Period.__table__
        maker = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(maker(table).values(period=period, status="open").on_conflict_do_nothing())
    return conn.execute(select(Period.status).where(Period.period == period).with_for_update()).scalar()


def lock_open_period(conn: Connection, period: str, create: bool = True) -> None:
    """Lock the period for a change; refuses when it is closed."""
    if lock_period(conn, period, create) == "closed":
        raise Refused(
            f"period {period} is closed: nothing can be added to it; "
            f"reopen it with `chargeback reopen {period} --reason ...` if you must"
        )


def _earlier_open_with_activity(conn: Connection, period: str) -> list[str]:
    activity = or_(
        exists().where(Usage.period == Period.period, Usage.void_id.is_(None)),
        exists().where(Adjustment.period == Period.period, Adjustment.void_id.is_(None)),
        exists().where(Entry.period == Period.period),
    )
    return list(
        conn.execute(
            select(Period.period)
            .where(Period.period < period, Period.status == "open", activity)
            .order_by(Period.period)
        ).scalars()
    )


def _has_entries(conn: Connection, period: str) -> bool:
    """Whether anything of `period` is posted already (a re-close after a reopen)."""
    return conn.execute(select(Entry.id).where(Entry.period == period).limit(1)).first() is not None


@dataclass
class CloseResult:
    """What a close posted, and the reconciliation it checked (and, from `api.close`,
    the variance review and the units over or on course to exceed their budget)."""

    period: str
    posted: int
    reconciliation: Reconciliation
    closed_at: dt.datetime
    journal_hash: str
    review: Review | None = None
    budget_warnings: list[BudgetStatus] = field(default_factory=list)
    #: The period's totals after the close (`period_totals`), read once for the variance
    #: review, the budgets and the documents; `api` takes them off once used.
    totals: list[PeriodTotal] = field(default_factory=list, repr=False)
    #: The journal head after the close, as the documents carry it.
    seal: seals.Seal | None = None
    #: The period's service levels: misses, credits and missing measurements.
    service_levels: sla.PeriodLevels | None = None


@collector_paused()
def close_period(conn: Connection, period: str, now: dt.datetime, progress: bool = False) -> CloseResult:
    """Price and post everything pending in `period`, then its allocations (which may
    depend on what was just posted), check net zero, and lock it. `progress` allows a
    bar of the usage lines posted on a terminal.

    Runs inside the caller's transaction: a refusal or crash anywhere undoes all of it.
    The close's event records its seal, signed when `CHARGEBACK_SEAL_KEY` names a key
    (read first, so an unreadable key refuses the close before any work)."""
    signer = seals.signer_from_environment()
    status = lock_period(conn, period, create=True)
    if status == "closed":
        raise Refused(f"period {period} is already closed")
    earlier = _earlier_open_with_activity(conn, period)
    if earlier:
        raise Refused(f"period {earlier[0]} is still open and has activity: close it before {period}")
    ref = load_reference(conn)
    now = now.replace(microsecond=0)
    first_close = not _has_entries(conn, period)
    tally = Tally()
    lines = unposted_usage_count(conn, period) if on_terminal(progress) else 0
    usage_count = 0
    with phase(f"pricing and posting {period}", lines, progress) as bar:
        for consumers in consumer_ranges(conn, period, settings.current().close_lines):
            priced = price_usage(conn, ref, period, consumers)
            usage = journal.post(conn, tally.counting(priced.drafts), now)
            bar.add(priced.lines.height)
            if usage.first_id is not None:
                store_lines(conn, priced, usage.first_id)
            usage_count += usage.count
            del priced
        charged = journal.post(conn, tally.counting(period_charges(conn, ref, period)), now)
    levels = sla.period_levels(conn, period, ref.digits)
    sla.refuse_missing(conn, levels)
    credited = journal.post(conn, tally.counting(list(sla.credit_drafts(ref, conn, levels))), now)
    allocated = journal.post(conn, tally.counting(allocation_charges(conn, ref, period)), now)
    posted_count = usage_count + charged.count + credited.count + allocated.count
    totals = tally.totals() if first_close else period_totals(conn, period)
    result = reconcile(conn, period, totals)
    if not result.balanced:
        raise Refused(
            f"period {period} does not net to zero: internal revenue {result.money(result.internal_revenue)}, "
            f"internal spend {result.money(result.internal_spend)}; nothing was posted"
        )
    store_totals(conn, period, totals)
    seal = seals.record_close(conn, period, now, f"{posted_count} entries posted", os_user(), signer)
    conn.execute(
        update(Period)
        .where(Period.period == period)
        .values(
            status="closed",
            closed_at=now,
            closed_hash=seal.hash,
            entry_count=result.entries,
            internal_revenue_minor=result.internal_revenue,
            internal_spend_minor=result.internal_spend,
            external_revenue_minor=result.external_revenue,
        )
    )
    result.status = "closed"
    return CloseResult(period, posted_count, result, now, seal.hash, totals=totals, seal=seal, service_levels=levels)


def reopen_period(conn: Connection, period: str, reason: str, now: dt.datetime) -> None:
    """Reopen a closed period; its posted entries stay, and the reason is recorded."""
    if not reason or not reason.strip():
        raise Refused("reopening needs a reason: --reason TEXT")
    status = lock_period(conn, period, create=False)
    if status is None:
        raise Refused(f"period {period} has no activity: there is nothing to reopen")
    if status != "closed":
        raise Refused(f"period {period} is open already")
    conn.execute(update(Period).where(Period.period == period).values(status="open"))
    seals.record_reopen(conn, period, now, reason.strip(), os_user())


def period_status(conn: Connection, period: str) -> str | None:
    return conn.execute(select(Period.status).where(Period.period == period)).scalar()


def periods_with_activity(conn: Connection) -> list[tuple[str, str]]:
    """(period, status) of every period the database knows, in order."""
    return [(p, s) for p, s in conn.execute(select(Period.period, Period.status).order_by(Period.period))]


def cost_periods(conn: Connection, through: str) -> list[str]:
    """Periods up to `through` that have allocation costs to spread."""
    return list(
        conn.execute(select(Cost.period).where(Cost.period <= through).distinct().order_by(Cost.period)).scalars()
    )
