"""The charges of a period, priced and ready to post.

At close, every usage line not yet posted is priced at the rate in force on its own
date, each recurring fee of the period not yet posted is priced at the rate in force on
the period's first day, and each pending adjustment is taken as entered. The result is
a list of journal drafts in a fixed order, so a close is reproducible.

Usage is priced over whole columns (`pricing.price_lines`) and posted as charges, not
lines: the lines of one consumer and one service priced by one rate row (or one tier
schedule) in one close are one entry, whose quantity and amount are their sums; each line
keeps its amount and rate in `charge_lines` (its tier pieces in `line_tiers`), and the
entry's hash covers a digest of its lines. Tiered usage accumulates per (service,
consumer) in order of date then reference, continuing from the quantity already posted
in the period (a re-close after a reopen carries on where the last close stopped).

Allocations are computed after everything else is posted (a `usage:SERVICE` driver reads
the period's posted quantities) and posted once per (pool, period, target), with the
stable source `allocation:POOL:PERIOD:UNIT`. A re-close after a reopen posts only what
changed: a new target's share, or the difference when a cost or driver was revised
(source `allocation:POOL:PERIOD:UNIT:2`, `:3`...), so what is posted for each target
always equals its current share.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import polars as pl
from sqlalchemy import ColumnElement, Connection, String, cast, exists, func, literal, select

from chargeback.book.snapshot import Reference
from chargeback.core.allocation import (
    AllocationDriver,
    AllocationError,
    PoolSpec,
    allocate,
    parse_driver,
    parse_targets,
    resolve_targets,
)
from chargeback.core.calendar import period_bounds
from chargeback.core.errors import Refused
from chargeback.core.money import format_amount, from_micro, quantize, to_micro
from chargeback.core.pricing import (
    LINE_COLUMNS,
    PIECE_COLUMNS,
    Unpriced,
    plain,
    price_lines,
    rate_frame,
    rounded_minor,
)
from chargeback.ledger.cloud import amount_priced, cloud_pool_costs
from chargeback.ledger.entries import Draft, accounts
from chargeback.ledger.journal import MAX_AMOUNT_MINOR
from chargeback.store.db import bulk_insert, bytewise, date_text, frame
from chargeback.store.schema import (
    Adjustment,
    Allocation,
    Book,
    ChargeLine,
    Cost,
    Driver,
    Entry,
    LineTier,
    Usage,
)

RATE_SOURCE_LENGTH = 200
#: What documents show for an adjustment entered without `--memo` (its reason is internal).
ADJUSTMENT_MEMO = "Adjustment"


def _draft(
    ref: Reference,
    period: str,
    *,
    day: dt.date,
    kind: str,
    source: str,
    service: str,
    consumer: str,
    quantity_micro: int,
    rate_micro: int | None,
    amount_minor: int,
    reference: str | None,
    memo: str | None,
    rate_source: str | None,
) -> Draft:
    """A charge the close makes itself, not from usage lines (a recurring fee, an
    adjustment, an allocation share), as a journal draft: dated and served on `day`, its
    provider, accounts and GL accounts those of the book."""
    provider = ref.services[service].provider
    unit = ref.units[consumer]
    debit, credit = accounts(unit.kind, consumer, provider)
    return Draft(
        period,
        day,
        day,
        kind,
        None,
        source,
        service,
        provider,
        consumer,
        unit.kind,
        quantity_micro,
        rate_micro,
        amount_minor,
        debit,
        credit,
        unit.expense_account,
        ref.units[provider].revenue_account,
        reference,
        memo,
        rate_source,
    )


def usage_waiting() -> tuple[ColumnElement[bool], ...]:
    """Usage lines a close will price: not priced into a charge yet, and not voided."""
    return Usage.void_id.is_(None), ~exists().where(ChargeLine.usage_id == Usage.id)


def adjustment_posted() -> ColumnElement[bool]:
    """Whether an adjustment is posted: an entry has it as its source."""
    return exists().where(Entry.source == literal("adjustment:") + cast(Adjustment.id, String))


def _unpriced(period: str) -> tuple[ColumnElement[bool], ...]:
    """The usage lines of `period` not priced into a charge yet (and not voided)."""
    return Usage.period == period, *usage_waiting()


def unposted_usage_count(conn: Connection, period: str) -> int:
    """The usage lines of `period` that the close will price and post."""
    return conn.execute(select(func.count()).select_from(Usage).where(*_unpriced(period))).scalar() or 0


def _no_rate(service: str, reference: str, day: dt.date, consumer: str) -> Refused:
    return Refused(
        f"usage {service} {reference} ({day.isoformat()}, {consumer}): no rate in "
        "force any more; fix rates.csv and load the book again"
    )


def consumer_ranges(conn: Connection, period: str, most_lines: int) -> list[tuple[str, str]]:
    """The consumers with usage of `period` still to price, cut into ranges (first, last
    consumer code, in byte order) of at most `most_lines` lines each, a consumer never
    split (one with more lines is a range of its own). A close prices and posts a range
    at a time, so its memory follows the range, not the month."""
    consumer = bytewise(conn, Usage.consumer)[0]
    counts = conn.execute(
        select(Usage.consumer, func.count()).where(*_unpriced(period)).group_by(Usage.consumer).order_by(consumer)
    ).all()
    ranges: list[tuple[str, str]] = []
    lines = 0
    for code, count in counts:
        if ranges and lines + count <= most_lines:
            ranges[-1] = (ranges[-1][0], code)
            lines += count
        else:
            ranges.append((code, code))
            lines = count
    return ranges


def unposted_lines(
    conn: Connection, ref: Reference, period: str, consumers: tuple[str, str] | None = None
) -> pl.DataFrame:
    """The period's usage lines not priced yet (`pricing.LINE_COLUMNS`), one query;
    `consumers`: only those of a range of consumers (`consumer_ranges`)."""
    within: tuple[ColumnElement[bool], ...] = ()
    if consumers is not None:
        consumer = bytewise(conn, Usage.consumer)[0]
        within = (consumer >= consumers[0], consumer <= consumers[1])
    query = select(
        Usage.id,
        date_text(conn, Usage.date),
        Usage.service,
        Usage.consumer,
        Usage.quantity_micro,
        Usage.reference,
        Usage.amount_minor,
    ).where(*_unpriced(period), *within)
    schema = {name: kind for name, kind in LINE_COLUMNS.items() if name != "customer_class"}
    lines = frame(conn, query, {**schema, "amount_minor": pl.Int64})
    classes = pl.DataFrame(
        {"consumer": list(ref.units), "customer_class": [u.kind for u in ref.units.values()]},
        schema={"consumer": pl.String, "customer_class": pl.String},
    )
    return lines.join(classes, on="consumer", how="left").select(*LINE_COLUMNS, "amount_minor")


def posted_quantities(conn: Connection, period: str, services: frozenset[str]) -> pl.DataFrame:
    """The usage quantity already posted in `period` per (service, consumer) of `services`:
    where the tier accumulation of a re-close carries on from."""
    rows = conn.execute(
        select(Entry.service, Entry.consumer, func.sum(Entry.quantity_micro))
        .where(Entry.period == period, Entry.kind == "usage", Entry.service.in_(sorted(services)))
        .group_by(Entry.service, Entry.consumer)
    ).all()
    return pl.DataFrame(
        [(s, c, int(q)) for s, c, q in rows],
        orient="row",
        schema={"service": pl.String, "consumer": pl.String, "quantity_micro": pl.Int64},
    )


def canonical_line() -> pl.Expr:
    """The bytes a usage line contributes to its charge's lines digest, as text:
    `ID TAB DATE TAB QUANTITY TAB AMOUNT TAB RATE TAB PIECES TAB LENGTH TAB REFERENCE LF`,
    numbers as integers (quantities and rates in millionths, amounts in minor units), an
    empty rate when the line spans tiers, its pieces as `FROM:QUANTITY@RATE` joined by
    commas (empty for an untiered line), and the reference preceded by its length in
    UTF-8 bytes, so no reference can pass for another line."""
    return (
        pl.concat_str(
            [
                pl.col("usage_id").cast(pl.String),
                pl.col("date").cast(pl.String),
                pl.col("quantity_micro").cast(pl.String),
                pl.col("amount_minor").cast(pl.String),
                pl.col("rate_micro").cast(pl.String).fill_null(""),
                pl.col("pieces").fill_null(""),
                pl.col("reference").str.len_bytes().cast(pl.String),
                pl.col("reference"),
            ],
            separator="\t",
        )
        + "\n"
    )


def piece_texts(pieces: pl.DataFrame) -> pl.DataFrame:
    """usage_id and `pieces`: each tiered line's pieces as the digest writes them."""
    return (
        pieces.sort(["usage_id", "piece"])
        .group_by("usage_id", maintain_order=True)
        .agg(
            pieces=pl.concat_str(
                [
                    pl.col("tier_from_micro").cast(pl.String),
                    pl.lit(":"),
                    pl.col("quantity_micro").cast(pl.String),
                    pl.lit("@"),
                    pl.col("rate_micro").cast(pl.String),
                ]
            ).str.join(",")
        )
    )


