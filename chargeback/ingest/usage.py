"""Importing a usage file (CSV or XLSX) into an open period.

The file is read a piece at a time (`tabular.read_pieces`, about a million lines), and
each piece checked a whole column at a time: each cell on its own, each line against the
book (service, consumer, active dates, a rate in force); then the lines that pass, of
all the pieces, against each other and against what was imported before ((service,
reference) identifies a line for ever). Any problem refuses the file whole:
nothing of it is stored, and every problem is listed. The new lines are stored in one
bulk insert of plain tuples, in the command's one transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain, repeat
from pathlib import Path

import polars as pl
from sqlalchemy import Column, Connection, MetaData, String, Table, func, insert, select
from sqlalchemy.exc import IntegrityError

from chargeback.book.snapshot import load_reference
from chargeback.close.periods import lock_open_period
from chargeback.core.digests import sha256_of
from chargeback.core.errors import InputRefused, Problem, Refused
from chargeback.core.money import from_minor
from chargeback.core.progress import csv_lines, phase
from chargeback.ingest.tabular import FileImport, read_pieces
from chargeback.ingest.usage_checks import (
    USAGE,
    Book,
    against_book,
    beyond_one_charge,
    checked_cells,
    new_lines,
    started_usage,
    sums,
)
from chargeback.ledger.audit import os_user
from chargeback.store.db import collector_paused, date_text, frame, insert_plain_rows
from chargeback.store.schema import Import, Usage

__all__ = ["USAGE", "USAGE_COLUMNS", "ImportResult", "import_usage"]

USAGE_COLUMNS = (
    "period",
    "import_id",
    "line",
    "date",
    "service",
    "consumer",
    "quantity_micro",
    "reference",
    "description",
)
#: Lines handed to the database at a time: memory holds their Python values, not the file's.
STORE_BATCH = 50_000


@dataclass
class ImportResult(FileImport):
    """What an import of usage did, for the command's summary."""

    duplicates: int = 0
    late: int = 0
    credits: int = 0
    by_provider: dict[str, Decimal] = field(default_factory=dict)
    currency: str = ""

    def outcome(self) -> str:
        """The audit log's line for this import."""
        return f"{self.lines_read} lines read, {self.imported} imported, {self.duplicates} duplicates skipped"


@collector_paused()
def import_usage(conn: Connection, path: Path, period: str, now: dt.datetime, progress: bool = False) -> ImportResult:
    """Import the usage file at `path` into `period`; refuses it whole on any problem.
    `progress` allows a bar of the lines read and stored on a terminal."""
    name = path.name
    if not path.is_file():
        raise Refused(f"{path}: no such file")
    lock_open_period(conn, period, create=True)
    book = Book.of(conn, load_reference(conn), period)
    problems: list[Problem] = []
    with phase(f"reading {name}", csv_lines(path) if progress else 0, progress) as bar:

        def checked(piece: pl.DataFrame) -> tuple[int, pl.DataFrame, pl.DataFrame]:
            """A piece's lines that pass on their own and against the book, and the
            problems of the others: only what the lines keep outlives the piece's text."""
            cells, found = checked_cells(piece)
            bar.add(piece.height)
            lines, in_book = against_book(cells, book)
            return piece.height, lines.drop("date_text"), pl.concat([found, in_book])

        pieces = read_pieces(path, USAGE, problems, name, checked)
    lines_read = sum(height for height, _, _ in pieces)
    lines = pl.concat([piece for _, piece, _ in pieces])
    found = [piece for _, _, piece in pieces]
    del pieces
    fresh, duplicates, repeated = new_lines(lines, lambda keys: _stored(conn, keys))
    del lines
    too_much = beyond_one_charge(fresh, started_usage(_period_usage(conn, period, fresh), book), book)
    problems += [
        Problem(name, line, column, message)
        for line, column, message in pl.concat([*found, repeated, too_much]).iter_rows()
    ]
    if problems:
        raise InputRefused(sorted(problems))

    total = sums(fresh, book)
    import_id = _record_import(conn, path, period, now, lines_read, fresh.height, duplicates)
    with phase(f"storing {name}", fresh.height if progress else 0, progress) as bar:
        try:
            _store(conn, fresh, period, import_id, bar.add)
        except IntegrityError as exc:
            # The unique (service, reference) index is the last word on "stored at most once":
            # an import into another period (another lock) stored some of these lines after
            # this one looked for them. It waited for that import to commit, and now says so.
            if _repeated_reference(exc):
                raise Refused(
                    "another import stored some of these usage lines at the same time; nothing from "
                    f"{name} was imported: import it again (lines already stored are skipped as duplicates)"
                ) from exc
            raise
    return ImportResult(
        name,
        period,
        lines_read=lines_read,
        imported=fresh.height,
        duplicates=duplicates,
        late=total.late,
        credits=total.credits,
        by_provider={p: from_minor(v, book.digits) for p, v in total.by_provider.items()},
        currency=book.currency,
    )


