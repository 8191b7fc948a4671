"""Connecting to the database, upgrading its schema, and one transaction per command.

SQLite is the embedded default; PostgreSQL is for production. A writing command runs
in one transaction: on SQLite it starts with `BEGIN IMMEDIATE`, so two writers never
interleave; on PostgreSQL the commands lock the rows they depend on (see `periods`).

Concurrency on PostgreSQL, chosen deliberately: READ COMMITTED with explicit row locks,
not SERIALIZABLE. Every command that changes a period first locks that period's row
(`SELECT ... FOR UPDATE`): imports, adjustments, closes and reopens of one period run one
after the other, and the one that waited then reads what the other committed (so a
second import of a file finds its lines as duplicates, and an import that waited for a
close finds the period closed and is refused; a close that waited for an import posts
all of it). Appending to the journal locks `journal_head`, and to the audit log
`audit_head`, always after the period, so the chains stay linear and locks are always
taken in the same order (no deadlock). What no period lock covers, the database's
constraints decide: two imports into *different* periods with the same (service,
reference) meet at the unique index, the second waits for the first to commit, then is
refused whole with a clear message. SERIALIZABLE would also be correct, but it fails the
loser with a serialization error after doing all its work, and the caller would have to
retry; locks make the loser wait and then get a plain answer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from contextlib import contextmanager
from functools import cache
from importlib import resources
from itertools import chain, count, islice
from typing import TYPE_CHECKING, Any, TypeVar

import polars as pl
from sqlalchemy import (
    BigInteger,
    Connection,
    Date,
    DateTime,
    Engine,
    Integer,
    Select,
    String,
    Table,
    cast,
    create_engine,
    event,
    func,
    inspect,
    text,
    type_coerce,
)
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

from chargeback.core import settings
from chargeback.core.errors import Refused

DEFAULT_URL = "sqlite:///chargeback.db"
T = TypeVar("T")


#: A column as a query names it: a Core expression or a mapped attribute (`Entry.date`).
SQLColumn = ColumnElement[Any] | QueryableAttribute[Any]


def database_url(url: str | None = None) -> str:
    """The URL given, else `CHARGEBACK_DB`, else `chargeback.db` in the current folder."""
    return url or os.environ.get("CHARGEBACK_DB") or DEFAULT_URL


#: Query parameters of a database URL that carry a credential (libpq takes them there too).
SECRET_PARAMETERS = frozenset({"password", "sslpassword", "passfile", "sslkey", "sslcert", "sslrootcert"})
HIDDEN = "***"


def redact(url: str) -> str:
    """The URL with every credential hidden (the password, and the password-like query
    parameters libpq accepts), for every message and log."""
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 - a port that is not a number is found here, not later
    except (ArgumentError, ValueError):
        return "<unreadable database URL>"
    query = {key: HIDDEN if key.lower() in SECRET_PARAMETERS else value for key, value in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True)


def without_secrets(text: str, url: str) -> str:
    """`text` (a driver's error message, say) with every credential of `url` in it hidden."""
    text = re.sub(r"(://[^:/@\s]*:)[^@\s]+@", r"\1***@", text)  # any URL's password, read or not
    text = re.sub(r"\b((?:ssl)?password=)[^&\s'\"]+", r"\1***", text)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return text
    secrets = [parsed.password] if parsed.password else []
    for key, value in parsed.query.items():
        if key.lower() in SECRET_PARAMETERS:
            secrets += [value] if isinstance(value, str) else list(value)
    for secret in sorted((str(s) for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return text


def connect(url: str | None = None) -> Engine:
    """An engine for a SQLite or PostgreSQL URL (`postgresql://` means psycopg 3)."""
    url = database_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise Refused(f"not a database URL: {redact(url)}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise Refused(f"unsupported database {backend!r}: use a sqlite:// or postgresql:// URL")
    if backend == "sqlite":
        # check_same_thread off: `Overlapped` inserts on a second thread, one at a time
        # (SQLite itself is built serialized: sqlite3.threadsafety == 3).
        engine = create_engine(parsed, connect_args={"timeout": 60, "check_same_thread": False})
        _sqlite_transactions(engine)
    else:
        engine = create_engine(parsed, pool_pre_ping=True)
    return engine


def _sqlite_transactions(engine: Engine, begin: str = "BEGIN IMMEDIATE") -> None:
    """Take SQLite's transactions from pysqlite: `begin` (BEGIN IMMEDIATE for writers),
    foreign keys on."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        with contextlib.suppress(sqlite3.OperationalError):  # a read-only file keeps its mode; reading still works
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        # 64 MB of page cache a connection: 256 MB made a million-line close and report
        # 200-250 MB bigger at the same CPU time (import and close timed alike)
        cursor.execute("PRAGMA cache_size = -65536")
        # big sorts (a million-line period's GROUP BY and ORDER BY) spill to temporary
        # files rather than the process's memory: 250 MB less at peak, no slower here
        cursor.execute("PRAGMA temp_store = FILE")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("reading") else begin)


if TYPE_CHECKING:
    from alembic.config import Config


def alembic_config(conn: Connection) -> Config:
    from alembic.config import Config  # Alembic is loaded to migrate, not for every command

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("chargeback.store") / "migrations"))
    cfg.attributes["connection"] = conn
    return cfg


def upgrade(engine: Engine) -> None:
    """Create the schema or upgrade it to the newest revision; safe to repeat.

    On SQLite a migration that rebuilds a table others refer to (0005 rebuilds `entries`)
    needs foreign keys off, which SQLite allows only outside a transaction: they are
    turned off around it, every reference is checked before the commit, and they are
    turned on again."""
    from alembic import command

    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        return
    with engine.connect() as conn:
        raw = conn.connection.driver_connection  # a PRAGMA outside SQLAlchemy's autobegin
        raw.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]  # connected: the driver connection and module are set
        try:
            with conn.begin():
                command.upgrade(alembic_config(conn), "head")
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise Refused(
                        f"upgrading the schema would break {len(broken)} references "
                        f"(first: table {broken[0][0]}); nothing was changed"
                    )
        finally:
            raw.execute("PRAGMA foreign_keys = ON")  # type: ignore[union-attr]  # connected: the driver connection and module are set


#: The newest migration in `migrations/versions`. Every command checks the database's
#: schema against it; kept here, the check needs no Alembic (a fifth of a second to load).
#: `tests/test_migrations.py` checks that it is Alembic's head.
SCHEMA_HEAD = "0015"


def schema_is_current(conn: Connection) -> bool:
    """Whether the database is at the newest migration (`SCHEMA_HEAD`)."""
    if not inspect(conn).has_table("alembic_version"):
        return False
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [SCHEMA_HEAD]


def bulk_insert(conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """Insert many rows of plain values in the current transaction: PostgreSQL's COPY,
    or multi-row INSERTs on SQLite (`insert_values`). Returns the number of rows."""
    if conn.dialect.name == "postgresql":
        counted = [0]

        def counting() -> Iterator[Sequence[object]]:
            for row in rows:
                counted[0] += 1
                yield row

        insert_plain_rows(conn, table, columns, counting())
        return counted[0]
    processors = [bind_processor(table.c[c].type, conn.dialect) for c in columns]
    converting = [
        (i, _remembered(p) if isinstance(table.c[c].type, (Date, DateTime)) else p)
        for i, (c, p) in enumerate(zip(columns, processors, strict=False))
        if p is not None
    ]
    if not converting:
        return insert_values(conn, table.name, columns, rows)

    def converted() -> Iterator[Sequence[object]]:
        for row in rows:
            values = list(row)
            for i, process in converting:
                if values[i] is not None:
                    values[i] = process(values[i])
            yield values

    return insert_values(conn, table.name, columns, converted())


#: PostgreSQL's binary form for each kind of column COPY fills (`copy_types`).
BINARY_TYPES = ((BigInteger, "int8"), (Integer, "int4"), (String, "text"), (DateTime, "timestamp"), (Date, "date"))


@cache
def copy_types(table: Table, columns: tuple[str, ...]) -> tuple[str, ...] | None:
    """The PostgreSQL types to COPY `columns` of `table` in binary form, or None (text
    form) when one has no binary form here. Binary takes each value as it is, without
    writing and parsing its text: 200,000 journal entries copied in 0.49-0.54 s instead of
    1.17-1.22 s. Text and VARCHAR share a binary form; the values must be of the column's
    Python type (int, str, date, datetime), as the rows inserted here are."""
    found = []
    for name in columns:
        kind = table.c[name].type
        binary = next((pg for sa_type, pg in BINARY_TYPES if isinstance(kind, sa_type)), None)
        if binary is None:
            return None
        found.append(binary)
    return tuple(found)  # remembered: shared by every caller, so not a list


def bind_processor(kind: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """How the database driver is handed a value of `kind` (SQLAlchemy's public
    `bind_processor` of the dialect's own type): None when it takes it as it is."""
    return kind.dialect_impl(dialect).bind_processor(dialect)


def dates_as_stored(columns: Iterable[SQLColumn]) -> list[SQLColumn]:
    """`columns` with each date column read as the database hands it over, unconverted:
    ISO text on SQLite (SQLAlchemy's conversion of a million dates is a sixth of a read
    of the journal), a date on PostgreSQL. `stored_date` reads either, once per distinct
    value where rows repeat a few dates."""
    return [type_coerce(c, String) if isinstance(getattr(c, "type", None), Date) else c for c in columns]


#: Names of `plain_rows`' server-side cursors, unique in the process.
_cursors = count(1)


def plain_rows(conn: Connection, statement: Select, size: int = 20_000) -> Iterator[Sequence[Any]]:
    """The rows of `statement`, `size` at a time, as the driver hands them over: plain
    tuples, read by position, without SQLAlchemy's rows (a million entries of the journal:
    3.8-4.4 s of CPU against 5.8-9.0 s on SQLite, 2.5-3.2 against 4.1-5.1 s on PostgreSQL).
    SQLAlchemy's conversion of values is skipped with them, so every column and parameter
    must be one that needs none (codes, texts, integers; dates through
    `dates_as_stored`): one that does is refused. On PostgreSQL the rows come from a
    server-side cursor of the driver's, in the connection's transaction, so memory holds
    `size` of them; SQLite's driver hands them over as the statement steps."""
    dialect = conn.dialect
    # a list (`in_`, `not_in`) rendered as a parameter a value: the driver's cursor takes no
    # SQLAlchemy placeholders
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    for element in [*statement.selected_columns, *compiled.binds.values()]:
        kind = element.type
        if kind.dialect_impl(dialect).result_processor(dialect, None) or bind_processor(kind, dialect):
            raise ValueError(f"{element} needs SQLAlchemy's conversion: read it with conn.execute")
    if dialect.name != "postgresql":
        result = conn.execute(statement)  # not streamed: SQLAlchemy reads no row ahead of its cursor
        try:
            while rows := result.cursor.fetchmany(size):
                yield rows
        finally:
            result.close()
        return
    if not conn.in_transaction():
        conn.begin()  # as conn.execute would: the read sees the transaction's snapshot
    with conn.connection.driver_connection.cursor(name=f"plain_rows_{next(_cursors)}") as cursor:  # type: ignore[union-attr]  # connected: the driver connection and module are set
        cursor.execute(str(compiled), compiled.params)
        while rows := cursor.fetchmany(size):
            yield rows


def stored_date(value: str | dt.date) -> dt.date:
    """A date read by `dates_as_stored`."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def bytewise(conn: Connection, *columns: SQLColumn) -> list[SQLColumn]:
    """Text columns compared in plain character (byte) order on both databases, for ORDER
    BY and keyset paging: SQLite's default; PostgreSQL's default collation follows the
    locale, so its "C" collation."""
    if conn.dialect.name == "postgresql":
        return [column.collate("C") for column in columns]
    return list(columns)


def insert_values(conn: Connection, table_name: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """SQLite: insert rows of values as the driver stores them (no type conversion),
    many rows a statement: `INSERT ... VALUES (...), (...), ...`.

    Measured on 200,000 journal entries of 24 columns: 7-8 us a row, against 12 us with
    `executemany` (one step a row) and 23 us with one statement reading a JSON array.
    The values are bound in C and the statement runs without Python's lock, so a thread
    preparing the next rows meanwhile (`Overlapped`) is not held up row by row."""
    raw = conn.connection.driver_connection
    width = len(columns)
    limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[union-attr]  # connected: the driver connection and module are set
    per = max(1, min(settings.current().rows_per_insert, limit // width))
    one = f"({', '.join('?' * width)})"
    head = f"INSERT INTO {table_name} ({', '.join(columns)}) VALUES "
    full = head + ", ".join([one] * per)
    cursor = raw.cursor()  # type: ignore[union-attr]  # connected: the driver connection and module are set

    def write(part: list[Sequence[object]]) -> None:
        statement = full if len(part) == per else head + ", ".join([one] * len(part))
        try:
            cursor.execute(statement, list(chain.from_iterable(part)))
        except conn.dialect.dbapi.Error as exc:  # type: ignore[union-attr]  # connected: the driver connection and module are set
            raise DBAPIError.instance(
                head + one,
                None,
                exc,
                conn.dialect.dbapi.Error,  # type: ignore[union-attr]  # connected: the driver connection and module are set
                dialect=conn.dialect,
            ) from exc

    count = 0
    try:
        for part in batched(rows, per):
            write(part)
            count += len(part)
    finally:
        cursor.close()
    return count


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter)."""
    iterator = iter(items)
    while part := list(islice(iterator, size)):
        yield part


class Overlapped:
    """Runs one piece of database work at a time on a second thread while the caller
    prepares the next (the journal hashes batch n+1 while batch n is inserted): SQLite
    and PostgreSQL do their part of an insert without holding Python's lock, so the
    two cores share the work. Still one connection and one transaction; the work is
    done in order, and an error in it is raised to the caller at the next `submit` or
    at the end, after the thread has stopped touching the connection."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chargeback-insert")
        self._pending: Future[object] | None = None

    def submit(self, work: Callable[..., object], *args: object) -> None:
        self.wait()
        self._pending = self._pool.submit(work, *args)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> Overlapped:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                self.wait()
            elif self._pending is not None:
                futures_wait([self._pending])  # the caller's own error wins; the thread is done
        finally:
            self._pool.shutdown(wait=True)


def _require_schema(conn: Connection) -> None:
    if not schema_is_current(conn):
        raise Refused("the database has no chargeback schema or an old one: run `chargeback init`")


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector off while a command makes millions of rows of plain values:
    they hold no cycles, and the collector would walk the growing heap again and again
    (a fifth of a million-line import). Usable as a decorator."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _remembered(process: Callable[[object], object]) -> Callable[[object], object]:
    """A date or timestamp bind processor that converts each distinct value once: a
    batch holds few distinct ones."""
    seen: dict[object, object] = {}

    def convert(value: object) -> object:
        try:
            return seen[value]
        except KeyError:
            converted = seen[value] = process(value)
            return converted
        except TypeError:  # not hashable
            return process(value)

    return convert


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction for one command: all of it commits, or none of it does."""
    with engine.begin() as conn:
        _require_schema(conn)
        yield conn


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A transaction for a command that only reads (`verify`, `reconcile`, `audit`,
    `export`): one snapshot, and on SQLite no write lock, so it works beside a writer
    and on a database file that is read-only."""
    with engine.connect() as conn:
        conn.execution_options(reading=True)
        with conn.begin():
            _require_schema(conn)
            yield conn


@contextmanager
def rolled_back(engine: Engine) -> Iterator[Connection]:
    """A transaction that is always rolled back, for a command that does another's work
    to show its result and keeps none of it (`preview` does a close's)."""
    with engine.connect() as conn:
        outer = conn.begin()
        try:
            _require_schema(conn)
            yield conn
        finally:
            outer.rollback()


def date_text(conn: Connection, column: SQLColumn) -> ColumnElement[str]:
    """A date column read as its ISO text (`YYYY-MM-DD`) on both databases, for `frame`."""
    if conn.dialect.name == "postgresql":
        return func.to_char(column, "YYYY-MM-DD")
    return cast(column, String)


def frame(conn: Connection, statement: Select, schema: dict[str, Any], size: int = 50_000) -> pl.DataFrame:
    """The rows of `statement` as one Polars frame of `schema` (a name and a Polars type
    for each selected column, in order), read with `plain_rows`: select a date column
    through `date_text`, and give it `pl.Date` here. `size` rows at a time pass through
    Python (a million usage lines peaked 50 MB lower at 50,000 than at 200,000)."""
    read = {name: pl.String if kind == pl.Date else kind for name, kind in schema.items()}
    parts = [pl.DataFrame(rows, schema=read, orient="row") for rows in plain_rows(conn, statement, size)]
    table = pl.concat(parts) if parts else pl.DataFrame(schema=read)
    dates = [pl.col(name).str.to_date("%Y-%m-%d") for name, kind in schema.items() if kind == pl.Date]
    return table.with_columns(dates) if dates else table


def insert_plain_rows(conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Insert rows of plain values in the current transaction, with the drivers' public
    APIs: PostgreSQL's COPY (binary when `copy_types` knows every column), SQLite's
    `executemany` of one INSERT. No SQLAlchemy conversion happens: each value must be
    what the database stores as is (on SQLite a date as its ISO text `YYYY-MM-DD`, as
    SQLAlchemy stores a Date). A driver's error is raised as SQLAlchemy's (IntegrityError...)."""
    names = ", ".join(columns)
    dbapi_error = conn.dialect.dbapi.Error  # type: ignore[union-attr]  # connected: the driver connection and module are set
    raw = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        types = copy_types(table, tuple(columns))
        statement = f"COPY {table.name} ({names}) FROM STDIN" + (" (FORMAT BINARY)" if types else "")
        cursor = raw.cursor()  # type: ignore[union-attr]  # connected: the driver connection and module are set
        try:
            with cursor.copy(statement) as copy:
                if types:
                    copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
        except dbapi_error as exc:
            raise DBAPIError.instance(statement, None, exc, dbapi_error, dialect=conn.dialect) from exc
        finally:
            cursor.close()
        return
    statement = f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' * len(columns))})"
    cursor = raw.cursor()  # type: ignore[union-attr]  # connected: the driver connection and module are set
    try:
        cursor.executemany(statement, rows)
    except dbapi_error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi_error, dialect=conn.dialect) from exc
    finally:
        cursor.close()
