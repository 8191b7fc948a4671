"""The lines of a usage file checked a whole column at a time, with Polars expressions:
no Python loop per line. Each check gives the lines that pass and a frame of problems
(line, column, message), with the messages a line at a time gave (contract section 3).

Quantities become integer millionths from their decimal text, with integer string
arithmetic, never through a float; amounts are worked out in 128-bit integers and
rounded half away from zero, as `money.minor_of_product` rounds them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
from sqlalchemy import Connection, select

from chargeback.book.snapshot import Reference
from chargeback.core.calendar import period_bounds
from chargeback.core.money import LIMIT, MICRO_SQUARED, QUANTITY_PLACES, from_micro
from chargeback.core.pricing import latest_rates
from chargeback.ingest.tabular import Columns, stripped
from chargeback.store.schema import Rate

USAGE = Columns(("date", "service", "consumer", "quantity", "reference"), ("description",))
MAX_REFERENCE = 100
MAX_DESCRIPTION = 2000

#: Lines worked on at a time where a step makes 128-bit columns of every line.
SLICE = 1 << 20

PROBLEMS = {"line": pl.Int64, "column": pl.String, "message": pl.String}
CODE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"
ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
#: A plain decimal: ASCII digits, one optional '.', an optional sign.
PLAIN = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]*)$"
#: Texts whose `repr` is the text between single quotes: printable ASCII but ' and \.
SIMPLY_QUOTED = r"^[ -&(-\[\]-~]*$"
#: The most digits of a quantity's whole part: it is below 10^12 (`money.LIMIT`).
WHOLE_DIGITS = len(str(int(LIMIT))) - 1

MESSAGES = {
    "blank": "is required and is blank",
    "date": " is not a date: write it as YYYY-MM-DD",
    "code": " is not a valid code: 1-32 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit",
    "plain": " is not a plain decimal number (digits with '.' as the separator)",
    "nan": " is not a number",
    "places": f" has more than {QUANTITY_PLACES} decimal places",
    "large": " is too large (the limit is 10^12)",
    "zero": "must not be zero",
    "nul": "contains a NUL character",
    "long reference": f"is longer than {MAX_REFERENCE} characters",
    "long description": f"is longer than {MAX_DESCRIPTION} characters",
}


def _quoted(text: pl.Expr) -> pl.Expr:
    """`repr()` of each text, as the messages quote a cell: worked out by Polars for plain
    ASCII, by Python for the few texts that need escapes or other quotes (only cells in
    problems are quoted)."""
    return (
        pl.when(text.str.contains(SIMPLY_QUOTED))
        .then(pl.lit("'") + text + pl.lit("'"))
        .otherwise(text.map_elements(repr, return_dtype=pl.String))
    )


def _problems(frame: pl.DataFrame, column: str, message: pl.Expr) -> pl.DataFrame:
    return frame.select(pl.col("line"), pl.lit(column).alias("column"), message.alias("message"))


def checked_cells(table: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each cell checked on its own: the lines whose cells are all valid, typed (`date`,
    `date_text`, `service`, `consumer`, `quantity_micro`, `reference`, `description`,
    null when blank), and the problems of the others."""
    # a step at a time: each part worked out once, then judged
    text = table.select(
        "line", *stripped(table, USAGE.all), **{f"raw {c}": pl.col(c) for c in ("reference", "description")}
    )
    # a sign more is not PLAIN, so taking off every sign only ever reads a quantity judged plain
    text = text.with_columns(
        pl.col("date").str.to_date("%Y-%m-%d", strict=False).alias("day"),
        pl.col("quantity").str.strip_chars_start("+-").alias("body"),
    )
    text = text.with_columns(
        pl.col("body").str.split_exact(".", 1).struct.rename_fields(["whole", "fraction"]).alias("parts")
    ).unnest("parts")
    text = text.with_columns(pl.col("whole").str.strip_chars_start("0"), pl.col("fraction").fill_null(""))
    whole, fraction, quantity = pl.col("whole"), pl.col("fraction"), pl.col("quantity")
    whole_micro = pl.when(whole.str.len_bytes() <= WHOLE_DIGITS).then(whole.cast(pl.Int64, strict=False)).fill_null(0)
    micro = whole_micro * 10**QUANTITY_PLACES + fraction.str.slice(0, QUANTITY_PLACES).str.pad_end(
        QUANTITY_PLACES, "0"
    ).cast(pl.Int64, strict=False)
    text = text.with_columns(pl.when(quantity.str.starts_with("-")).then(-micro).otherwise(micro).alias("micro"))
    blank = {c: pl.col(c) == "" for c in USAGE.all}
    day = pl.col("day")
    date_kind = (
        pl.when(blank["date"])
        .then(pl.lit("blank"))
        .when(~pl.col("date").str.contains(ISO_DATE) | day.is_null() | (day.dt.year() < 1))
        .then(pl.lit("date"))
    )

    def code_kind(column: str) -> pl.Expr:
        return (
            pl.when(blank[column]).then(pl.lit("blank")).when(~pl.col(column).str.contains(CODE)).then(pl.lit("code"))
        )

    quantity_kind = (
        pl.when(blank["quantity"])
        .then(pl.lit("blank"))
        .when(~quantity.str.contains(PLAIN))
        .then(pl.lit("plain"))
        .when(pl.col("body") == ".")
        .then(pl.lit("nan"))
        .when(fraction.str.slice(QUANTITY_PLACES).str.contains("[1-9]"))
        .then(pl.lit("places"))
        .when(whole.str.len_bytes() > WHOLE_DIGITS)
        .then(pl.lit("large"))
        .when(pl.col("micro") == 0)
        .then(pl.lit("zero"))
    )

    def text_kind(column: str, longest: int, required: bool) -> pl.Expr:
        kind = pl.when(blank[column]).then(pl.lit("blank" if required else None, dtype=pl.String))
        return (
            kind.when(pl.col(f"raw {column}").str.contains("\x00", literal=True))
            .then(pl.lit("nul"))
            .when(pl.col(column).str.len_chars() > longest)
            .then(pl.lit(f"long {column}"))
        )

    kinds = {
        "date": date_kind,
        "service": code_kind("service"),
        "consumer": code_kind("consumer"),
        "quantity": quantity_kind,
        "reference": text_kind("reference", MAX_REFERENCE, True),
        "description": text_kind("description", MAX_DESCRIPTION, False),
    }
    judged = text.with_columns(**{f"kind {c}": kind for c, kind in kinds.items()})
    ok = pl.all_horizontal([pl.col(f"kind {c}").is_null() for c in kinds])
    lines = judged.filter(ok).select(
        "line",
        day.alias("date"),
        pl.col("date").alias("date_text"),
        "service",
        "consumer",
        pl.col("micro").alias("quantity_micro"),
        "reference",
        pl.when(blank["description"]).then(None).otherwise(pl.col("description")).alias("description"),
    )
    bad = judged.filter(~ok)
    found = pl.concat(
        [
            bad.filter(pl.col(f"kind {c}").is_not_null()).select(
                "line", pl.lit(c).alias("column"), pl.col(f"kind {c}").alias("kind"), pl.col(c).alias("text")
            )
            for c in kinds
        ]
    )
    found = found.with_columns(_quoted(pl.col("text")).alias("quoted"))
    kind, cell = pl.col("kind"), pl.col("quoted")
    said = pl.lit(None, dtype=pl.String)
    for name, message in MESSAGES.items():
        if message.startswith(" "):
            prefix = pl.lit("quantity ") if name in ("plain", "nan", "places", "large") else pl.lit("")
            said = pl.when(kind == name).then(prefix + cell + pl.lit(message)).otherwise(said)
        else:
            said = pl.when(kind == name).then(pl.lit(message)).otherwise(said)
    return lines, found.select("line", "column", said.alias("message"))


