"""The charges of a period, priced and ready to post.

At close, every usage line not yet posted is priced at the rate in force on its own
date, each recurring fee of the period not yet posted is priced at the rate in force on
the period's first day, and each pending adjustment is taken as entered. The result is
a list of journal drafts in a fixed order, so a close is reproducible.

Usage of services with graduated tiers is priced per (service, consumer) in order of
date then reference, continuing from the quantity already posted in the period (a
re-close after a reopen carries on where the last close stopped). Other usage is priced
line by line, in chunks, without a query per line.

Allocations are computed after everything else is posted (a `usage:SERVICE` driver reads
the period's posted quantities) and posted once per (pool, period, target), with the
stable source `allocation:POOL:PERIOD:UNIT`. A re-close after a reopen posts only what
changed: a new target's share, or the difference when a cost or driver was revised
(source `allocation:POOL:PERIOD:UNIT:2`, `:3`...), so what is posted for each target
always equals its current share.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from fractions import Fraction
from itertools import groupby, tee
from typing import Any

from sqlalchemy import Connection, Select, func, select, tuple_

from chargeback.allocation import (
    AllocationError,
    Driver as DriverSpec,
    PoolSpec,
    allocate,
    parse_driver,
    parse_targets,
    resolve_targets,
)
from chargeback.db import bytewise, dates_as_stored, plain_rows, stored_date
from chargeback.errors import Refused
from chargeback.fields import period_bounds
from chargeback.journal import Draft, accounts
from chargeback.money import format_amount, from_micro, minor_of_product, quantize, to_micro, to_minor
from chargeback.pricing import RateRow, plain, price_tiered
from chargeback.reference import Reference
from chargeback.schema import Adjustment, Allocation, Cost, Driver, Entry, Usage

RATE_SOURCE_LENGTH = 200


def _draft(ref: Reference, period: str, *, date: dt.date, service_date: dt.date, kind: str,
           usage_id: int | None, source: str | None, service: str, consumer: str,
           quantity_micro: int, rate_micro: int | None, amount_minor: int,
           reference: str | None, memo: str | None, rate_source: str | None,
           pieces: tuple[tuple[int, int, int], ...] = ()) -> Draft:
    provider = ref.services[service].provider
    unit = ref.units[consumer]
    debit, credit = accounts(unit.kind, consumer, provider)
    return Draft(period, date, service_date, kind, usage_id, source, service, provider, consumer,
                 unit.kind, quantity_micro, rate_micro, amount_minor, debit, credit,
                 unit.expense_account, ref.units[provider].revenue_account, reference, memo,
                 rate_source, pieces)


USAGE_COLUMNS = (Usage.id, Usage.date, Usage.service, Usage.consumer, Usage.quantity_micro,
                 Usage.reference, Usage.description)


def _unposted_usage(conn: Connection, period: str):  # type: ignore[no-untyped-def]
    return (select(*USAGE_COLUMNS).outerjoin(Entry, Entry.usage_id == Usage.id)
            .where(Usage.period == period, Entry.id.is_(None)))


def unposted_usage_count(conn: Connection, period: str) -> int:
    """The usage lines of `period` that the close will price and post (sizes its bar)."""
    return conn.execute(select(func.count()).select_from(_unposted_usage(conn, period).subquery())).scalar() or 0


def _no_rate(service: str, reference: str, day: dt.date, consumer: str) -> Refused:
    return Refused(f"usage {service} {reference} ({day.isoformat()}, {consumer}): no rate in "
                   "force any more; fix rates.csv and load the book again")


def usage_charges(conn: Connection, ref: Reference, period: str, chunk: int = 200_000,
                  *, untiered: bool = True) -> Iterator[Draft]:
    """Unposted usage of the period, priced: untiered services in import order, then
    tiered services per (service, consumer) in order of date then reference. Without
    the `untiered` ones when they are priced elsewhere (`charges_elsewhere`)."""
    tiered = ref.rates.tiered
    if untiered:
        yield from _untiered_usage(conn, ref, period, tiered, chunk)
    if tiered:
        yield from _tiered_usage(conn, ref, period, tiered, chunk)


def _untiered_usage(conn: Connection, ref: Reference, period: str, tiered: frozenset[str],
                    chunk: int) -> Iterator[Draft]:
    """Read in chunks by id, each chunk fetched whole before its drafts are posted. The
    chunks are big (200,000 lines, some 50 MB): a read waits for the batch being inserted
    on the other thread (`journal.post`), and few reads mean few waits. Only a re-close
    after a reopen needs to skip lines already posted (a join with the entries table);
    a first close reads the usage table alone.

    Priced in integers (`minor_of_product`, the rounding of `quantize`); what does not change
    from line to line (a consumer's class and accounts, a service's provider, the rate of
    a service, class and day) is worked out once."""
    first_day, _ = period_bounds(period)
    digits = ref.digits
    query = untiered_query(conn, period, tiered)
    days: dict[object, tuple[dt.date, dt.date]] = {}
    make = tuple.__new__  # a Draft of all its fields, without NamedTuple's keyword-taking __new__
    consumers: dict[str, tuple[str, str | None] | None] = {}
    services: dict[str, tuple[str, str | None] | None] = {}
    pairs: dict[tuple[str, str, str], tuple[str, str]] = {}
    rates: dict[tuple[str, str, dt.date], tuple[int, str] | None] = {}
    for rows in _chunks(conn, query, chunk):
        for usage_id, raw_day, service, consumer, quantity_micro, reference, description in rows:
            found = days.get(raw_day)
            if found is None:
                day = stored_date(raw_day)
                found = days[raw_day] = (day, max(day, first_day))  # a late line is posted on the first day
            day, posted_on = found
            buyer = consumers.get(consumer, False)
            if buyer is False:
                unit = ref.units.get(consumer)
                buyer = consumers[consumer] = None if unit is None else (unit.kind, unit.expense_account)
            seller = services.get(service, False)
            if seller is False:
                info = ref.services.get(service)
                seller = services[service] = (
                    None if info is None else (info.provider, ref.units[info.provider].revenue_account))
            rate = None
            if buyer is not None and seller is not None:
                kind = buyer[0]
                rate = rates.get((service, kind, day), False)
                if rate is False:
                    row = ref.rates.find(service, kind, day)
                    rate = rates[(service, kind, day)] = (
                        None if row is None else (to_micro(row.rate), row.provenance))
            if rate is None:
                raise _no_rate(service, reference, day, consumer)
            kind, debit_gl = buyer  # type: ignore[misc]
            provider, credit_gl = seller  # type: ignore[misc]
            both = pairs.get((kind, consumer, provider))
            if both is None:
                both = pairs[(kind, consumer, provider)] = accounts(kind, consumer, provider)
            rate_micro, provenance = rate
            yield make(Draft, (period, posted_on, day, "usage", usage_id, None, service, provider,
                               consumer, kind, quantity_micro, rate_micro,
                               minor_of_product(quantity_micro, rate_micro, digits), both[0], both[1],
                               debit_gl, credit_gl, reference, description, provenance, ()))


def untiered_query(conn: Connection, period: str, tiered: frozenset[str]) -> Select:  # type: ignore[type-arg]
    """The period's unposted usage of services without tiers (`USAGE_COLUMNS`, dates as
    stored)."""
    query = select(*dates_as_stored(USAGE_COLUMNS)).where(Usage.period == period)
    if tiered:
        query = query.where(Usage.service.not_in(sorted(tiered)))
    if _usage_posted(conn, period):
        query = query.outerjoin(Entry, Entry.usage_id == Usage.id).where(Entry.id.is_(None))
    return query


def untiered_usage_charges(conn: Connection, ref: Reference, period: str,
                           chunk: int = 200_000) -> Iterator[Draft]:
    """The first part of `usage_charges`: the usage of services without tiers, priced."""
    return _untiered_usage(conn, ref, period, ref.rates.tiered, chunk)


def _usage_posted(conn: Connection, period: str) -> bool:
    """Whether any usage of `period` is posted already (a re-close after a reopen)."""
    return conn.execute(select(Entry.id).where(Entry.period == period, Entry.kind == "usage")
                        .limit(1)).first() is not None


def _chunks(conn: Connection, query: Select, chunk: int) -> Iterator[Sequence[tuple[Any, ...]]]:  # type: ignore[type-arg]
    """The rows of `query` in chunks by usage id, each fetched whole before it is priced,
    as the driver's plain tuples (`plain_rows`: a million lines read in 2.9-3.6 s of CPU
    against 4.3-4.7 s as SQLAlchemy's rows)."""
    after = 0
    while True:
        rows = [row for part in plain_rows(conn, query.where(Usage.id > after).order_by(Usage.id).limit(chunk),
                                           size=chunk)
                for row in part]
        if not rows:
            return
        after = rows[-1][0]
        yield rows


