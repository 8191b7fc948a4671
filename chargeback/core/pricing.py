"""Pricing: which rate applies to a usage line, and what the line costs.

Pure functions over plain values (Decimal, dates, codes), so they can be tested and
property-tested without a database. The rate is the one whose customer class matches
the consumer's kind and whose date range holds the usage date; the amount is
quantity x rate rounded once, half away from zero, to the currency's minor unit.

Graduated tiers: rate rows of one service and class in force on the same date with
different `tier_from` form a schedule. Within a period, per (service, consumer), the
lines' quantities accumulate in order of date then reference; the part of a line above
a threshold is priced at that tier's rate (`tier_pieces`), and the line's amount is the
sum of its pieces rounded once (`price_tiered`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from chargeback.core.money import quantize


@dataclass(frozen=True)
class RateRow:
    """One row of `rates.csv`."""

    service: str
    customer_class: str
    effective_from: dt.date
    effective_to: dt.date | None
    rate: Decimal
    tier_from: Decimal = Decimal(0)

    def holds(self, day: dt.date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day <= self.effective_to)

    @property
    def provenance(self) -> str:
        """How a charge names the rate that priced it."""
        text = f"{self.service}/{self.customer_class}/{self.effective_from.isoformat()}"
        return text + (f"/tier {self.tier_from}" if self.tier_from else "")


class RateTable:
    """All rates of a book, indexed for lookups by (service, class, date)."""

    def __init__(self, rows: Iterable[RateRow]) -> None:
        self._by_key: dict[tuple[str, str], list[RateRow]] = defaultdict(list)
        for row in rows:
            self._by_key[(row.service, row.customer_class)].append(row)
        for rows_of_key in self._by_key.values():
            rows_of_key.sort(key=lambda r: (r.effective_from, r.tier_from))
        #: Services with graduated tiers (a row above tier 0 for any class and date).
        self.tiered = frozenset(r.service for rs in self._by_key.values() for r in rs if r.tier_from)
        self._cache: dict[tuple[str, str, dt.date], tuple[RateRow, ...]] = {}

    def rows(self) -> list[RateRow]:
        """Every rate row, by service, class, date and tier."""
        return [row for key in sorted(self._by_key) for row in self._by_key[key]]

    def tiers(self, service: str, customer_class: str, day: dt.date) -> tuple[RateRow, ...]:
        """The rate rows in force on `day`, by ascending `tier_from` (empty when none)."""
        key = (service, customer_class, day)
        found = self._cache.get(key)
        if found is None:
            rows = [r for r in self._by_key.get((service, customer_class), ()) if r.holds(day)]
            found = tuple(sorted(rows, key=lambda r: r.tier_from))
            self._cache[key] = found
        return found

    def find(self, service: str, customer_class: str, day: dt.date) -> RateRow | None:
        """The base rate (the lowest tier) in force on `day`, or None."""
        rows = self.tiers(service, customer_class, day)
        return rows[0] if rows else None

    def latest(self, service: str, customer_class: str, day: dt.date) -> RateRow | None:
        """The base rate in force on `day`, else the base rate that started last before it."""
        found = self.find(service, customer_class, day)
        if found is not None:
            return found
        earlier = [
            r for r in self._by_key.get((service, customer_class), ()) if r.effective_from <= day and r.tier_from == 0
        ]
        return max(earlier, key=lambda r: r.effective_from) if earlier else None


@dataclass(frozen=True)
class TierPiece:
    """The part of a line priced at one tier: `quantity` (negative for a credit) at
    the rate of `tier`."""

    tier: RateRow
    quantity: Decimal

    @property
    def text(self) -> str:
        """`FROM:QUANTITY@RATE`, as a charge's rate source lists its pieces."""
        return f"{plain(self.tier.tier_from)}:{plain(self.quantity)}@{plain(self.tier.rate)}"


@dataclass(frozen=True)
class TieredPrice:
    """A line priced over a tier schedule: its pieces and their sum, rounded once."""

    amount: Decimal
    pieces: tuple[TierPiece, ...]

    @property
    def rate_source(self) -> str:
        """`SERVICE/CLASS/FROM tiers 0:100@60, 100:20@50`: the schedule that priced
        the line and each piece as tier threshold, quantity and rate."""
        base = self.pieces[0].tier
        head = f"{base.service}/{base.customer_class}/{base.effective_from.isoformat()} tiers "
        return head + ", ".join(piece.text for piece in self.pieces)


def plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros: `100`, `0.5`, `60.125`."""
    text = format(value.normalize(), "f")
    return text if value != 0 else "0"


def tier_pieces(start: Decimal, quantity: Decimal, tiers: Sequence[RateRow]) -> tuple[TierPiece, ...]:
    """Split a line that moves the accumulated quantity from `start` to
    `start + quantity` over a tier schedule (rows by ascending `tier_from`).

    Tier i covers [tier_from_i, tier_from_i+1); the lowest tier also covers anything
    below its threshold. A credit (negative quantity) takes its pieces off the top,
    highest tier first. The pieces' quantities sum to `quantity` exactly."""
    if not tiers:
        raise ValueError("no tier schedule")
    low, high = sorted((start, start + quantity))
    pieces = []
    for index, tier in enumerate(tiers):
        lower = low if index == 0 else max(low, tier.tier_from)
        upper = high if index + 1 == len(tiers) else min(high, tiers[index + 1].tier_from)
        if upper > lower:
            pieces.append(TierPiece(tier, upper - lower if quantity > 0 else lower - upper))
    if quantity < 0:
        pieces.reverse()
    return tuple(pieces)


def price_tiered(
    lines: Iterable[tuple[Decimal, Sequence[RateRow]]], digits: int, start: Decimal = Decimal(0)
) -> Iterator[TieredPrice]:
    """Price lines of one (service, consumer) in one period, in order (date, then
    reference), each with the tier schedule in force on its date.

    `start` is the quantity already accumulated before the first line (what was posted
    in the period before a reopen). Each line's amount is the sum of its pieces,
    rounded once to `digits`."""
    accumulated = start
    for quantity, tiers in lines:
        pieces = tier_pieces(accumulated, quantity, tiers)
        exact = sum((piece.quantity * piece.tier.rate for piece in pieces), Decimal(0))
        accumulated += quantity
        yield TieredPrice(quantize(exact, digits), pieces)


def overlapping(rows: Iterable[RateRow]) -> list[tuple[RateRow, RateRow]]:
    """Pairs of rows of one (service, class, tier_from) whose date ranges overlap."""
    groups: dict[tuple[str, str, Decimal], list[RateRow]] = defaultdict(list)
    for row in rows:
        groups[(row.service, row.customer_class, row.tier_from)].append(row)
    clashes = []
    for group in groups.values():
        group.sort(key=lambda r: r.effective_from)
        for earlier, later in zip(group, group[1:], strict=False):
            if earlier.effective_to is None or later.effective_from <= earlier.effective_to:
                clashes.append((earlier, later))
    return clashes


def without_base_tier(rows: Iterable[RateRow]) -> list[RateRow]:
    """Rows above tier 0 whose date range is not covered by tier-0 rows of their
    (service, class): such a schedule would leave the first quantities unpriced."""
    rows = list(rows)
    bases: dict[tuple[str, str], list[RateRow]] = defaultdict(list)
    for row in rows:
        if row.tier_from == 0:
            bases[(row.service, row.customer_class)].append(row)
    missing = []
    for row in rows:
        if row.tier_from == 0:
            continue
        cursor: dt.date | None = row.effective_from
        for base in sorted(bases[(row.service, row.customer_class)], key=lambda r: r.effective_from):
            if cursor is None or (row.effective_to is not None and cursor > row.effective_to):
                break
            if base.holds(cursor):
                cursor = None if base.effective_to is None else base.effective_to + dt.timedelta(days=1)
        if cursor is not None and (row.effective_to is None or cursor <= row.effective_to):
            missing.append(row)
    return missing


#: Bounds of the lowest and highest tier: beyond any accumulated quantity in millionths.
_BELOW, _ABOVE = -(10**30), 10**30


class Unpriced(Exception):
    """A usage line with no rate in force on its date for its consumer's class."""

    def __init__(self, usage_id: int) -> None:
        super().__init__(usage_id)
        self.usage_id = usage_id


def rate_frame(table: RateTable) -> pl.DataFrame:
    """The book's rate rows as columns, with each row's provenance."""
    rows = [
        (
            r.service,
            r.customer_class,
            r.effective_from,
            r.effective_to,
            int(r.rate * 10**6),
            int(r.tier_from * 10**6),
            r.provenance,
            f"{r.service}/{r.customer_class}/{r.effective_from.isoformat()}",
            f"{plain(r.tier_from)}@{plain(r.rate)}",
        )
        for r in table.rows()
    ]
    return pl.DataFrame(rows, schema=RATE_COLUMNS, orient="row")


