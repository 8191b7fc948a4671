"""What a period's documents are made of: the context they share, and each consumer's
bill (its charges, its priced usage lines and its totals by service).

Bills are read from the journal in one query ordered by consumer, so thousands of
consumers cost one pass over the period, not one query each; the period's priced usage
lines are read once into a Polars frame (`period_lines`), which `lines.csv` is written
from and each bill takes its part of. Everything here is plain picklable data, so the
writers can run in worker processes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain, groupby
from pathlib import Path
from typing import NamedTuple

import polars as pl
from sqlalchemy import Connection, func, select

from chargeback.book.snapshot import ServiceInfo, UnitInfo, load_reference
from chargeback.close.budgets import BudgetStatus, statuses_for
from chargeback.close.reconciliation import PeriodTotal, period_totals
from chargeback.core.calendar import month_name, period_bounds, previous_period
from chargeback.core.money import from_minor
from chargeback.core.pricing import PIECE_COLUMNS
from chargeback.core.safe import FORMULA_STARTS
from chargeback.documents.revisions import Revision, revision_of
from chargeback.ledger.seals import Seal, seal_of
from chargeback.ledger.service_levels import KIND as SLA_CREDIT
from chargeback.ledger.service_levels import period_levels
from chargeback.store.db import bytewise, dates_as_stored, plain_rows, stored_date
from chargeback.store.schema import (
    Adjustment,
    Book,
    ChargeLine,
    Entry,
    LineTier,
    Period,
    PeriodTotalRow,
    Usage,
)


class LevelRow(NamedTuple):
    """One SLA of a service a consumer used, as its statement shows it: the target, the
    value measured, met or missed, the band's percentage and the credit posted."""

    service: str
    metric: str
    unit: str
    direction: str
    target: Decimal
    value: Decimal | None
    result: str
    percent: Decimal
    credit_minor: int


def service_level_rows(conn: Connection, period: str, digits: int) -> dict[str, tuple[LevelRow, ...]]:
    """The period's service levels by consumer; the credit is what the journal holds for
    each (consumer, service, metric), revisions included."""
    levels = period_levels(conn, period, digits)
    if not levels.rows:
        return {}
    posted: dict[tuple[str, str, str], int] = {}
    for consumer, service, source, amount in conn.execute(
        select(Entry.consumer, Entry.service, Entry.source, Entry.amount_minor).where(
            Entry.period == period, Entry.kind == SLA_CREDIT
        )
    ):
        key = (consumer, service, (source or "::").split(":")[2])
        posted[key] = posted.get(key, 0) - amount
    found: dict[str, list[LevelRow]] = {}
    for row in levels.rows:
        for a in row.assessments:
            level = a.level
            result = "not measured" if not a.measured else "met" if a.met else "missed"
            found.setdefault(row.consumer, []).append(
                LevelRow(
                    row.service,
                    level.metric,
                    level.unit,
                    level.direction,
                    level.target,
                    a.value,
                    result,
                    a.percent,
                    posted.get((row.consumer, row.service, level.metric), 0),
                )
            )
    return {consumer: tuple(rows) for consumer, rows in found.items()}