def lines_digests(lines: pl.DataFrame) -> pl.DataFrame:
    """entry and `lines_digest`: sha256 of each entry's canonical lines in id order.
    `lines` has the columns `canonical_line` reads and `entry`.

    The lines' texts are laid end to end in (entry, id) order as one buffer and each
    entry's digest is taken over its slice of it: joining each entry's texts into a
    string of its own (a group-by) took 400 MB more for a million lines."""
    texts = lines.select("entry", "usage_id", canonical=canonical_line()).sort("entry", "usage_id")
    ends = (
        texts.group_by("entry", maintain_order=True)
        .agg(size=pl.col("canonical").str.len_bytes().sum())
        .with_columns(end=pl.col("size").cum_sum())
    )
    buffer = memoryview(texts["canonical"].str.join("").item().encode()) if texts.height else memoryview(b"")
    sha256 = hashlib.sha256
    digests, start = [], 0
    for end in ends["end"]:
        digests.append(sha256(buffer[start:end]).hexdigest())
        start = end
    return ends.select("entry", lines_digest=pl.Series(digests, dtype=pl.String))


@dataclass
class PricedUsage:
    """The period's unposted usage priced and grouped into charges, ready to post:
    `drafts` in posting order; `lines` (usage_id, charge, amount_minor, rate_micro) and
    `pieces` to store once the charges have their entry ids (`charge` counts from 0 in
    `drafts`' order)."""

    drafts: Iterator[Draft]
    lines: pl.DataFrame
    pieces: pl.DataFrame