RATE_COLUMNS = {
    "service": pl.String,
    "customer_class": pl.String,
    "effective_from": pl.Date,
    "effective_to": pl.Date,
    "rate_micro": pl.Int64,
    "tier_from_micro": pl.Int64,
    "provenance": pl.String,
    "schedule": pl.String,
    "tier_text": pl.String,
}
#: A tiered charge's rate source longer than this names its schedule only.
RATE_SOURCE_LENGTH = 200
#: The usage lines `price_lines` takes: one row a line, `customer_class` the consumer's.
LINE_COLUMNS = {
    "usage_id": pl.Int64,
    "date": pl.Date,
    "service": pl.String,
    "consumer": pl.String,
    "customer_class": pl.String,
    "quantity_micro": pl.Int64,
    "reference": pl.String,
}
#: A line's tier pieces, as `price_lines` gives them and `line_tiers` stores them: one row a
#: piece, numbered from 0 within its line.
PIECE_COLUMNS = {
    "usage_id": pl.Int64,
    "piece": pl.Int64,
    "tier_from_micro": pl.Int64,
    "quantity_micro": pl.Int64,
    "rate_micro": pl.Int64,
}


def latest_rates(frame: pl.DataFrame, rates: pl.DataFrame, class_column: str) -> pl.DataFrame:
    """`frame` sorted by `date`, each row with the columns of the rate of its `service`
    and class (`class_column`) that started last on or before its date, nulls where none
    has; whether that rate had ended by then (`effective_to`) is the caller's to check.
    `rates` must be sorted by `effective_from`."""
    return frame.sort("date").join_asof(
        rates,
        left_on="date",
        right_on="effective_from",
        by=["service", class_column],
        strategy="backward",
        check_sortedness=False,
    )