def _tiered_usage(conn: Connection, ref: Reference, period: str, tiered: frozenset[str],
                  chunk: int) -> Iterator[Draft]:
    """Usage of tiered services, priced with the accumulation of its (service, consumer)."""
    posted = dict(
        ((service, consumer), int(total)) for service, consumer, total in conn.execute(
            select(Entry.service, Entry.consumer, func.sum(Entry.quantity_micro))
            .where(Entry.period == period, Entry.kind == "usage", Entry.service.in_(sorted(tiered)))
            .group_by(Entry.service, Entry.consumer)))
    first_day, _ = period_bounds(period)
    rows = _tiered_rows(conn, period, tiered, chunk)
    for (service, consumer), group in groupby(rows, key=lambda row: (row[2], row[3])):
        unit = ref.units.get(consumer)
        lines, feed = tee(group)

        def schedules(feed=feed, unit=unit):  # type: ignore[no-untyped-def]
            for _, day, _, _, quantity_micro, reference, _ in feed:
                tiers = ref.rates.tiers(service, unit.kind, day) if unit else ()
                if not tiers:
                    raise _no_rate(service, reference, day, consumer)
                yield from_micro(quantity_micro), tiers

        start = from_micro(posted.get((service, consumer), 0))
        for line, priced in zip(lines, price_tiered(schedules(), ref.digits, start)):
            usage_id, day, _, _, quantity_micro, reference, description = line
            pieces = tuple((to_micro(p.tier.tier_from), to_micro(p.quantity), to_micro(p.tier.rate))
                           for p in priced.pieces)
            rate_micro = pieces[0][2] if len(pieces) == 1 else None
            yield _draft(ref, period, date=max(day, first_day), service_date=day, kind="usage",
                         usage_id=usage_id, source=None, service=service, consumer=consumer,
                         quantity_micro=quantity_micro, rate_micro=rate_micro,
                         amount_minor=to_minor(priced.amount, ref.digits), reference=reference,
                         memo=description, rate_source=_fit(priced.rate_source, priced.pieces[0].tier),
                         pieces=pieces)