def price_usage(conn: Connection, ref: Reference, period: str, consumers: tuple[str, str] | None = None) -> PricedUsage:
    """Price every unposted usage line of the period (of a range of `consumers`) over
    whole columns and group the lines into charges: one per consumer, service and price
    (rate row or tier schedule). A charge's quantity and amount are its lines' sums; each
    line keeps its own amount, rounded half-up on its own."""
    lines = unposted_lines(conn, ref, period, consumers)
    by_amount = lines.filter(pl.col("amount_minor").is_not_null())  # cloud bills' lines: priced by their amount
    lines = lines.filter(pl.col("amount_minor").is_null()).drop("amount_minor")
    tiered = ref.rates.tiered
    try:
        priced, pieces = price_lines(
            lines, rate_frame(ref.rates), tiered, posted_quantities(conn, period, tiered), ref.digits
        )
    except Unpriced as missing:
        line = lines.filter(pl.col("usage_id") == missing.usage_id).row(0, named=True)
        raise _no_rate(line["service"], line["reference"], line["date"], line["consumer"]) from None
    if by_amount.height:
        priced = pl.concat([priced, amount_priced(by_amount)], how="vertical_relaxed").sort("usage_id")
    too_large = priced.filter(pl.col("amount_minor").abs() >= MAX_AMOUNT_MINOR)
    if too_large.height:
        line = too_large.row(0, named=True)
        raise Refused(
            f"usage {line['service']} {line['reference']} ({line['consumer']}): its amount is too "
            "large to post; check its quantity and rate (a charge must stay below 10^12)"
        )
    keys = ["service", "consumer", "price"]
    charges = (
        priced.group_by(keys)
        .agg(
            quantity_micro=pl.col("quantity_micro").cast(pl.Int128).sum(),
            amount_minor=pl.col("amount_minor").sum(),
            count=pl.len(),
            service_date=pl.col("date").min(),
            customer_class=pl.col("customer_class").first(),
            rate_source=pl.col("rate_source").first(),
            rate_micro=pl.when(pl.col("rate_micro").n_unique() == 1).then(pl.col("rate_micro").first()),
        )
        .sort(["service", "consumer", "service_date", "price"])
        .with_row_index("entry")
    )
    over = charges.filter(
        (pl.col("amount_minor").abs() >= MAX_AMOUNT_MINOR) | (pl.col("quantity_micro").abs() >= 2**63)
    )
    if over.height:
        charge = over.row(0, named=True)
        raise Refused(
            f"usage of {charge['service']} by {charge['consumer']} in {period}: its total is too "
            "large to post; check the quantities and rates (a charge must stay below 10^12)"
        )
    priced = priced.join(charges.select(*keys, "entry"), on=keys, maintain_order="left").with_columns(
        pl.col("amount_minor").cast(pl.Int64), pl.col("entry").cast(pl.Int64)
    )
    digested = ("usage_id", "date", "quantity_micro", "amount_minor", "rate_micro", "reference", "entry")
    digests = lines_digests(
        priced.select(digested).join(piece_texts(pieces), on="usage_id", how="left", maintain_order="left")
    )
    charges = charges.join(digests, on="entry").sort("entry")
    _, last_day = period_bounds(period)
    drafts = _drafts(charges, ref, period, last_day)
    return PricedUsage(
        drafts, priced.select("usage_id", pl.col("entry").alias("charge"), "amount_minor", "rate_micro"), pieces
    )