def rounded_minor(exact: pl.Expr, digits: int) -> pl.Expr:
    """An exact amount in millionths of millionths (quantity x rate, both in millionths)
    as minor units of a currency of `digits`, rounded half away from zero: the rule of
    `money.quantize`, over a whole column in 128-bit integers."""
    divisor: int = 10 ** (12 - digits)
    return (exact.abs() + divisor // 2) // divisor * exact.sign()


def price_lines(
    lines: pl.DataFrame, rates: pl.DataFrame, tiered: frozenset[str], started: pl.DataFrame, digits: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Price usage lines (`LINE_COLUMNS`) over whole columns.

    A line of a service without tiers takes the base rate in force on its date (an as-of
    join by service and class). Lines of tiered services accumulate per (service,
    consumer) in order of date then reference (plain character order), from the quantity
    `started` holds for the pair (columns service, consumer, quantity_micro: what is
    posted in the period already); each is split into tier pieces over the schedule in
    force on its date (`tier_pieces`' rule) and its amount is their sum rounded once.

    Returns (priced, pieces). `priced` is `lines` with `amount_minor`, `rate_micro` (null
    for a line priced over several tiers), `price` (what makes a charge: the rate row's
    or the schedule's provenances) and `rate_source`. `pieces` has the tier pieces of the
    tiered lines: usage_id, piece, tier_from_micro, quantity_micro, rate_micro.
    Raises `Unpriced` naming the first line (by id) with no rate."""
    flat = lines.filter(~pl.col("service").is_in(list(tiered)))
    base = rates.filter(pl.col("tier_from_micro") == 0).sort("effective_from")
    flat = latest_rates(flat, base.drop("tier_from_micro"), "customer_class").with_columns(
        pl.when(pl.col("effective_to").is_null() | (pl.col("date") <= pl.col("effective_to")))
        .then(pl.col("rate_micro"))
        .alias("rate_micro")
    )
    _refuse_unpriced(flat.filter(pl.col("rate_micro").is_null()))
    flat = flat.with_columns(
        amount_minor=rounded_minor(pl.col("quantity_micro").cast(pl.Int128) * pl.col("rate_micro"), digits),
        price=pl.col("provenance"),
        rate_source=pl.col("provenance"),
    )
    steps, pieces = _price_tiered(lines.filter(pl.col("service").is_in(list(tiered))), rates, started, digits)
    columns = [*LINE_COLUMNS, "amount_minor", "rate_micro", "price", "rate_source"]
    priced = pl.concat([flat.select(columns), steps.select(columns)], how="vertical_relaxed")
    return priced.sort("usage_id"), pieces


def _refuse_unpriced(missing: pl.DataFrame) -> None:
    if missing.height:
        raise Unpriced(int(missing.select(pl.col("usage_id").min()).item()))


def _price_tiered(
    lines: pl.DataFrame, rates: pl.DataFrame, started: pl.DataFrame, digits: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    if not lines.height:
        empty = lines.with_columns(
            amount_minor=pl.lit(None, pl.Int128),
            rate_micro=pl.lit(None, pl.Int64),
            price=pl.lit(None, pl.String),
            rate_source=pl.lit(None, pl.String),
        )
        return empty, pl.DataFrame(schema=PIECE_COLUMNS)
    wide = pl.Int128
    ordered = (
        lines.sort(["service", "consumer", "date", "reference"])
        .join(started, on=["service", "consumer"], how="left", suffix="_started")
        .with_columns(
            after=pl.col("quantity_micro_started").fill_null(0).cast(wide)
            + pl.col("quantity_micro").cast(wide).cum_sum().over(["service", "consumer"])
        )
        .with_columns(before=pl.col("after") - pl.col("quantity_micro"))
        .drop("quantity_micro_started")
    )
    schedule = (
        ordered.select("usage_id", "service", "customer_class", "date")
        .join(rates, on=["service", "customer_class"])
        .filter(
            (pl.col("effective_from") <= pl.col("date"))
            & (pl.col("effective_to").is_null() | (pl.col("date") <= pl.col("effective_to")))
        )
        .sort(["usage_id", "tier_from_micro"])
        .with_columns(
            low=pl.when(pl.col("tier_from_micro") == pl.col("tier_from_micro").min().over("usage_id"))
            .then(pl.lit(_BELOW, wide))
            .otherwise(pl.col("tier_from_micro").cast(wide)),
            high=pl.col("tier_from_micro").shift(-1).over("usage_id").cast(wide).fill_null(_ABOVE),
        )
    )
    names = schedule.group_by("usage_id").agg(
        price=pl.col("provenance").str.join("|"),
        rate_source=pl.col("schedule").first() + " tiers " + pl.col("tier_text").str.join(", "),
        schedule=pl.col("schedule").first(),
    )
    names = names.with_columns(
        rate_source=pl.when(pl.col("rate_source").str.len_chars() <= RATE_SOURCE_LENGTH)
        .then(pl.col("rate_source"))
        .otherwise(pl.col("schedule") + " tiers (see line_tiers)")
    )
    _refuse_unpriced(ordered.join(names, on="usage_id", how="anti"))
    low_end = pl.min_horizontal("before", "after")
    high_end = pl.max_horizontal("before", "after")
    cut = (
        schedule.select("usage_id", "tier_from_micro", "rate_micro", "low", "high")
        .join(ordered.select("usage_id", "before", "after", "quantity_micro"), on="usage_id")
        .with_columns(span=(pl.min_horizontal(high_end, "high") - pl.max_horizontal(low_end, "low")))
        .filter(pl.col("span") > 0)
        .with_columns(
            part=pl.when(pl.col("quantity_micro") > 0)
            .then(pl.col("span"))
            .otherwise(pl.lit(0, pl.Int128) - pl.col("span"))
        )
        .sort(["usage_id", "tier_from_micro"])
        .with_columns(
            piece=pl.when(pl.col("quantity_micro") > 0)
            .then(pl.int_range(1, pl.len() + 1).over("usage_id"))
            .otherwise(pl.int_range(pl.len(), 0, -1).over("usage_id"))
        )
    )
    per_line = cut.group_by("usage_id").agg(
        exact=(pl.col("part") * pl.col("rate_micro")).sum(), count=pl.len(), rate_micro=pl.col("rate_micro").first()
    )
    priced = (
        ordered.join(per_line, on="usage_id", how="left")
        .join(names, on="usage_id")
        .with_columns(
            amount_minor=rounded_minor(pl.col("exact").fill_null(0), digits),
            rate_micro=pl.when(pl.col("count") == 1).then(pl.col("rate_micro")),
        )
    )
    pieces = cut.select(
        "usage_id", "piece", "tier_from_micro", pl.col("part").cast(pl.Int64).alias("quantity_micro"), "rate_micro"
    ).sort(["usage_id", "piece"])
    return priced, pieces