@dataclass(frozen=True)
class DocumentContext:
    """What every document of one period shares: the book, the period, the issue date
    (the close's timestamp, so documents written again are identical) and whether they
    are drafts of an open period."""

    book: str
    currency: str
    digits: int
    period: str
    issued: dt.datetime
    payment_terms: str | None
    fiscal_year_start: int
    journal_hash: str | None
    units: dict[str, UnitInfo]
    services: dict[str, ServiceInfo]
    draft: bool = False
    #: Each budgeted unit's budget status for the fiscal year, through this period.
    budgets: dict[str, BudgetStatus] = field(default_factory=dict)
    #: How many usage lines an invoice lists under its charges (book.toml
    #: `invoice_line_limit`); past it, it points to the line detail.
    invoice_line_limit: int = 300
    #: The seal of the period's close (the journal head after it, signed when a seal key is
    #: configured), which the documents carry so auditors hold it outside the database.
    seal: Seal | None = None
    #: Which version of the period's documents these are (`revisions`): 1 for the first
    #: close's; a revised invoice's number ends `-R2`, `-R3`... and lists what changed.
    revision: Revision = field(default_factory=Revision)
    #: The charges the period's linked credits correct, by (service, reference, consumer):
    #: the periods they were charged in and their amount (`linked_originals`).
    linked: dict[tuple[str, str, str], tuple[tuple[str, ...], int]] = field(default_factory=dict)
    #: Each consumer's service levels of the period (services with an SLA it was charged for).
    service_levels: dict[str, tuple[LevelRow, ...]] = field(default_factory=dict)

    @property
    def first_day(self) -> dt.date:
        return period_bounds(self.period)[0]

    @property
    def last_day(self) -> dt.date:
        return period_bounds(self.period)[1]

    @property
    def period_label(self) -> str:
        """`2026-03` as `March 2026`."""
        return month_name(self.period)

    @property
    def previous_period(self) -> str:
        return previous_period(self.period)

    @property
    def year_start(self) -> str:
        """The first period of the fiscal year that holds this period."""
        year, month = int(self.period[:4]), int(self.period[5:7])
        if month < self.fiscal_year_start:
            year -= 1
        return f"{year:04d}-{self.fiscal_year_start:02d}"

    def amount(self, minor: int) -> Decimal:
        return from_minor(minor, self.digits)

    def unit_label(self, code: str) -> str:
        unit = self.units.get(code)
        return f"{unit.name} ({code})" if unit else code

    def service_label(self, code: str) -> str:
        service = self.services.get(code)
        return f"{service.name} ({code})" if service else code

    def unit_of_measure(self, code: str) -> str:
        service = self.services.get(code)
        return service.unit_of_measure if service else ""


def document_context(
    conn: Connection,
    period: str,
    *,
    draft: bool = False,
    issued: dt.datetime | None = None,
    totals: Sequence[PeriodTotal] | None = None,
) -> DocumentContext:
    """The context of `period`'s documents; a closed period's issue date is its close.
    `totals`: the period's (`reconciliation.period_totals`), when the caller has them."""
    ref = load_reference(conn)
    record = conn.execute(select(Period.closed_at, Period.closed_hash).where(Period.period == period)).first()
    closed_at = record.closed_at if record else None
    when = issued if draft or closed_at is None else closed_at
    if when is None:
        raise ValueError(f"period {period} is not closed: give the draft's issue date")
    limit = conn.execute(select(Book.invoice_line_limit)).scalar() or 300
    return DocumentContext(
        ref.name,
        ref.currency,
        ref.digits,
        period,
        when,
        ref.payment_terms,
        ref.fiscal_year_start,
        None if draft or record is None else record.closed_hash,
        ref.units,
        ref.services,
        draft,
        statuses_for(conn, period, totals),
        limit,
        None if draft else seal_of(conn, period),
        Revision() if draft else revision_of(conn, period),
        linked_originals(conn, period),
        service_level_rows(conn, period, ref.digits),
    )