def _fit(text: str, base: RateRow) -> str:
    """The rate source as it fits the entry's column (the pieces are in entry_tiers)."""
    if len(text) <= RATE_SOURCE_LENGTH:
        return text
    return f"{base.service}/{base.customer_class}/{base.effective_from.isoformat()} tiers (see entry_tiers)"


def _tiered_rows(conn: Connection, period: str, tiered: frozenset[str], chunk: int):  # type: ignore[no-untyped-def]
    """Unposted usage of tiered services in order of service, consumer, date, reference,
    read in chunks (keyset), each fetched whole before its drafts are posted."""
    service, consumer, reference = bytewise(conn, Usage.service, Usage.consumer, Usage.reference)
    order = (service, consumer, Usage.date, reference)
    query = _unposted_usage(conn, period).where(Usage.service.in_(sorted(tiered))).order_by(*order)
    after: tuple[object, ...] | None = None
    while True:
        page = query if after is None else query.where(tuple_(*order) > tuple_(*after))
        rows = conn.execute(page.limit(chunk)).all()
        if not rows:
            return
        last = rows[-1]
        after = (last[2], last[3], last[1], last[5])
        yield from rows


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
                     memo=adj.reason, rate_source=adjustment_source(adj.against_service, adj.against_reference))


def adjustment_source(against_service: str | None, against_reference: str | None) -> str:
    """An adjustment's rate source; a linked credit names the charge it corrects."""
    if against_service is None:
        return "manual adjustment"
    return f"manual adjustment against {against_service}:{against_reference}"[:RATE_SOURCE_LENGTH]


def period_charges(conn: Connection, ref: Reference, period: str, *,
                   untiered: bool = True) -> Iterator[Draft]:
    """Everything a close posts for `period` before allocations, in posting order;
    without the untiered usage when it is priced elsewhere (`charges_elsewhere`)."""
    yield from usage_charges(conn, ref, period, untiered=untiered)
    yield from recurring_charges(conn, ref, period)
    yield from adjustment_charges(conn, ref, period)