def _drafts(charges: pl.DataFrame, ref: Reference, period: str, posted_on: dt.date) -> Iterator[Draft]:
    """The charges as journal drafts, in order: their provider, class, accounts and GL
    accounts joined on as columns, so each draft is made straight from its row."""
    units = pl.DataFrame(
        [(u.code, u.kind, u.expense_account, u.revenue_account) for u in ref.units.values()],
        schema={"code": pl.String, "kind": pl.String, "expense": pl.String, "revenue": pl.String},
        orient="row",
    )
    services = pl.DataFrame(
        [(s.code, s.provider) for s in ref.services.values()],
        schema={"service": pl.String, "provider": pl.String},
        orient="row",
    )
    make = tuple.__new__
    # made a slice at a time as posted: a million drafts' rows at once would be 0.5 GB
    for part in charges.iter_slices(50_000):
        rows = _draft_rows(part, services, units, period, posted_on)
        yield from (make(Draft, row) for row in rows.iter_rows())


def _draft_rows(
    charges: pl.DataFrame, services: pl.DataFrame, units: pl.DataFrame, period: str, posted_on: dt.date
) -> pl.DataFrame:
    internal = pl.col("customer_class") == "internal"
    return (
        charges.join(services, on="service", how="left", maintain_order="left")
        .join(units.select("code", "expense"), left_on="consumer", right_on="code", how="left", maintain_order="left")
        .join(units.select("code", "revenue"), left_on="provider", right_on="code", how="left", maintain_order="left")
        .select(
            pl.lit(period).alias("period"),
            pl.lit(posted_on).alias("date"),
            "service_date",
            pl.lit("usage").alias("kind"),
            pl.lit(None, pl.Int64).alias("usage_id"),
            pl.lit(None, pl.String).alias("source"),
            "service",
            "provider",
            "consumer",
            "customer_class",
            pl.col("quantity_micro").cast(pl.Int64),
            "rate_micro",
            pl.col("amount_minor").cast(pl.Int64),
            pl.when(internal)
            .then(pl.lit("expenses:internal:") + pl.col("consumer"))
            .otherwise(pl.lit("assets:receivable:") + pl.col("consumer"))
            .alias("debit_account"),
            pl.when(internal)
            .then(pl.lit("revenue:internal:") + pl.col("provider"))
            .otherwise(pl.lit("revenue:external:") + pl.col("provider"))
            .alias("credit_account"),
            pl.col("expense").alias("debit_gl"),
            pl.col("revenue").alias("credit_gl"),
            pl.lit(None, pl.String).alias("reference"),
            (
                pl.col("count").cast(pl.String)
                + pl.when(pl.col("count") == 1).then(pl.lit(" usage line")).otherwise(pl.lit(" usage lines"))
            ).alias("memo"),
            "rate_source",
            "lines_digest",
        )
    )