def linked_originals(conn: Connection, period: str) -> dict[tuple[str, str, str], tuple[tuple[str, ...], int]]:
    """The posted charges that the period's linked adjustments (`adjust --against`)
    correct, so that invoices say which charge each corrects: by (service, reference,
    consumer), the periods it was charged in and its amount (a usage line's own amount,
    or the recurring fee's or allocation share's entries)."""
    targets = {
        (str(service), str(reference), consumer)
        for service, reference, consumer in conn.execute(
            select(Adjustment.against_service, Adjustment.against_reference, Adjustment.consumer).where(
                Adjustment.period == period, Adjustment.against_service.is_not(None)
            )
        )
    }
    found: dict[tuple[str, str, str], tuple[set[str], int]] = {}
    for service, reference, consumer in targets:
        rows = list(
            conn.execute(
                select(Usage.period, ChargeLine.amount_minor)
                .join(ChargeLine, ChargeLine.usage_id == Usage.id)
                .where(Usage.service == service, Usage.reference == reference, Usage.consumer == consumer)
            ).all()
        )
        rows += conn.execute(
            select(Entry.period, Entry.amount_minor).where(
                Entry.service == service,
                Entry.reference == reference,
                Entry.consumer == consumer,
                Entry.kind.in_(("recurring", "allocation")),
            )
        ).all()
        if rows:
            found[(service, reference, consumer)] = ({p for p, _ in rows}, sum(m for _, m in rows))
    return {key: (tuple(sorted(periods)), minor) for key, (periods, minor) in found.items()}


class Line(NamedTuple):
    """One charge line of a bill, as posted."""

    entry: int
    date: dt.date
    service_date: dt.date
    kind: str
    provider: str
    service: str
    customer_class: str
    quantity_micro: int
    rate_micro: int | None
    amount_minor: int
    reference: str | None
    memo: str | None
    rate_source: str | None

    def notes(self, first_day: dt.date) -> list[str]:
        """Why a line deserves a reader's attention: late charge, credit, adjustment."""
        found = []
        if self.service_date < first_day:
            found.append(f"late charge (service on {self.service_date.isoformat()})")
        if self.amount_minor < 0:
            found.append("credit")
        if self.kind == "adjustment":
            found.append("adjustment")
        if self.kind == SLA_CREDIT:
            found.append("service level missed")
        return found


LINE_COLUMNS = (
    Entry.id,
    Entry.date,
    Entry.service_date,
    Entry.kind,
    Entry.provider,
    Entry.service,
    Entry.customer_class,
    Entry.quantity_micro,
    Entry.rate_micro,
    Entry.amount_minor,
    Entry.reference,
    Entry.memo,
    Entry.rate_source,
)


#: A priced usage line as the documents read it: its charge (entry), the usage line,
#: what the usage file said of it and how it was priced.
LINE_SCHEMA: dict[str, pl.DataType] = {
    "entry": pl.Int64(),
    "usage_id": pl.Int64(),
    "date": pl.String(),
    "consumer": pl.String(),
    "provider": pl.String(),
    "service": pl.String(),
    "customer_class": pl.String(),
    "reference": pl.String(),
    "description": pl.String(),
    "quantity_micro": pl.Int64(),
    "rate_micro": pl.Int64(),
    "amount_minor": pl.Int64(),
    "rate_source": pl.String(),
}


@dataclass(slots=True)
class ServiceTotal:
    """A consumer's totals of one service: this period, the previous one, the fiscal year
    (slotted: a big period holds one per consumer and service, half a million of them)."""

    provider: str
    service: str
    lines: int = 0
    quantity_micro: int = 0
    amount_minor: int = 0
    previous_minor: int = 0
    year_to_date_minor: int = 0

    def add(self, other: ServiceTotal) -> None:
        self.lines += other.lines
        self.quantity_micro += other.quantity_micro
        self.amount_minor += other.amount_minor
        self.previous_minor += other.previous_minor
        self.year_to_date_minor += other.year_to_date_minor


#: consumer -> (provider, service) -> totals, internal charges only
#: A consumer's (or a subtree's) totals by (provider, service).
ByService = dict[tuple[str, str], ServiceTotal]
Totals = dict[str, ByService]