def allocation_charges(conn: Connection, ref: Reference, period: str) -> Iterator[Draft]:
    """The period's allocations not yet posted (or their revision), after everything
    else of the period is posted. Refuses, naming the pool and period, when a pool
    cannot be allocated."""
    costs = dict(conn.execute(select(Cost.pool, Cost.amount_minor).where(Cost.period == period)).all())
    if not costs:
        return
    pools = {p.pool: p for p in conn.execute(select(Allocation.__table__).where(
        Allocation.pool.in_(list(costs))))}
    first_day, last_day = period_bounds(period)
    specs = []
    drivers: dict[str, DriverSpec] = {}
    for code in sorted(pools):
        pool = pools[code]
        drivers[code] = parse_driver(pool.driver)
        units = resolve_targets(parse_targets(pool.targets), pool.provider, ref.units,
                                first_day, last_day)
        values = _driver_values(conn, drivers[code], period, units, code)
        specs.append(PoolSpec(code, pool.provider, costs[code],
                              {u: Fraction(values.get(u, 0)) for u in units}, pool.step_order))
    try:
        results = allocate(specs, ref.allocation_method)
    except AllocationError as exc:
        raise Refused(f"allocation refused: pool {exc.pool}, period {period}: {exc.message}") from None
    posted = _posted_allocations(conn, period)
    for result in results:
        pool = pools[result.code]
        shares = {s.unit: (int(s.weight), s.amount) for s in result.shares}
        prefix = f"allocation:{result.code}:{period}:"
        dropped = {key[len(prefix):] for key in posted if key.startswith(prefix)} - set(shares)
        for unit in sorted(set(shares) | dropped):
            quantity, amount = shares.get(unit, (0, 0))
            done_quantity, done_amount, count = posted.get(prefix + unit, (0, 0, 0))
            if amount == done_amount:
                continue
            source = prefix + unit + (f":{count + 1}" if count else "")
            text = (f"pool {result.code} {ref.allocation_method} by {drivers[result.code].text}: "
                    f"{plain(from_micro(quantity))} of {plain(from_micro(int(result.weight_total)))}, "
                    f"pool total {format_amount(result.total, ref.digits)}")
            yield _draft(ref, period, date=last_day, service_date=last_day, kind="allocation",
                         usage_id=None, source=source, service=pool.service, consumer=unit,
                         quantity_micro=quantity - done_quantity, rate_micro=None,
                         amount_minor=amount - done_amount, reference=f"{result.code}-{period}",
                         memo=f"Allocation of pool {result.code} by {drivers[result.code].text}"
                              + (" (revised)" if count else ""),
                         rate_source=text[:RATE_SOURCE_LENGTH])


def _posted_allocations(conn: Connection, period: str) -> dict[str, tuple[int, int, int]]:
    """(quantity, amount, entries) already posted per `allocation:POOL:PERIOD:UNIT`."""
    posted: dict[str, tuple[int, int, int]] = {}
    for source, quantity, amount in conn.execute(
            select(Entry.source, Entry.quantity_micro, Entry.amount_minor)
            .where(Entry.period == period, Entry.kind == "allocation")):
        key = ":".join(source.split(":")[:4])
        q, a, n = posted.get(key, (0, 0, 0))
        posted[key] = (q + quantity, a + amount, n + 1)
    return posted


def _driver_values(conn: Connection, driver: DriverSpec, period: str, units: Sequence[str],
                   pool: str) -> dict[str, int]:
    """Each target's driver value in the period, in millionths."""
    if driver.kind == "equal":
        return {unit: 1_000_000 for unit in units}
    if driver.kind == "usage":
        values = {consumer: int(total) for consumer, total in conn.execute(
            select(Entry.consumer, func.sum(Entry.quantity_micro))
            .where(Entry.period == period, Entry.service == driver.name,
                   Entry.kind.in_(("usage", "recurring")), Entry.consumer.in_(list(units)))
            .group_by(Entry.consumer))}
        negative = sorted(u for u, v in values.items() if v < 0)
        if negative:
            raise Refused(f"allocation refused: pool {pool}, period {period}: driver "
                          f"{driver.text} is negative for {', '.join(negative)} (credits exceed usage)")
        return values
    latest = conn.execute(select(func.max(Driver.period)).where(
        Driver.driver == driver.name, Driver.period <= period)).scalar()
    if latest is None:
        raise Refused(f"allocation refused: pool {pool}, period {period}: unknown driver "
                      f"{driver.name!r}: drivers.csv has no values for it in {period} or before")
    return dict(conn.execute(select(Driver.unit, Driver.value_micro).where(
        Driver.driver == driver.name, Driver.period == latest)).all())