@dataclass(frozen=True)
class Book:
    """What the checks need of the book, as frames: services with their provider, units
    with their class and active dates (as text too, for the messages), the base rate of
    each (service, class) from each date, and the period's first and last day."""

    period: str
    first_day: dt.date
    last_day: dt.date
    digits: int
    currency: str
    services: pl.DataFrame
    units: pl.DataFrame
    rates: pl.DataFrame

    @classmethod
    def of(cls, conn: Connection, reference: Reference, period: str) -> Book:
        """The book of `reference`, and its base rates (tier 0: a tier above it is never
        in force without one) read from the database."""
        services = pl.DataFrame(
            [(s.code, s.provider) for s in reference.services.values()],
            schema={"service": pl.String, "provider": pl.String},
            orient="row",
        )
        units = pl.DataFrame(
            [
                (u.code, u.kind, u.active_from, u.active_to, f"{_iso(u.active_from)} to {_iso(u.active_to)}")
                for u in reference.units.values()
            ],
            schema={
                "consumer": pl.String,
                "kind": pl.String,
                "active_from": pl.Date,
                "active_to": pl.Date,
                "active": pl.String,
            },
            orient="row",
        )
        rows = conn.execute(
            select(Rate.service, Rate.customer_class, Rate.effective_from, Rate.effective_to, Rate.rate_micro).where(
                Rate.tier_from_micro == 0
            )
        ).all()
        rates = pl.DataFrame(
            [(*row, str(from_micro(row.rate_micro))) for row in rows],
            schema={
                "service": pl.String,
                "kind": pl.String,
                "effective_from": pl.Date,
                "effective_to": pl.Date,
                "rate_micro": pl.Int64,
                "rate_text": pl.String,
            },
            orient="row",
        )
        first_day, last_day = period_bounds(period)
        return cls(
            period,
            first_day,
            last_day,
            reference.digits,
            reference.currency,
            services,
            units,
            rates.sort("effective_from"),
        )