@dataclass
class Bill:
    """A consumer's charges of the period (`lines`, ordered by provider, service, date),
    its priced usage lines (`usage`, a `period_lines` frame) and, for internal units, its
    totals by service."""

    unit: UnitInfo
    lines: list[Line]
    totals: list[ServiceTotal] = field(default_factory=list)
    usage: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema={**LINE_SCHEMA, "tiers": pl.String()}))

    @property
    def total_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines)

    def __reduce__(self) -> tuple[object, ...]:
        """Pickled as plain tuples for the document workers: a million lines pickle in
        about a third of the time of named tuples and slotted classes, and unpickle in a
        fifth (the strings the reader shares are pickled once)."""
        totals = [
            (t.provider, t.service, t.lines, t.quantity_micro, t.amount_minor, t.previous_minor, t.year_to_date_minor)
            for t in self.totals
        ]
        return _unpickle_bill, (self.unit, [tuple(line) for line in self.lines], totals, self.usage)


def _unpickle_bill(
    unit: UnitInfo,
    lines: list[tuple[object, ...]],
    totals: list[tuple[str, str, int, int, int, int, int]],
    usage: pl.DataFrame,
) -> Bill:
    return Bill(unit, [Line._make(line) for line in lines], [ServiceTotal(*total) for total in totals], usage)


def service_totals(conn: Connection, ctx: DocumentContext, current: Sequence[PeriodTotal] | None = None) -> Totals:
    """Internal charges by consumer and service: this period (from `current`, the
    period's totals, when given), the previous period and the fiscal year to date (this
    period's plus the year's earlier periods'), in grouped queries that each read one
    stretch of periods."""
    totals: Totals = {}

    def slot(consumer: str, provider: str, service: str) -> ServiceTotal:
        return totals.setdefault(consumer, {}).setdefault((provider, service), ServiceTotal(provider, service))

    if current is None:
        current = period_totals(conn, ctx.period)
    for line in current:
        if line.customer_class != "internal":
            continue
        total = slot(line.consumer, line.provider, line.service)
        total.lines += line.entries
        total.amount_minor += line.amount_minor
        if line.kind != "adjustment":  # an adjustment's quantity is 1 of nothing
            total.quantity_micro += line.quantity_micro
    # earlier periods from their totals stored at close
    stored = PeriodTotalRow
    earlier_keys = (stored.consumer, stored.provider, stored.service)
    earlier_internal = stored.customer_class == "internal"
    for consumer, provider, service, amount in conn.execute(
        select(*earlier_keys, func.sum(stored.amount_minor))
        .where(stored.period == ctx.previous_period, earlier_internal)
        .group_by(*earlier_keys)
    ):
        slot(consumer, provider, service).previous_minor = int(amount)
    for by_service in totals.values():
        for total in by_service.values():
            total.year_to_date_minor = total.amount_minor
    # the fiscal year before this period
    for consumer, provider, service, amount in conn.execute(
        select(*earlier_keys, func.sum(stored.amount_minor))
        .where(stored.period >= ctx.year_start, stored.period < ctx.period, earlier_internal)
        .group_by(*earlier_keys)
    ):
        slot(consumer, provider, service).year_to_date_minor += int(amount)
    return totals


def sorted_totals(by_service: ByService) -> list[ServiceTotal]:
    return [by_service[key] for key in sorted(by_service)]