def _record_import(
    conn: Connection, path: Path, period: str, now: dt.datetime, lines_read: int, imported: int, duplicates: int
) -> int:
    """The `imports` record of the file; returns its id, which its usage lines carry."""
    return conn.execute(
        insert(Import)
        .values(
            period=period,
            file_name=str(path),
            sha256=sha256_of(path),
            at=now,
            lines_read=lines_read,
            imported=imported,
            duplicates=duplicates,
            user=os_user(),
        )
        .returning(Import.id)
    ).scalar_one()


def _store(conn: Connection, fresh: pl.DataFrame, period: str, import_id: int, stored: Callable[[int], None]) -> None:
    """The new lines in one bulk insert of plain tuples, `STORE_BATCH` turned into Python
    values at a time. SQLite gets a date as the ISO text SQLAlchemy stores for a Date
    column (written from the date: the cell's own text, checked to be that); PostgreSQL's
    COPY a date."""
    date = pl.col("date").dt.to_string("%Y-%m-%d") if conn.dialect.name == "sqlite" else pl.col("date")
    columns = [date, "service", "consumer", "quantity_micro", "reference", "description"]

    def rows():
        for piece in fresh.iter_slices(STORE_BATCH):
            part = piece.select("line", *columns)
            yield from zip(repeat(period), repeat(import_id), *(part[c].to_list() for c in part.columns))
            stored(part.height)

    insert_plain_rows(conn, Usage.__table__, USAGE_COLUMNS, rows())


def _period_usage(conn: Connection, period: str, fresh: pl.DataFrame) -> pl.DataFrame:
    """The usage stored in `period` before this file, of the file's services, summed per
    (service, consumer, date)."""
    schema = {"service": pl.String, "consumer": pl.String, "date": pl.Date, "quantity_micro": pl.Int64}
    services = fresh["service"].unique().to_list()
    if not services:
        return pl.DataFrame(schema=schema)
    return frame(
        conn,
        select(Usage.service, Usage.consumer, date_text(conn, Usage.date), func.sum(Usage.quantity_micro))
        .where(Usage.period == period, Usage.service.in_(services), Usage.void_id.is_(None))
        .group_by(Usage.service, Usage.consumer, Usage.date),
        schema,
    )


def _repeated_reference(exc: IntegrityError) -> bool:
    """The unique (service, reference) index refused a line (SQLite's or PostgreSQL's words)."""
    return "uq_usage_service_reference" in str(exc.orig) or "usage.service, usage.reference" in str(exc.orig)


INCOMING = Table(
    "incoming_keys", MetaData(), Column("service", String(32)), Column("reference", String(100)), prefixes=["TEMPORARY"]
)


def _stored(conn: Connection, keys: pl.DataFrame) -> pl.DataFrame:
    """The lines already stored with the (service, reference) of `keys`: the keys go to a
    temporary table and one join finds them. Skipped when nothing of the file's services
    is stored at all (a new service's first file, a new database)."""
    found = pl.DataFrame(
        schema={
            "service": pl.String,
            "reference": pl.String,
            "stored_date": pl.Date,
            "stored_consumer": pl.String,
            "stored_quantity": pl.Int64,
        }
    )
    services = keys["service"].unique().to_list()
    if not services or conn.execute(select(Usage.id).where(Usage.service.in_(services)).limit(1)).first() is None:
        return found
    INCOMING.drop(conn, checkfirst=True)
    INCOMING.create(conn)
    insert_plain_rows(
        conn,
        INCOMING,
        ("service", "reference"),
        chain.from_iterable(
            zip(part["service"].to_list(), part["reference"].to_list(), strict=False)
            for part in keys.iter_slices(STORE_BATCH)
        ),
    )
    rows = conn.execute(
        select(Usage.service, Usage.reference, Usage.date, Usage.consumer, Usage.quantity_micro)
        .join(INCOMING, (INCOMING.c.service == Usage.service) & (INCOMING.c.reference == Usage.reference))
        .where(Usage.void_id.is_(None))
    ).all()
    INCOMING.drop(conn)
    return pl.DataFrame(rows, schema=found.schema, orient="row") if rows else found
