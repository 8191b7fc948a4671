"""Importing a cloud bill: a FOCUS cost export (CSV, gzip CSV or Parquet) into an open period.

The file is scanned lazily (Polars) and never held whole: the columns used are parsed
over whole columns, each row is put in exactly one bucket and the rows charged to a
department are summed per (day, consumer, ServiceName, SkuId) into usage lines, in one
pass (`pl.collect_all` over the problems, the lines and the buckets, streaming).

- A row's consumer is given by the first rule of cloud_map.csv that matches it (a
  `pl.when` chain in priority order: an exact FOCUS column, a ResourceId prefix or a
  `tag:KEY` of the Tags JSON object).
- Buckets: `purchase` (Purchase rows of a commitment: their cost reaches departments
  through EffectiveCost, so they are charged to no one), `unused` (unused commitment),
  `charged` (a rule matched), `untagged` (no rule matched, no tags) and `unmatched` (no
  rule matched). `unused`, `untagged` and `unmatched` go to the book's cloud pool.
- Costs are read as exact decimals (at most 16 places) into 128-bit integers, summed
  exactly, and rounded once per line or bucket, half away from zero. The markup (a
  percent per ServiceCategory) is applied to the exact sums.

Any problem refuses the file whole (FILE:LINE: COLUMN: message; a Parquet file's line
is its row number). A file imported before into the period (same sha256) changes
nothing. Each line records its import (whose sha256 is the file's) and its row count.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import repeat
from pathlib import Path
from typing import IO, cast

import polars as pl
from sqlalchemy import Connection, insert, select

from chargeback.book.cloud import PREFIX_MATCHES, TAG_PREFIX
from chargeback.close.periods import lock_open_period
from chargeback.core.calendar import period_bounds
from chargeback.core.digests import sha256_of
from chargeback.core.errors import InputRefused, Problem, Refused
from chargeback.core.money import from_minor, rounded_scaled
from chargeback.ingest.usage import STORE_BATCH, USAGE_COLUMNS
from chargeback.ledger.audit import os_user
from chargeback.ledger.cloud import cloud_pool_costs
from chargeback.store.db import collector_paused, insert_plain_rows
from chargeback.store.schema import Book, CloudBucket, CloudRule, CloudSettings, Import, Usage, Void

__all__ = ["CloudResult", "import_cloud"]

#: The FOCUS columns every bill must have (the spec requires them, and the import uses them).
REQUIRED = (
    "BilledCost",
    "EffectiveCost",
    "BillingCurrency",
    "ChargeCategory",
    "ChargePeriodStart",
    "ServiceName",
    "ServiceCategory",
)
#: Columns used when present (null when absent).
OPTIONAL = (
    "ListCost",
    "CommitmentDiscountId",
    "CommitmentDiscountStatus",
    "ConsumedQuantity",
    "PricingQuantity",
    "SkuId",
    "SubAccountId",
    "SubAccountName",
    "ResourceId",
    "RegionId",
    "Tags",
    "InvoiceId",
)
CATEGORIES = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")
#: Columns read only when a rule matches them (or, ListCost, when it is the cost basis).
RULE_COLUMNS = ("ListCost", "SubAccountId", "SubAccountName", "ResourceId", "RegionId")
BUCKETS = ("charged", "purchase", "unused", "unmatched", "untagged")
#: Decimal places costs and quantities are read with, exactly.
SCALE = 16
#: A markup percent's places: the factor (1 + markup) is an integer in units of 10**-MARKUP_SCALE.
MARKUP_SCALE = 6
DECIMAL = r"^-?[0-9]{1,15}(\.[0-9]{1,16})?$"
#: Problems listed per check at most (a file wrong throughout says so in a screenful).
PER_CHECK = 20
#: A cloud usage line is a usage line with its amount and the bill rows it sums.
CLOUD_USAGE_COLUMNS = (*USAGE_COLUMNS, "amount_minor", "source_rows")


@dataclass
class CloudResult:
    """What a cloud import did, for the command's summary."""

    file: str
    period: str
    rows: int = 0
    lines: int = 0
    already_imported: bool = False
    currency: str = ""
    basis: str = ""
    #: bucket -> (rows, amount charged: to departments, to the pool, or nothing for purchases)
    buckets: dict[str, tuple[int, Decimal]] = field(default_factory=dict)
    billed: Decimal = Decimal(0)

    def outcome(self) -> str:
        """The audit log's line for this import."""
        again = " (imported before: nothing changed)" if self.already_imported else ""
        return f"{self.rows} rows read, {self.lines} usage lines{again}"