def bills(conn: Connection, ctx: DocumentContext, totals: Totals, usage: pl.DataFrame | None = None) -> Iterator[Bill]:
    """Every consumer's bill of the period, in consumer code order, streamed; `usage`:
    the period's priced usage lines (`period_lines`), when the caller has them."""
    if usage is None:
        usage = period_lines(conn, ctx.period)
    by_consumer = {
        key[0]: frame for key, frame in usage.partition_by("consumer", as_dict=True, maintain_order=True).items()
    }
    empty = usage.clear()
    del usage  # each consumer's part is its own
    rows = chain.from_iterable(
        plain_rows(
            conn,
            (
                select(Entry.consumer, *dates_as_stored(LINE_COLUMNS))
                .where(Entry.period == ctx.period)
                .order_by(*bytewise(conn, Entry.consumer, Entry.provider, Entry.service), Entry.service_date, Entry.id)
            ),
        )
    )
    # One object for each distinct day and repeated text (a line's kind, provider, service,
    # class and rate source): less memory, and each is pickled once for the workers.
    days: dict[object, dt.date] = {}
    texts: dict[str, str] = {}
    shared: dict[str | None, str | None] = {}
    known, one, one_or_none = days.get, texts.setdefault, shared.setdefault

    def day(raw: str | dt.date) -> dt.date:
        found = days[raw] = stored_date(raw)
        return found

    for consumer, group in groupby(rows, key=lambda row: row[0]):
        lines = [
            Line(
                entry,
                known(date) or day(date),
                known(service_date) or day(service_date),
                one(kind, kind),
                one(provider, provider),
                one(service, service),
                one(customer_class, customer_class),
                quantity,
                rate,
                amount,
                reference,
                memo,
                one_or_none(rate_source, rate_source),
            )
            for (
                _,
                entry,
                date,
                service_date,
                kind,
                provider,
                service,
                customer_class,
                quantity,
                rate,
                amount,
                reference,
                memo,
                rate_source,
            ) in group
        ]
        unit = ctx.units.get(consumer) or UnitInfo(
            consumer, consumer, "internal", None, None, None, None, None, None, None
        )
        yield Bill(unit, lines, sorted_totals(totals.get(consumer, {})), by_consumer.get(consumer, empty))


# the period's priced usage lines, columnar -------------------------------------------


def period_lines(conn: Connection, period: str) -> pl.DataFrame:
    """Every priced usage line of `period` (`charge_lines` with their usage line and
    their charge), one query read into one Polars frame, ordered by consumer, provider,
    service, charge and line (entries posted before charges have theirs backfilled by
    migration 0011)."""
    priced = (
        select(
            *dates_as_stored(
                (
                    ChargeLine.entry_id,
                    ChargeLine.usage_id,
                    Usage.date,
                    Entry.consumer,
                    Entry.provider,
                    Entry.service,
                    Entry.customer_class,
                    Usage.reference,
                    Usage.description,
                    Usage.quantity_micro,
                    ChargeLine.rate_micro,
                    ChargeLine.amount_minor,
                    Entry.rate_source,
                )
            )
        )
        .join_from(Usage, ChargeLine, ChargeLine.usage_id == Usage.id)
        .join(Entry, Entry.id == ChargeLine.entry_id)
        .where(Usage.period == period, Entry.period == period)
    )  # through the usage lines' index by period
    # dates come as ISO text from SQLite, as dates from PostgreSQL (`db.dates_as_stored`)
    schema = {**LINE_SCHEMA, "date": pl.String() if conn.dialect.name == "sqlite" else pl.Date()}
    as_date = [pl.col("date").str.slice(0, 10).str.to_date()] if conn.dialect.name == "sqlite" else []
    # each piece read is made final as it comes, then the pieces are linked, not copied
    # into one (the sort below makes the one frame): a million lines' frame, held twice
    # over while it was built, peaked 990 MB
    frames = [
        pl.DataFrame(chunk, schema=schema, orient="row").with_columns(as_date)
        for chunk in plain_rows(conn, priced)
        if chunk
    ]
    frame = pl.concat(frames, rechunk=False) if frames else pl.DataFrame(schema=schema).with_columns(as_date)
    del frames
    tiers = _tier_pieces(conn, period)
    if tiers.height:
        frame = frame.join(tiers, on="usage_id", how="left")
    else:  # no line priced over several tiers: not worth a copy of every line
        frame = frame.with_columns(pl.lit(None, tiers.schema["tiers"]).alias("tiers"))
    return frame.sort("consumer", "provider", "service", "entry", "date", "usage_id")