def store_lines(conn: Connection, priced: PricedUsage, first_entry: int) -> None:
    """Record each priced line against the entry its charge was posted as."""
    lines = priced.lines.with_columns(entry_id=pl.col("charge") + first_entry)
    bulk_insert(
        conn,
        ChargeLine.__table__,
        ("usage_id", "entry_id", "amount_minor", "rate_micro"),
        lines.select("usage_id", "entry_id", "amount_minor", "rate_micro").iter_rows(),
    )
    bulk_insert(
        conn,
        LineTier.__table__,
        tuple(PIECE_COLUMNS),
        priced.pieces.select(*PIECE_COLUMNS).iter_rows(),
    )


def check_lines(conn: Connection, result: Any) -> None:
    """`verify`'s check of the usage charges over whole columns: each charge's lines add
    up to its quantity and amount, each line's tier pieces to its quantity and (rounded
    once) its amount, and the lines of a charge posted with a digest still hash to it."""
    digits = conn.execute(select(Book.minor_digits)).scalar() or 0
    lines = frame(
        conn,
        select(
            ChargeLine.entry_id,
            ChargeLine.usage_id,
            date_text(conn, Usage.date),
            Usage.quantity_micro,
            ChargeLine.amount_minor,
            ChargeLine.rate_micro,
            Usage.reference,
        ).join(Usage, Usage.id == ChargeLine.usage_id),
        {
            "entry": pl.Int64,
            "usage_id": pl.Int64,
            "date": pl.Date,
            "quantity_micro": pl.Int64,
            "amount_minor": pl.Int64,
            "rate_micro": pl.Int64,
            "reference": pl.String,
        },
    )
    pieces = frame(
        conn,
        select(
            LineTier.usage_id, LineTier.piece, LineTier.tier_from_micro, LineTier.quantity_micro, LineTier.rate_micro
        ),
        PIECE_COLUMNS,
    )
    entries = frame(
        conn,
        select(Entry.id, Entry.quantity_micro, Entry.amount_minor, Entry.lines_digest).where(Entry.kind == "usage"),
        {"entry": pl.Int64, "quantity": pl.Int64, "amount": pl.Int64, "lines_digest": pl.String},
    )
    sums = lines.group_by("entry").agg(
        lines_quantity=pl.col("quantity_micro").sum(), lines_amount=pl.col("amount_minor").sum()
    )
    wrong = (
        entries.join(sums, on="entry", how="left")
        .filter(
            (pl.col("lines_digest").is_not_null() | pl.col("lines_amount").is_not_null())
            & (
                (pl.col("lines_quantity") != pl.col("quantity")).fill_null(True)
                | (pl.col("lines_amount") != pl.col("amount")).fill_null(True)
            )
        )
        .sort("entry")
    )
    for entry in wrong["entry"].head(20):
        result.problems.append(
            f"entry {entry}: its usage lines do not add up to its quantity and amount: charge_lines was altered"
        )
    split = (
        pieces.join(lines.select("usage_id", "quantity_micro", "amount_minor"), on="usage_id", suffix="_line")
        .group_by("usage_id")
        .agg(
            quantity=pl.col("quantity_micro").sum(),
            line_quantity=pl.col("quantity_micro_line").first(),
            exact=(pl.col("quantity_micro").cast(pl.Int128) * pl.col("rate_micro")).sum(),
            amount=pl.col("amount_minor").first(),
        )
        .filter(
            (pl.col("quantity") != pl.col("line_quantity"))
            | (rounded_minor(pl.col("exact"), digits) != pl.col("amount"))
        )
        .sort("usage_id")
    )
    for usage_id in split["usage_id"].head(20):
        result.problems.append(
            f"usage line {usage_id}: its tier pieces do not add up to its quantity and amount: line_tiers was altered"
        )
    hashed = entries.filter(pl.col("lines_digest").is_not_null())
    if hashed.height:
        now = lines_digests(
            lines.join(hashed.select("entry"), on="entry").join(piece_texts(pieces), on="usage_id", how="left")
        )
        changed = (
            hashed.join(now, on="entry", how="left", suffix="_now")
            .filter((pl.col("lines_digest") != pl.col("lines_digest_now")).fill_null(True))
            .sort("entry")
        )
        for entry in changed["entry"].head(20):
            result.problems.append(
                f"entry {entry}: its usage lines do not match its lines digest: a usage line or its price was altered"
            )


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
            raise Refused(
                f"recurring fee {fee.service} for {fee.consumer}: no {unit.kind} rate "
                f"in force on {first_day.isoformat()}; add one to rates.csv"
            )
        amount = int(quantize(fee.quantity * rate.rate, ref.digits) * 10**ref.digits)
        yield _draft(
            ref,
            period,
            day=first_day,
            kind="recurring",
            source=source,
            service=fee.service,
            consumer=fee.consumer,
            quantity_micro=to_micro(fee.quantity),
            rate_micro=to_micro(rate.rate),
            amount_minor=amount,
            reference=f"REC-{period}",
            memo=fee.description or "Monthly fee",
            rate_source=rate.provenance,
        )