@dataclass(frozen=True)
class Settings:
    provider: str
    service: str
    basis: str
    pool: str
    quantity: str
    markup: dict[str, Decimal]
    rules: list[tuple[str, str, str]]  # (match, value, consumer) in the order they apply

    @classmethod
    def of(cls, conn: Connection) -> Settings:
        row = conn.execute(select(CloudSettings.__table__)).first()
        if row is None:
            raise Refused(
                "the book has no cloud provider: add a [cloud] table to book.toml and cloud_map.csv, then load"
            )
        rules = conn.execute(
            select(CloudRule.match, CloudRule.value, CloudRule.consumer).order_by(CloudRule.priority, CloudRule.line)
        ).all()
        markup = {k: Decimal(v) for k, v in json.loads(row.markup).items()}
        return cls(row.provider, row.service, row.basis, row.pool, row.quantity, markup, [tuple(r) for r in rules])  # type: ignore[misc]


#: Bytes of a CSV bill parsed at a time: memory holds one piece, never the file.
CHUNK_BYTES = 32 << 20
#: The pieces' sums are summed again once they hold this many rows.
SUMMED_AGAIN = 2_000_000


class Bill:
    """A FOCUS export read a piece at a time: its columns and types (`schema`) and its
    rows as frames (`chunks`), each with `line`, the row's line in the file (CSV: the
    header is line 1) or its row number (Parquet). A gzip CSV is decompressed as it is
    read; a CSV is never mapped into memory whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        lower = path.name.lower()
        self.parquet = lower.endswith(".parquet")
        self.gzip = lower.endswith(".gz")
        if not (self.parquet or lower.endswith(".csv") or lower.endswith(".csv.gz")):
            raise Refused(f"{path.name}: a FOCUS export is a .csv, .csv.gz or .parquet file")

    def _open(self) -> IO[bytes]:
        if self.gzip:
            return cast(IO[bytes], gzip.open(self.path, "rb"))
        return open(self.path, "rb")

    def schema(self) -> dict[str, pl.DataType]:
        if self.parquet:
            return dict(pl.read_parquet_schema(self.path))
        with self._open() as handle:
            header = handle.readline()
        return dict(pl.read_csv(io.BytesIO(header), infer_schema=False, encoding="utf8-lossy").schema)

    def chunks(self, columns: list[str]) -> Iterator[pl.DataFrame]:
        """The rows a piece at a time, of `columns` only (the others are not parsed)."""
        if self.parquet:
            scan = pl.scan_parquet(self.path).select(columns).with_row_index("line", offset=1)
            yield from scan.collect_batches(chunk_size=500_000)
            return
        line = 2
        with self._open() as handle:
            header = handle.readline()
            rest = b""
            while True:
                block = handle.read(CHUNK_BYTES)
                if not block and not rest:
                    return
                data = rest + block
                cut = data.rfind(b"\n") + 1 if block else len(data)
                if cut == 0:  # one row longer than a piece: read on
                    rest = data
                    continue
                piece, rest = data[:cut], data[cut:]
                try:
                    frame = pl.read_csv(
                        io.BytesIO(header + piece), infer_schema=False, encoding="utf8-lossy", columns=columns
                    )
                except pl.exceptions.ComputeError:
                    if not block:
                        raise
                    rest = piece + rest  # a quoted line break cut the piece: read on
                    continue
                yield frame.with_columns(pl.int_range(line, line + frame.height, dtype=pl.Int64).alias("line"))
                line += frame.height


def _text(column: str, present: set[str], dtype: pl.DataType | None = None) -> pl.Expr:
    if column not in present:
        return pl.lit(None, pl.String).alias(column)
    expr = pl.col(column)
    if dtype is not None and dtype != pl.String:
        expr = expr.cast(pl.String)
    return expr.alias(column)


def _exact(text: pl.Expr) -> pl.Expr:
    """Decimal text as an integer in units of 10**-SCALE (a decimal's own digits, as
    Polars stores a Decimal(38, SCALE)); null when not a plain decimal."""
    return pl.when(text.str.contains(DECIMAL)).then(
        text.cast(pl.Decimal(38, SCALE), strict=False).to_physical().cast(pl.Int128)
    )


def _consumer(rules: list[tuple[str, str, str]]) -> pl.Expr:
    """The consumer of the first rule (in priority order) that matches a row. Each exact
    match kind (a FOCUS column, a tag's key, whose JSON is read once) is one lookup of the
    row's value among that kind's rules, giving the rule's rank; each ResourceId prefix
    is one test; the lowest rank found names the consumer."""
    if not rules:
        return pl.lit(None, pl.String)
    exact: dict[str, dict[str, int]] = {}
    ranks: list[pl.Expr] = []
    for rank, (match, value, _) in enumerate(rules):
        if match in PREFIX_MATCHES:
            ranks.append(pl.when(pl.col(match).str.starts_with(value)).then(pl.lit(rank, pl.Int32)).otherwise(None))
        else:
            exact.setdefault(match, {}).setdefault(value, rank)  # the first rule of a value wins
    for match, ranked in exact.items():
        if match.startswith(TAG_PREFIX):
            column = pl.col("Tags").str.json_path_match(f"$['{match[len(TAG_PREFIX) :]}']")
        else:
            column = pl.col(match)
        ranks.append(column.replace_strict(ranked, default=None, return_dtype=pl.Int32))
    consumers = {rank: consumer for rank, (_, _, consumer) in enumerate(rules)}
    return pl.min_horizontal(ranks).replace_strict(consumers, default=None, return_dtype=pl.String)


def _problem(rows: pl.LazyFrame, condition: pl.Expr, column: str, message: pl.Expr) -> pl.LazyFrame:
    return (
        rows.filter(condition)
        .select(pl.col("line").cast(pl.Int64), pl.lit(column).alias("column"), message.alias("message"))
        .head(PER_CHECK)
    )


@collector_paused()
def import_cloud(conn: Connection, path: Path, period: str, now: dt.datetime) -> CloudResult:
    """Import the FOCUS export at `path` into `period`; refuses it whole on any problem."""
    name = path.name
    if not path.is_file():
        raise Refused(f"{path}: no such file")
    lock_open_period(conn, period, create=True)
    settings = Settings.of(conn)
    currency, digits = conn.execute(select(Book.currency, Book.minor_digits)).one()
    result = CloudResult(name, period, currency=currency, basis=settings.basis)
    with ThreadPoolExecutor(1) as hashing:  # the file's sha256 is read while Polars reads it
        digest = hashing.submit(sha256_of, path)
        try:
            problems, lines, buckets = _read(Bill(path), name, period, currency, settings, digits)
        except (pl.exceptions.PolarsError, OSError, EOFError) as exc:
            raise Refused(f"{name}: not a readable FOCUS export: {exc}") from None
        sha256 = digest.result()
    before = conn.execute(
        select(Import.id, Import.lines_read, Import.imported)
        .where(Import.period == period, Import.sha256 == sha256)
        .where(select(CloudBucket.id).where(CloudBucket.import_id == Import.id).exists())
        .where(~select(Void.id).where(Void.kind == "import", Void.target == Import.id).exists())
    ).first()
    if before is not None:
        result.already_imported, result.rows = True, before.lines_read
        return result
    if problems:
        raise InputRefused(problems)
    result.rows = int(buckets["rows"].sum())
    lines = lines.sort(["date", "consumer", "ServiceName", "SkuId"], nulls_last=True).with_row_index("n")
    import_id = conn.execute(
        insert(Import)
        .values(
            period=period,
            file_name=str(path),
            sha256=sha256,
            at=now,
            lines_read=result.rows,
            imported=lines.height,
            duplicates=0,
            user=os_user(),
        )
        .returning(Import.id)
    ).scalar_one()
    _store_lines(conn, lines, period, import_id, settings.service, sha256)
    _store_buckets(conn, buckets, period, import_id, settings.basis)
    pool = cloud_pool_costs(conn, period).get(settings.pool)
    if pool is not None and pool < 0:
        raise Refused(
            f"{name}: the rows no rule maps sum to a credit of {from_minor(-int(pool), digits)} {currency} in "
            f"{period}: the pool {settings.pool} cannot spread a credit; map them in cloud_map.csv"
        )
    result.lines = lines.height
    for row in buckets.group_by("bucket").agg(pl.col("rows").sum(), pl.col("charged_minor").sum()).iter_rows():
        result.buckets[row[0]] = (int(row[1]), from_minor(int(row[2]), digits))
    result.billed = from_minor(int(buckets["billed_minor"].sum()), digits)
    return result


def _read(
    bill: Bill, name: str, period: str, currency: str, settings: Settings, digits: int
) -> tuple[list[Problem], pl.DataFrame, pl.DataFrame]:
    """(problems, usage lines, buckets) of the bill, in one pass over the file."""
    schema = bill.schema()
    present = {column.lstrip("\ufeff") for column in schema}
    bom = {c: c.lstrip("\ufeff") for c in schema if c.startswith("\ufeff")}
    schema_name = {c.lstrip("\ufeff"): c for c in schema}
    dtypes = {c.lstrip("\ufeff"): t for c, t in schema.items()}
    needed = set(REQUIRED) | {settings.basis}
    needed |= {m for m, _, _ in settings.rules if not m.startswith(TAG_PREFIX)}
    if any(m.startswith(TAG_PREFIX) for m, _, _ in settings.rules):
        needed.add("Tags")
    missing = sorted(needed - present)
    if missing:
        raise InputRefused(
            [
                Problem(name, 1, column, "column is missing: a FOCUS export has it (see the FOCUS specification)")
                for column in missing
            ]
        )
    first, last = period_bounds(period)
    day_type = dtypes["ChargePeriodStart"]
    day = (
        pl.col("ChargePeriodStart").cast(pl.Date)
        if isinstance(day_type, (pl.Datetime, pl.Date))
        else pl.col("ChargePeriodStart")
        .cast(pl.String)
        .str.strip_chars()
        .str.slice(0, 10)
        .str.to_date("%Y-%m-%d", strict=False)
    )
    matched = {m for m, _, _ in settings.rules}
    used = [
        c
        for c in REQUIRED + OPTIONAL
        if c not in RULE_COLUMNS or c in matched or (c == "ListCost" and settings.basis == c)
    ]
    columns = [schema_name[c] for c in used if c in present]  # only these are parsed
    texts = [_text(c, present, dtypes.get(c)) for c in used if c != "ChargePeriodStart"]
    other = "PricingQuantity" if settings.quantity == "ConsumedQuantity" else "ConsumedQuantity"
    quantity = pl.coalesce(
        pl.when(pl.col(settings.quantity) != "").then(pl.col(settings.quantity)),
        pl.when(pl.col(other) != "").then(pl.col(other)),
        pl.lit("0"),
    )
    markup = pl.col("ServiceCategory").replace_strict(
        {k: int(v * 10 ** (MARKUP_SCALE - 2)) for k, v in settings.markup.items()}, default=0, return_dtype=pl.Int64
    )

    def prepared(scan: pl.LazyFrame) -> pl.LazyFrame:
        return (
            scan.rename(bom)
            .select(
                "line",
                pl.col("ChargePeriodStart").cast(pl.String).alias("start_text"),
                day.alias("date"),
                *texts,
            )
            .with_columns(
                billed=_exact(pl.col("BilledCost")),
                effective=_exact(pl.col("EffectiveCost")),
                basis=_exact(pl.col(settings.basis)),
                quantity_text=quantity,
            )
            .with_columns(
                quantity=_exact(pl.col("quantity_text")),
                factor=pl.lit(10**MARKUP_SCALE, pl.Int64) + markup,
                consumer=_consumer(settings.rules),
                purchase=(pl.col("ChargeCategory") == "Purchase")
                & (
                    pl.col("CommitmentDiscountId").fill_null("").ne("")
                    if "CommitmentDiscountId" in present
                    else pl.lit(True)
                ),
                invoice=pl.col("InvoiceId").fill_null(""),
            )
            .with_columns(
                bucket=pl.when(pl.col("purchase"))
                .then(pl.lit("purchase"))
                .when(pl.col("CommitmentDiscountStatus") == "Unused")
                .then(pl.lit("unused"))
                .when(pl.col("consumer").is_not_null())
                .then(pl.lit("charged"))
                .when(pl.col("Tags").fill_null("").str.strip_chars().is_in(["", "{}"]))
                .then(pl.lit("untagged"))
                .otherwise(pl.lit("unmatched")),
                amount=pl.col("basis") * pl.col("factor"),
            )
        )

    checks = [
        (
            ~pl.col("ChargeCategory").is_in(CATEGORIES).fill_null(False),
            "ChargeCategory",
            pl.format(
                "{} is not a FOCUS charge category: one of " + ", ".join(CATEGORIES),
                pl.col("ChargeCategory").fill_null("(empty)"),
            ),
        ),
        (
            pl.col("date").is_null(),
            "ChargePeriodStart",
            pl.format(
                "{} is not a date-time: write it as YYYY-MM-DDTHH:MM:SSZ", pl.col("start_text").fill_null("(empty)")
            ),
        ),
        (
            ((pl.col("date") < first) | (pl.col("date") > last)).fill_null(False),
            "ChargePeriodStart",
            pl.format(
                f"{{}} is outside the period {period}: import the bill of that month into its own period",
                pl.col("start_text"),
            ),
        ),
        (
            pl.col("BillingCurrency").fill_null("") != currency,
            "BillingCurrency",
            pl.format(
                f"{{}} is not the book's currency {currency}: export the bill in {currency}",
                pl.col("BillingCurrency").fill_null("(empty)"),
            ),
        ),
    ]
    parsed = {"BilledCost": "billed", "EffectiveCost": "effective"} | {settings.basis: "basis"}
    checks += [
        (
            pl.col(value).is_null(),
            column,
            pl.format(
                "{} is not a plain decimal: write digits with an optional - and . (at most 16 decimals)",
                pl.col(column).fill_null("(empty)"),
            ),
        )
        for column, value in parsed.items()
    ]
    checks.append(
        (
            pl.col("quantity").is_null(),
            settings.quantity,
            pl.format("{} is not a plain decimal quantity", pl.col("quantity_text")),
        )
    )
    # One pass, a piece of the file at a time: the rows summed per (invoice, bucket, day,
    # consumer, service, SKU), with the count of rows that fail a check; the pieces' sums
    # are summed again as they come. Lines and buckets are sums of these.
    keys = ["invoice", "bucket", "date", "consumer", "ServiceName", "SkuId"]
    summed = ("rows", "quantity", "billed", "effective", "basis", "amount", "bad")
    parts: list[pl.DataFrame] = []

    def summed_again(frames: list[pl.DataFrame]) -> pl.DataFrame:
        return pl.concat(frames).group_by(keys).agg(pl.col("line").min(), *(pl.col(c).sum() for c in summed))

    for chunk in bill.chunks(columns):
        part = (
            prepared(chunk.lazy())
            .group_by(keys)
            .agg(
                line=pl.col("line").min().cast(pl.Int64),
                rows=pl.len().cast(pl.Int64),
                quantity=pl.col("quantity").sum(),
                billed=pl.col("billed").sum(),
                effective=pl.col("effective").sum(),
                basis=pl.col("basis").sum(),
                amount=pl.col("amount").sum(),
                bad=pl.any_horizontal([condition for condition, _, _ in checks]).cast(pl.Int64).sum(),
            )
            .collect()
        )
        parts.append(part)
        if sum(p.height for p in parts) > SUMMED_AGAIN:
            parts = [summed_again(parts)]
    if not parts:
        raise Refused(f"{name}: the bill has no rows")
    sums = summed_again(parts)
    del parts
    if sums["bad"].sum():  # a second pass names the rows, only for a file to refuse
        found = []
        for chunk in bill.chunks(columns):
            rows = prepared(chunk.lazy())
            found.append(pl.concat([_problem(rows, *check) for check in checks]).collect())
        problems = sorted(
            Problem(name, line, column, message)
            for line, column, message in pl.concat(found)
            .group_by("column", maintain_order=True)
            .head(PER_CHECK)
            .select("line", "column", "message")
            .iter_rows()
        )
        return problems, sums, sums
    lines_frame = (
        sums.filter(pl.col("bucket") == "charged")
        .group_by("date", "consumer", "ServiceName", "SkuId")
        .agg(pl.col("line").min(), pl.col("quantity").sum(), pl.col("amount").sum(), pl.col("rows").sum())
    )
    buckets_frame = sums.group_by("invoice", "bucket").agg(
        pl.col("rows").sum(), *(pl.col(c).sum() for c in ("billed", "effective", "basis", "amount"))
    )
    lines_frame = lines_frame.with_columns(
        quantity_micro=rounded_scaled(pl.col("quantity"), SCALE, 6).cast(pl.Int64),
        amount_minor=rounded_scaled(pl.col("amount"), SCALE + MARKUP_SCALE, digits).cast(pl.Int64),
    )
    buckets_frame = buckets_frame.with_columns(
        billed_minor=rounded_scaled(pl.col("billed"), SCALE, digits).cast(pl.Int64),
        effective_minor=rounded_scaled(pl.col("effective"), SCALE, digits).cast(pl.Int64),
        basis_minor=rounded_scaled(pl.col("basis"), SCALE, digits).cast(pl.Int64),
        amount_minor=rounded_scaled(pl.col("amount"), SCALE + MARKUP_SCALE, digits).cast(pl.Int64),
    ).with_columns(
        markup_minor=pl.when(pl.col("bucket") == "purchase")
        .then(0)
        .otherwise(pl.col("amount_minor") - pl.col("basis_minor")),
        charged_minor=pl.when(pl.col("bucket") == "purchase").then(0).otherwise(pl.col("amount_minor")),
    )
    return [], lines_frame, buckets_frame


def _store_lines(conn: Connection, lines: pl.DataFrame, period: str, import_id: int, service: str, sha256: str) -> None:
    """The usage lines in one bulk insert. A line whose rows' quantities sum to zero (a
    credit, a tax) gets quantity 1: a stored line's quantity is never zero."""
    if not lines.height:
        return
    sqlite = conn.dialect.name == "sqlite"
    ready = lines.select(
        "line",
        pl.col("date").cast(pl.String) if sqlite else pl.col("date"),
        "consumer",
        pl.when(pl.col("quantity_micro") == 0)
        .then(1_000_000)
        .otherwise(pl.col("quantity_micro"))
        .alias("quantity_micro"),
        (pl.lit(f"FOCUS-{sha256[:16]}-") + pl.col("n").cast(pl.String).str.zfill(7)).alias("reference"),
        (
            pl.col("ServiceName").fill_null("")
            + pl.lit(" ")
            + pl.col("SkuId").fill_null("")
            + pl.lit(" (")
            + pl.col("rows").cast(pl.String)
            + pl.when(pl.col("rows") == 1).then(pl.lit(" row)")).otherwise(pl.lit(" rows)"))
        )
        .str.strip_chars()
        .alias("description"),
        "amount_minor",
        pl.col("rows").cast(pl.Int64),
    )

    def rows() -> Iterator[tuple[object, ...]]:
        for part in ready.iter_slices(STORE_BATCH):
            columns = [part[c].to_list() for c in part.columns]
            line, date, consumer, quantity, reference, description, amount, count = columns
            yield from zip(
                repeat(period),
                repeat(import_id),
                line,
                date,
                repeat(service),
                consumer,
                quantity,
                reference,
                description,
                amount,
                count,
            )

    insert_plain_rows(conn, Usage.__table__, CLOUD_USAGE_COLUMNS, rows())


def _store_buckets(conn: Connection, buckets: pl.DataFrame, period: str, import_id: int, basis: str) -> None:
    keys = ("rows", "billed_minor", "effective_minor", "basis_minor", "markup_minor", "charged_minor")
    rows = [
        {"import_id": import_id, "period": period, "basis": basis, "invoice": row["invoice"][:200]}
        | {"bucket": row["bucket"]}
        | {key: row[key] for key in keys}
        for row in buckets.sort("invoice", "bucket").iter_rows(named=True)
    ]
    if rows:
        conn.execute(insert(CloudBucket), rows)