def _tier_pieces(conn: Connection, period: str) -> pl.DataFrame:
    """The tier pieces of the period's lines priced over several tiers, as one text a
    line (`usage_id`, `tiers`): "10 from 0 at 60; 5 from 10 at 50"."""
    pieces = (
        select(
            LineTier.usage_id, LineTier.piece, LineTier.tier_from_micro, LineTier.quantity_micro, LineTier.rate_micro
        )
        .join_from(Usage, LineTier, LineTier.usage_id == Usage.id)
        .join(ChargeLine, ChargeLine.usage_id == Usage.id)
        .where(Usage.period == period, ChargeLine.rate_micro.is_(None))
    )
    frames = [pl.DataFrame(chunk, schema=PIECE_COLUMNS, orient="row") for chunk in plain_rows(conn, pieces) if chunk]
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=PIECE_COLUMNS)
    text = pl.concat_str(
        decimal_text("quantity_micro", 6, trim=True),
        pl.lit(" from "),
        decimal_text("tier_from_micro", 6, trim=True),
        pl.lit(" at "),
        decimal_text("rate_micro", 6, trim=True),
    )
    return (
        frame.sort("usage_id", "piece")
        .group_by("usage_id", maintain_order=True)
        .agg(text.str.join("; ").alias("tiers"))
    )


def decimal_text(column: str | pl.Expr, digits: int, trim: bool = False) -> pl.Expr:
    """Integers in units of 10**-digits as decimal text, worked out in integers: `-12.30`
    (`money.format_amount`), or with `trim` without trailing zeros, `1.5`, `60`
    (`money.micro_text`)."""
    value = pl.col(column) if isinstance(column, str) else column
    if not digits:
        return value.cast(pl.String)
    whole = (value.abs() // 10**digits).cast(pl.String)
    fraction = (value.abs() % 10**digits).cast(pl.String).str.zfill(digits)
    if trim:
        fraction = fraction.str.strip_chars_end("0")
    sign = pl.when(value < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    point = pl.when(fraction.str.len_chars() > 0).then(pl.lit(".")).otherwise(pl.lit(""))
    return pl.when(value.is_null()).then(None).otherwise(pl.concat_str(sign, whole, point, fraction))


#: What makes a spreadsheet run a cell as a formula (`safe.FORMULA_STARTS`), after the
#: spaces `safe.neutralize` skips, as a regular expression.
_FORMULA_START = "^[  ]*[" + "".join(re.escape(c) for c in FORMULA_STARTS) + "]"


def neutralized(column: str) -> pl.Expr:
    """`safe.neutralize` over a text column."""
    value = pl.col(column)
    return pl.when(value.str.contains(_FORMULA_START)).then(pl.lit("'") + value).otherwise(value).alias(column)


#: `lines.csv`'s columns, in order.
LINES_HEADER = ["entry", "usage_id", "date", "service", "consumer", "reference", "quantity", "rate", "amount"]


def lines_csv(lines: pl.DataFrame, digits: int) -> pl.DataFrame:
    """`lines` as `lines.csv` has them: amounts with the currency's digits, quantities
    and rates as plain decimals (no rate: priced over several tiers), text from input
    neutralized."""
    return lines.select(
        "entry",
        "usage_id",
        pl.col("date").dt.to_string("%Y-%m-%d"),
        "service",
        "consumer",
        neutralized("reference"),
        decimal_text("quantity_micro", 6, trim=True).alias("quantity"),
        decimal_text("rate_micro", 6, trim=True).alias("rate"),
        decimal_text("amount_minor", digits).alias("amount"),
    )


def write_lines_csv(lines: pl.DataFrame, digits: int, path: Path, rows: int = 100_000) -> None:
    """`lines.csv`: every priced line of the period with its charge, by charge and line,
    for auditors' sampling, formatted and written `rows` lines at a time (a million
    lines formatted at once peaked 150 MB higher)."""
    order = lines.select(pl.arg_sort_by("entry", "usage_id")).to_series()  # the lines are not sorted whole
    with open(path, "w", encoding="utf-8", newline="") as handle:
        for start in range(0, max(lines.height, 1), rows):
            lines_csv(lines.select(pl.all().gather(order.slice(start, rows))), digits).write_csv(
                handle, include_header=start == 0, line_terminator="\n", null_value="", quote_style="necessary"
            )