def adjustment_charges(conn: Connection, ref: Reference, period: str) -> Iterator[Draft]:
    """Adjustments of the period not yet posted, as entered."""
    _, last_day = period_bounds(period)
    posted = select(Entry.source).where(Entry.period == period, Entry.kind == "adjustment")
    done = set(conn.execute(posted).scalars())
    adjustments = select(Adjustment.__table__).where(Adjustment.period == period, Adjustment.void_id.is_(None))
    for adj in conn.execute(adjustments.order_by(Adjustment.id)):
        source = f"adjustment:{adj.id}"
        if source in done:
            continue
        yield _draft(
            ref,
            period,
            day=last_day,
            kind="adjustment",
            source=source,
            service=adj.service,
            consumer=adj.consumer,
            quantity_micro=1_000_000,
            rate_micro=None,
            amount_minor=adj.amount_minor,
            reference=adj.reference or f"ADJ-{adj.id}",
            memo=adj.memo or ADJUSTMENT_MEMO,
            rate_source=adjustment_source(adj.against_service, adj.against_reference),
        )


def adjustment_source(against_service: str | None, against_reference: str | None) -> str:
    """An adjustment's rate source; a linked credit names the charge it corrects."""
    if against_service is None:
        return "manual adjustment"
    return f"manual adjustment against {against_service}:{against_reference}"[:RATE_SOURCE_LENGTH]


def period_charges(conn: Connection, ref: Reference, period: str) -> Iterator[Draft]:
    """What a close posts for `period` after the usage charges and before allocations."""
    yield from recurring_charges(conn, ref, period)
    yield from adjustment_charges(conn, ref, period)


