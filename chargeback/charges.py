"""The charges of a period, priced and ready to post.

At close, every usage line not yet posted is priced at the rate in force on its own
date, each recurring fee of the period not yet posted is priced at the rate in force on
the period's first day, and each pending adjustment is taken as entered. The result is
a list of journal drafts in a fixed order, so a close is reproducible.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from sqlalchemy import Connection, select

from chargeback.errors import Refused
from chargeback.fields import period_bounds
from chargeback.journal import Draft, accounts
from chargeback.money import from_micro, quantize, to_micro
from chargeback.reference import Reference
from chargeback.schema import Adjustment, Entry, Usage


def _draft(ref: Reference, period: str, *, date: dt.date, service_date: dt.date, kind: str,
           usage_id: int | None, source: str | None, service: str, consumer: str,
           quantity_micro: int, rate_micro: int | None, amount_minor: int,
           reference: str | None, memo: str | None, rate_source: str | None) -> Draft:
    provider = ref.services[service].provider
    unit = ref.units[consumer]
    debit, credit = accounts(unit.kind, consumer, provider)
    return Draft(period, date, service_date, kind, usage_id, source, service, provider, consumer,
                 unit.kind, quantity_micro, rate_micro, amount_minor, debit, credit,
                 unit.expense_account, ref.units[provider].revenue_account, reference, memo,
                 rate_source)


def usage_charges(conn: Connection, ref: Reference, period: str,
                  chunk: int = 50_000) -> Iterator[Draft]:
    """Unposted usage of the period, priced, in import order.

    Read in chunks by id, each chunk fetched whole before its drafts are posted, so the
    query never reads the entries table while it is being appended to."""
    first_day, _ = period_bounds(period)
    digits = ref.digits
    scale = 10 ** digits
    after = 0
    while True:
        rows = conn.execute(
            select(Usage.id, Usage.date, Usage.service, Usage.consumer, Usage.quantity_micro,
                   Usage.reference, Usage.description)
            .outerjoin(Entry, Entry.usage_id == Usage.id)
            .where(Usage.period == period, Usage.id > after, Entry.id.is_(None))
            .order_by(Usage.id).limit(chunk)
        ).all()
        if not rows:
            return
        after = rows[-1][0]
        for usage_id, day, service, consumer, quantity_micro, reference, description in rows:
            unit = ref.units.get(consumer)
            rate = ref.rates.find(service, unit.kind, day) if unit and service in ref.services else None
            if rate is None:
                raise Refused(
                    f"usage {service} {reference} ({day.isoformat()}, {consumer}): no rate in "
                    "force any more; fix rates.csv and load the book again"
                )
            amount = int(quantize(from_micro(quantity_micro) * rate.rate, digits) * scale)
            yield _draft(ref, period, date=max(day, first_day), service_date=day, kind="usage",
                         usage_id=usage_id, source=None, service=service, consumer=consumer,
                         quantity_micro=quantity_micro, rate_micro=to_micro(rate.rate),
                         amount_minor=amount, reference=reference, memo=description,
                         rate_source=rate.provenance)


def recurring_charges(conn: Connection, ref: Reference, period: str) -> Iterator[Draft]:
    """The period's recurring fees not yet posted, at the rate of the period's first day."""
    first_day, _ = period_bounds(period)
    due = [fee for fee in ref.recurring if fee.applies_to(period)]
    if not due:
        return
    sources = {f"recurring:{fee.key}:{period}": fee for fee in due}
    done = set(conn.execute(select(Entry.source).where(Entry.source.in_(list(sources)))).scalars())
    for source, fee in sources.items():
        if source in done:
            continue
        unit = ref.units[fee.consumer]
        rate = ref.rates.find(fee.service, unit.kind, first_day)
        if rate is None:
            raise Refused(f"recurring fee {fee.service} for {fee.consumer}: no {unit.kind} rate "
                          f"in force on {first_day.isoformat()}; add one to rates.csv")
        amount = int(quantize(fee.quantity * rate.rate, ref.digits) * 10 ** ref.digits)
        yield _draft(ref, period, date=first_day, service_date=first_day, kind="recurring",
                     usage_id=None, source=source, service=fee.service, consumer=fee.consumer,
                     quantity_micro=to_micro(fee.quantity), rate_micro=to_micro(rate.rate),
                     amount_minor=amount, reference=f"REC-{period}",
                     memo=fee.description or "Monthly fee", rate_source=rate.provenance)


def adjustment_charges(conn: Connection, ref: Reference, period: str) -> Iterator[Draft]:
    """Adjustments of the period not yet posted, as entered."""
    _, last_day = period_bounds(period)
    posted = select(Entry.source).where(Entry.period == period, Entry.kind == "adjustment")
    done = set(conn.execute(posted).scalars())
    for adj in conn.execute(select(Adjustment.__table__).where(Adjustment.period == period)
                            .order_by(Adjustment.id)):
        source = f"adjustment:{adj.id}"
        if source in done:
            continue
        yield _draft(ref, period, date=last_day, service_date=last_day, kind="adjustment",
                     usage_id=None, source=source, service=adj.service, consumer=adj.consumer,
                     quantity_micro=1_000_000, rate_micro=None,
                     amount_minor=adj.amount_minor, reference=adj.reference or f"ADJ-{adj.id}",
                     memo=adj.reason, rate_source="manual adjustment")


def period_charges(conn: Connection, ref: Reference, period: str) -> Iterator[Draft]:
    """Everything a close posts for `period`, in posting order."""
    yield from usage_charges(conn, ref, period)
    yield from recurring_charges(conn, ref, period)
    yield from adjustment_charges(conn, ref, period)