def _iso(day: dt.date | None) -> str:
    return day.isoformat() if day else "..."


def against_book(lines: pl.DataFrame, book: Book) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The lines checked against the book: in the period or before it (a late charge),
    a known service and consumer, no self-charging, in the consumer's active dates, a
    rate in force on the line's date, and a charge that fits the journal. Returns the
    lines that pass, with their `provider` and `rate_micro`, and the problems.

    The book is joined to the four columns it checks, row for row (each join finds at
    most one row), and the lines take the two columns they keep from it: joining the
    whole lines copied every column of ten million lines twice over."""
    keys = ("service", "consumer", "date", "quantity_micro")
    known = (
        lines.select(keys)
        .join(book.services, on="service", how="left", maintain_order="left")
        .join(book.units, on="consumer", how="left", maintain_order="left")
    )
    both = pl.col("provider").is_not_null() & pl.col("kind").is_not_null()
    date = pl.col("date")
    inactive = both & (
        (pl.col("active_from").is_not_null() & (date < pl.col("active_from")))
        | (pl.col("active_to").is_not_null() & (date > pl.col("active_to")))
    )
    known = known.with_columns(inactive.alias("inactive"))
    priced = both & ~pl.col("inactive")
    days = (
        latest_rates(known.filter(priced).select("service", "kind", "date").unique(), book.rates, "kind")
        .filter(pl.col("effective_to").is_null() | (pl.col("date") <= pl.col("effective_to")))
        .select("service", "kind", "date", "rate_micro", "rate_text")
    )
    checked = known.join(days, on=["service", "kind", "date"], how="left", maintain_order="left")
    rate = pl.col("rate_micro")
    charge = pl.col("quantity_micro").abs().cast(pl.Int128) * rate.cast(pl.Int128)
    checked = checked.with_columns(
        after=date > book.last_day,
        no_service=pl.col("provider").is_null(),
        no_consumer=pl.col("kind").is_null(),
        self_charge=both & (pl.col("consumer") == pl.col("provider")),
        no_rate=priced & rate.is_null(),
        too_large=priced & rate.is_not_null() & (charge >= pl.lit(int(LIMIT) * MICRO_SQUARED, dtype=pl.Int128)),
    )
    flags = ["after", "no_service", "no_consumer", "self_charge", "inactive", "no_rate", "too_large"]
    ok = checked.select(~pl.any_horizontal(flags)).to_series()
    bad = pl.concat([lines, checked.drop(keys)], how="horizontal").filter(~ok)
    text, service, consumer = pl.col("date_text"), pl.col("service"), pl.col("consumer")
    found = pl.concat(
        [
            _problems(
                bad.filter("after"),
                "date",
                text + pl.lit(f" is after the end of period {book.period}: import it into its own period"),
            ),
            _problems(
                bad.filter("no_service"), "service", pl.lit("'") + service + pl.lit("' is not a service of the book")
            ),
            _problems(
                bad.filter("no_consumer"), "consumer", pl.lit("'") + consumer + pl.lit("' is not a unit of the book")
            ),
            _problems(
                bad.filter("self_charge"),
                "consumer",
                pl.lit("'") + consumer + pl.lit("' provides ") + service + pl.lit(": a unit cannot charge itself"),
            ),
            _problems(
                bad.filter("inactive"),
                "date",
                text
                + pl.lit(" is outside the active dates of ")
                + consumer
                + pl.lit(" (")
                + pl.col("active")
                + pl.lit(")"),
            ),
            _problems(
                bad.filter("no_rate"),
                "service",
                pl.lit("no ")
                + pl.col("kind")
                + pl.lit(" rate of ")
                + service
                + pl.lit(" is in force on ")
                + text
                + pl.lit(": add one to rates.csv"),
            ),
            _problems(
                bad.filter("too_large"),
                "quantity",
                _micro_text(pl.col("quantity_micro"))
                + pl.lit(" x the rate ")
                + pl.col("rate_text")
                + pl.lit(" is too large for one charge line (the limit is 10^12)"),
            ),
        ]
    )
    passed = lines.with_columns(checked["provider"], checked["rate_micro"])
    return (passed.filter(ok) if bad.height else passed), found


def _micro_text(micro: pl.Expr) -> pl.Expr:
    """Integer millionths as `str(from_micro(...))` writes them: `1.5`, `60`, `-0.25`."""
    part = (micro.abs() % 10**6).cast(pl.String).str.pad_start(6, "0").str.strip_chars_end("0")
    whole = (micro.abs() // 10**6).cast(pl.String)
    sign = pl.when(micro < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return sign + whole + pl.when(part == "").then(pl.lit("")).otherwise(pl.lit(".") + part)


def new_lines(
    lines: pl.DataFrame, stored: Callable[[pl.DataFrame], pl.DataFrame]
) -> tuple[pl.DataFrame, int, pl.DataFrame]:
    """The lines to store: a (service, reference) met again, in the file or among the
    lines `stored` before (given the file's keys, it returns theirs), is a duplicate
    when its date, consumer and quantity are the same, a problem when not. Returns the
    new lines, the number of duplicates and the problems."""
    key = ["service", "reference"]
    first = _first_of_key(lines, key)  # in the file's order
    # a file without repeats (the usual one) is not copied: a copy is its size again
    firsts = lines if first.all() else lines.filter(first)
    again = lines.filter(~first)
    # only the first lines of the keys met again are joined: a join keeps a table of its other side
    met = firsts.join(again.select(key).unique(), on=key, how="semi") if again.height else firsts.clear()
    repeats = again.join(
        met.select(
            *key, first_line="line", first_date="date", first_consumer="consumer", first_quantity="quantity_micro"
        ),
        on=key,
        how="left",
        maintain_order="left",
    )
    same = (
        (pl.col("date") == pl.col("first_date"))
        & (pl.col("consumer") == pl.col("first_consumer"))
        & (pl.col("quantity_micro") == pl.col("first_quantity"))
    )
    repeats = repeats.with_columns(same.alias("same"))
    earlier = stored(firsts.select(key))
    if not earlier.height:  # nothing of the file stored before (a new month's file, a new book)
        return firsts, int(repeats["same"].sum()), _repeated(repeats)
    before = firsts.join(earlier, on=key, how="left", maintain_order="left")
    known = pl.col("stored_quantity").is_not_null()
    same_stored = (
        (pl.col("date") == pl.col("stored_date"))
        & (pl.col("consumer") == pl.col("stored_consumer"))
        & (pl.col("quantity_micro") == pl.col("stored_quantity"))
    )
    before = before.with_columns(known.alias("known"), (known & same_stored).alias("same"))
    duplicates = int(repeats["same"].sum()) + int(before["same"].sum())
    reference = _quoted(pl.col("reference")) + pl.lit(" of ") + pl.col("service")
    found = pl.concat(
        [
            _repeated(repeats),
            _problems(
                before.filter(pl.col("known") & ~pl.col("same")),
                "reference",
                reference
                + pl.lit(
                    " was imported before with another date, consumer or quantity: give the correction a new reference"
                ),
            ),
        ]
    )
    fresh = before.filter(~pl.col("known")).drop("stored_date", "stored_consumer", "stored_quantity", "known", "same")
    return fresh, int(duplicates), found


def _first_of_key(lines: pl.DataFrame, key: list[str]) -> pl.Series:
    """Whether each line is the first of its `key` in the file's order. The keys' hashes,
    sorted, show the few that may repeat (a repeated key, or two keys of one hash); only
    the lines of those are compared whole. Telling apart ten million keys whole took a
    table of them over a gigabyte; their sorted hashes are 80 MB."""
    hashed = lines.select(pl.struct(key).hash()).to_series()
    ordered = hashed.sort()
    twice = ordered.filter(ordered == ordered.shift(1)).unique()
    del ordered
    maybe = hashed.is_in(twice.implode())
    if not maybe.any():
        return ~maybe
    compared = lines.filter(maybe).select(pl.struct(key).is_first_distinct()).to_series()
    return (~maybe).scatter(maybe.arg_true(), compared)


def _repeated(repeats: pl.DataFrame) -> pl.DataFrame:
    """The problems of a (service, reference) met again in the file with other values."""
    return _problems(
        repeats.filter(~pl.col("same")),
        "reference",
        _quoted(pl.col("reference"))
        + pl.lit(" of ")
        + pl.col("service")
        + pl.lit(" is also on line ")
        + pl.col("first_line").cast(pl.String)
        + pl.lit(" with other values"),
    )


@dataclass(frozen=True)
class Sums:
    """What the new lines add up to: each provider's amount in minor units, priced at
    the base rate as the close will price them, the late lines and the credits."""

    by_provider: dict[str, int]
    late: int
    credits: int


def sums(lines: pl.DataFrame, book: Book) -> Sums:
    """quantity x rate rounded half away from zero to the currency's minor unit a line,
    in 128-bit integers (the product of two millionths may pass 2^63), added up by
    provider."""
    product = (
        pl.col("quantity_micro").cast(pl.Int128)
        * pl.col("rate_micro").cast(pl.Int128)
        * pl.lit(10**book.digits, dtype=pl.Int128)
    )
    scale = pl.lit(MICRO_SQUARED, dtype=pl.Int128)
    whole = product.abs() // scale
    rounded = whole + (2 * (product.abs() % scale) >= scale).cast(pl.Int128)
    amount = pl.when(product < 0).then(pl.lit(0, dtype=pl.Int128) - rounded).otherwise(rounded)
    totals = (
        pl.concat(
            [part.group_by("provider").agg(amount.sum().alias("amount")) for part in lines.iter_slices(SLICE)]
            or [pl.DataFrame(schema={"provider": pl.String, "amount": pl.Int128})]
        )
        .group_by("provider")
        .agg(pl.col("amount").sum())
        .sort("provider")
    )  # a slice at a time: each 128-bit step over ten million lines is 160 MB
    return Sums(
        {p: int(a) for p, a in totals.iter_rows()},
        int(lines.select((pl.col("date") < book.first_day).sum()).item()),
        int(lines.select((pl.col("quantity_micro") < 0).sum()).item()),
    )


def beyond_one_charge(fresh: pl.DataFrame, started: pl.DataFrame, book: Book) -> pl.DataFrame:
    """The first line, per (service, consumer), at which the period's usage of the pair
    (the lines stored before, `started`, then the file's in its order) passes what one
    charge can post: 10^12 in quantity, or 10^12 of the currency at the base rate. A
    period that could not be posted would stay open for ever (usage lines are
    append-only), so it is refused at import. `started` has service, consumer,
    quantity_micro and exact (quantity x rate in millionths of millionths), 128-bit."""
    wide = pl.Int128
    limit_quantity = pl.lit(int(LIMIT) * 10**6, dtype=wide)
    limit_exact = pl.lit(int(LIMIT) * MICRO_SQUARED, dtype=wide)
    pair = ["service", "consumer"]
    running = (
        _near_a_limit(fresh, started, limit_quantity, limit_exact)
        .select("line", *pair, "quantity_micro", "rate_micro")
        .join(started, on=pair, how="left", suffix="_started", maintain_order="left")
        .with_columns(
            quantity=pl.col("quantity_micro_started").fill_null(0).cast(wide)
            + pl.col("quantity_micro").cast(wide).cum_sum().over(pair),
            exact=pl.col("exact").fill_null(0).cast(wide)
            + (pl.col("quantity_micro").cast(wide) * pl.col("rate_micro").cast(wide)).cum_sum().over(pair),
        )
        .filter((pl.col("quantity").abs() >= limit_quantity) | (pl.col("exact").abs() >= limit_exact))
        .group_by(pair)
        .agg(pl.col("line").min())
    )
    return _problems(
        running,
        "quantity",
        pl.lit("with this line the usage of ")
        + pl.col("service")
        + pl.lit(" by ")
        + pl.col("consumer")
        + pl.lit(
            f" in {book.period} passes what one charge can post (10^12 in quantity, or "
            f"10^12 {book.currency} at its rate): check the quantities"
        ),
    )


def _near_a_limit(
    fresh: pl.DataFrame, started: pl.DataFrame, limit_quantity: pl.Expr, limit_exact: pl.Expr
) -> pl.DataFrame:
    """The lines of the pairs (service, consumer) whose running sums could reach a limit:
    a running sum is never further from zero than the pair's started sum plus the sizes
    of all its lines, and most pairs stay far below. The pairs are told apart by their
    codes' numbers: a window or a group over ten million pairs of texts took gigabytes."""
    wide = pl.Int128
    number = pl.col("service").cast(pl.Categorical).to_physical().cast(pl.UInt64) * 2**32 + pl.col("consumer").cast(
        pl.Categorical
    ).to_physical().cast(pl.UInt64)
    codes = fresh.select(number.alias("pair")).to_series()
    sizes = pl.concat(
        [
            part.select(
                pl.int_range(start, start + part.height, dtype=pl.Int64).alias("row"),
                pl.col("quantity_micro").cast(wide).abs().alias("quantity"),
                (pl.col("quantity_micro").cast(wide) * pl.col("rate_micro").cast(wide)).abs().alias("exact"),
                codes.slice(start, part.height),
            )
            .group_by("pair")
            .agg(pl.col("row").first(), pl.col("quantity").sum(), pl.col("exact").sum())
            for start, part in zip(range(0, fresh.height, SLICE), fresh.iter_slices(SLICE), strict=False)
        ]
        or [pl.DataFrame(schema={"pair": pl.UInt64, "row": pl.Int64, "quantity": wide, "exact": wide})]
    )
    sizes = sizes.group_by("pair").agg(pl.col("row").min(), pl.col("quantity").sum(), pl.col("exact").sum())
    named = pl.concat([fresh.select("service", "consumer")[sizes["row"]], sizes.drop("row")], how="horizontal")
    bounds = named.join(started, on=["service", "consumer"], how="left", suffix="_started")
    near = bounds.filter(
        (pl.col("quantity") + pl.col("quantity_micro").fill_null(0).cast(wide).abs() >= limit_quantity)
        | (pl.col("exact") + pl.col("exact_started").fill_null(0).cast(wide).abs() >= limit_exact)
    )["pair"]
    return fresh.filter(codes.is_in(near.implode())) if near.len() else fresh.clear()


def started_usage(stored: pl.DataFrame, book: Book) -> pl.DataFrame:
    """The period's stored usage per (service, consumer), from its sums per (service,
    consumer, date): quantity_micro and exact (priced at each date's base rate)."""
    wide = pl.Int128
    priced = latest_rates(
        stored.join(book.units.select("consumer", "kind"), on="consumer", how="left"),
        book.rates.select("service", "kind", "effective_from", "rate_micro"),
        "kind",
    )
    return priced.group_by("service", "consumer").agg(
        pl.col("quantity_micro").cast(wide).sum(),
        exact=(pl.col("quantity_micro").cast(wide) * pl.col("rate_micro").fill_null(0).cast(wide)).sum(),
    )