def allocation_charges(conn: Connection, ref: Reference, period: str) -> Iterator[Draft]:
    """The period's allocations not yet posted (or their revision), after everything
    else of the period is posted. Refuses, naming the pool and period, when a pool
    cannot be allocated."""
    costs = dict(conn.execute(select(Cost.pool, Cost.amount_minor).where(Cost.period == period)).all())
    costs.update(cloud_pool_costs(conn, period))
    if not costs:
        return
    pools = {p.pool: p for p in conn.execute(select(Allocation.__table__).where(Allocation.pool.in_(list(costs))))}
    first_day, last_day = period_bounds(period)
    specs = []
    drivers: dict[str, AllocationDriver] = {}
    for code in sorted(pools):
        pool = pools[code]
        drivers[code] = parse_driver(pool.driver)
        units = resolve_targets(parse_targets(pool.targets), pool.provider, ref.units, first_day, last_day)
        values = _driver_values(conn, drivers[code], period, units, code)
        specs.append(
            PoolSpec(code, pool.provider, costs[code], {u: Fraction(values.get(u, 0)) for u in units}, pool.step_order)
        )
    try:
        results = allocate(specs, ref.allocation_method)
    except AllocationError as exc:
        raise Refused(f"allocation refused: pool {exc.pool}, period {period}: {exc.message}") from None
    posted = _posted_allocations(conn, period)
    for result in results:
        pool = pools[result.code]
        shares = {s.unit: (int(s.weight), s.amount) for s in result.shares}
        prefix = f"allocation:{result.code}:{period}:"
        dropped = {key[len(prefix) :] for key in posted if key.startswith(prefix)} - set(shares)
        for unit in sorted(set(shares) | dropped):
            quantity, amount = shares.get(unit, (0, 0))
            done_quantity, done_amount, count = posted.get(prefix + unit, (0, 0, 0))
            if amount == done_amount:
                continue
            source = prefix + unit + (f":{count + 1}" if count else "")
            text = (
                f"pool {result.code} {ref.allocation_method} by {drivers[result.code].text}: "
                f"{plain(from_micro(quantity))} of {plain(from_micro(int(result.weight_total)))}, "
                f"pool total {format_amount(result.total, ref.digits)}"
            )
            yield _draft(
                ref,
                period,
                day=last_day,
                kind="allocation",
                source=source,
                service=pool.service,
                consumer=unit,
                quantity_micro=quantity - done_quantity,
                rate_micro=None,
                amount_minor=amount - done_amount,
                reference=f"{result.code}-{period}",
                memo=f"Allocation of pool {result.code} by {drivers[result.code].text}"
                + (" (revised)" if count else ""),
                rate_source=text[:RATE_SOURCE_LENGTH],
            )


def _posted_allocations(conn: Connection, period: str) -> dict[str, tuple[int, int, int]]:
    """(quantity, amount, entries) already posted per `allocation:POOL:PERIOD:UNIT`."""
    posted: dict[str, tuple[int, int, int]] = {}
    for source, quantity, amount in conn.execute(
        select(Entry.source, Entry.quantity_micro, Entry.amount_minor).where(
            Entry.period == period, Entry.kind == "allocation"
        )
    ):
        key = ":".join((source or "").split(":")[:4])  # an allocation always has its source
        q, a, n = posted.get(key, (0, 0, 0))
        posted[key] = (q + quantity, a + amount, n + 1)
    return posted


def _driver_values(
    conn: Connection, driver: AllocationDriver, period: str, units: Sequence[str], pool: str
) -> dict[str, int]:
    """Each target's driver value in the period, in millionths."""
    if driver.kind == "equal":
        return dict.fromkeys(units, 1000000)
    if driver.kind in ("usage", "amount"):
        # usage: the quantities posted of the service; amount: its usage charges' amounts
        measure = Entry.quantity_micro if driver.kind == "usage" else Entry.amount_minor
        kinds = ("usage", "recurring") if driver.kind == "usage" else ("usage",)
        values = {
            consumer: int(total)
            for consumer, total in conn.execute(
                select(Entry.consumer, func.sum(measure))
                .where(
                    Entry.period == period,
                    Entry.service == driver.name,
                    Entry.kind.in_(kinds),
                    Entry.consumer.in_(list(units)),
                )
                .group_by(Entry.consumer)
            )
        }
        negative = sorted(u for u, v in values.items() if v < 0)
        if negative:
            raise Refused(
                f"allocation refused: pool {pool}, period {period}: driver "
                f"{driver.text} is negative for {', '.join(negative)} (credits exceed usage)"
            )
        return values
    latest = conn.execute(
        select(func.max(Driver.period)).where(Driver.driver == driver.name, Driver.period <= period)
    ).scalar()
    if latest is None:
        raise Refused(
            f"allocation refused: pool {pool}, period {period}: unknown driver "
            f"{driver.name!r}: drivers.csv has no values for it in {period} or before"
        )
    return dict(
        conn.execute(
            select(Driver.unit, Driver.value_micro).where(Driver.driver == driver.name, Driver.period == latest)
        ).all()
    )
