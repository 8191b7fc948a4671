"""The database schema: Alembic's migrations build exactly the models, `init` is safe to
repeat, and the database itself enforces what it can."""

from pathlib import Path

import pytest
from conftest import model_differences
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
    type_coerce,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from chargeback import api
from chargeback.store import db
from chargeback.store.schema import STATEMENT_CHECKED


def test_migrations_build_exactly_the_models(db_url: str) -> None:
    api.init(db_url)
    api.init(db_url)
    engine = db.connect(db_url)
    with engine.connect() as conn:
        assert model_differences(conn) == []
        assert db.schema_is_current(conn)
    engine.dispose()


def test_the_database_enforces_uniqueness_and_states(loaded: str, tmp_path: Path) -> None:
    from conftest import usage_file

    api.import_file(loaded, usage_file(tmp_path, "u.csv", [["2026-03-02", "HELP", "ART", "1", "T-1", ""]]), "2026-03")
    engine = db.connect(loaded)
    statements = [
        "INSERT INTO usage (period, import_id, line, date, service, consumer, quantity_micro, reference) "
        "SELECT period, import_id, 3, date, service, consumer, quantity_micro, reference FROM usage",
        "UPDATE periods SET status = 'locked'",
        "INSERT INTO periods (period, status) VALUES ('2026-03', 'open')",
        "UPDATE usage SET quantity_micro = 0",
        "UPDATE usage SET consumer = 'NOBODY'",
    ]
    for statement in statements:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(statement))
    engine.dispose()


def _closed(url: str, tmp_path: Path) -> None:
    from conftest import usage_file

    api.import_file(
        url,
        usage_file(
            tmp_path,
            "u.csv",
            [["2026-03-02", "HELP", "ART", "2", "T-1", ""], ["2026-03-03", "HELP", "ART", "1", "T-2", ""]],
        ),
        "2026-03",
    )
    api.close(url, "2026-03", tmp_path / "out", documents=False)


def test_the_database_refuses_a_usage_line_or_entry_that_names_nothing(loaded: str, tmp_path: Path) -> None:
    """Every unit, service, period, import and usage line that a usage line or an entry
    names exists: foreign keys on SQLite, a check of each statement's rows on PostgreSQL
    (migration 0008). A statement of many rows with one bad is refused whole, under the
    foreign key's name."""
    from conftest import usage_file

    _closed(loaded, tmp_path)
    api.import_file(
        loaded, usage_file(tmp_path, "april.csv", [["2026-04-02", "HELP", "ART", "1", "T-3", ""]]), "2026-04"
    )  # a line not priced yet
    engine = db.connect(loaded)

    def copy_usage(**changed: str) -> str:
        values = {column: changed.get(column, column) for column in ("period", "import_id", "service", "consumer")}
        return (
            "INSERT INTO usage (period, import_id, line, date, service, consumer, quantity_micro, reference) "
            "SELECT {period}, {import_id}, line, date, {service}, {consumer}, quantity_micro, "
            "reference || '-copy' FROM usage"
        ).format(**values)

    columns = (
        "period, posted_at, date, service_date, kind, usage_id, source, service, provider, consumer, "
        "customer_class, quantity_micro, rate_micro, amount_minor, debit_account, credit_account, "
        "prev_hash, hash"
    )
    copy_entry = (
        f"INSERT INTO entries (id, {columns}) SELECT id + 100, "
        + columns.replace("usage_id", "{usage_id}").replace("service,", "{service},", 1)
        + " FROM entries"
    )
    refused = {
        "fk_usage_consumer_units": copy_usage(consumer="CASE WHEN line = 2 THEN 'NOBODY' ELSE consumer END"),
        "fk_usage_import_id_imports": copy_usage(import_id="import_id + 99"),
        "fk_usage_period_periods": copy_usage(period="'2031-01'"),
        "fk_entries_usage_id_usage": copy_entry.format(
            usage_id="(SELECT max(id) FROM usage) + 1000", service="service"
        ),
        "fk_entries_service_services": copy_entry.format(usage_id="NULL", service="'NOSUCH'"),
        "fk_entries_consumer_units": "UPDATE entries SET consumer = 'NOBODY' WHERE id = (SELECT max(id) FROM entries)",
        "fk_usage_service_services": copy_usage(service="CASE WHEN line = 2 THEN 'NOSUCH' ELSE service END"),
        "fk_entries_period_periods": "UPDATE entries SET period = '2031-01'",
        "fk_entries_provider_units": "UPDATE entries SET provider = 'NOBODY'",
        "fk_charge_lines_usage_id_usage": "INSERT INTO charge_lines (usage_id, entry_id, amount_minor) "
        "SELECT id + 1000, (SELECT max(id) FROM entries), 1 FROM usage",
        "fk_charge_lines_entry_id_entries": "INSERT INTO charge_lines (usage_id, entry_id, amount_minor) "
        "SELECT max(u.id), max(e.id) + 1000, 1 FROM usage u, entries e",
        "fk_line_tiers_usage_id_usage": "INSERT INTO line_tiers (usage_id, piece, tier_from_micro, quantity_micro, "
        "rate_micro) SELECT id + 1000, 1, 0, 1, 1 FROM usage",
    }
    assert set(refused) == STATEMENT_CHECKED
    with engine.connect() as conn:  # PostgreSQL: triggers in place of these foreign keys; SQLite: the keys
        found = {
            fk["name"]
            for table in ("usage", "entries", "charge_lines", "line_tiers")
            for fk in inspect(conn).get_foreign_keys(table)
        }
    assert (found & STATEMENT_CHECKED) == (set() if engine.dialect.name == "postgresql" else STATEMENT_CHECKED)
    one_bad_usage_line = (
        "UPDATE entries SET usage_id = CASE WHEN id = (SELECT max(id) FROM entries) "
        "THEN (SELECT max(id) FROM usage) + 1000 ELSE usage_id END"
    )
    for name, statement in [*refused.items(), ("fk_entries_usage_id_usage", one_bad_usage_line)]:
        with pytest.raises(IntegrityError) as caught, engine.begin() as conn:
            conn.execute(text(statement))
        if engine.dialect.name == "postgresql":
            assert caught.value.orig.diag.constraint_name == name
            assert "is not present in table" in str(caught.value)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM usage")).scalar() == 3
        assert conn.execute(text("SELECT count(*) FROM usage WHERE consumer = 'ART'")).scalar() == 3
        entries = conn.execute(text("SELECT count(*) FROM entries")).scalar()
    with engine.begin() as conn:  # the same statements naming what exists go through
        conn.execute(text(copy_usage()))
        conn.execute(text("UPDATE entries SET consumer = consumer, usage_id = usage_id"))
        assert conn.execute(text("SELECT count(*) FROM usage")).scalar() == 6
        conn.rollback()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM entries")).scalar() == entries
    engine.dispose()


def test_a_usage_line_once_stored_is_never_changed_or_deleted(loaded: str, tmp_path: Path) -> None:
    """Usage lines are append-only (migration 0009), in an open period too: the database
    refuses to change or delete one, or to empty the table, and says why."""
    from conftest import usage_file

    api.import_file(loaded, usage_file(tmp_path, "u.csv", [["2026-03-02", "HELP", "ART", "2", "T-1", ""]]), "2026-03")
    engine = db.connect(loaded)
    statements = [
        "UPDATE usage SET quantity_micro = 1000000",
        "UPDATE usage SET description = 'fixed'",
        "DELETE FROM usage",
        "DELETE FROM usage WHERE reference = 'T-1'",
    ]
    if engine.dialect.name == "postgresql":
        statements.append("TRUNCATE usage")
    for statement in statements:
        with pytest.raises(IntegrityError, match="usage lines are append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.begin() as conn:
        assert conn.execute(text("DELETE FROM usage WHERE reference = 'NONE'")).rowcount == 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT quantity_micro, description FROM usage")).all() == [(2_000_000, None)]
    api.close(loaded, "2026-03", tmp_path / "out", documents=False)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM charge_lines")).scalar() == 1
    engine.dispose()


def test_the_database_refuses_removing_what_a_usage_line_or_entry_names(loaded: str, tmp_path: Path) -> None:
    """A unit, service, period or usage line named by a usage line or an entry cannot be
    deleted or have its key changed, nor its table emptied; one named by nothing can."""
    _closed(loaded, tmp_path)
    engine = db.connect(loaded)
    statements = [
        "DELETE FROM usage WHERE reference = 'T-1'",
        "DELETE FROM units WHERE code = 'ART'",
        "UPDATE services SET code = 'HELP2' WHERE code = 'HELP'",
        "UPDATE periods SET period = '2031-03' WHERE period = '2026-03'",
        "DELETE FROM imports",
    ]
    if engine.dialect.name == "postgresql":  # SQLite has no TRUNCATE
        statements += ["TRUNCATE usage", "TRUNCATE imports", "TRUNCATE units CASCADE"]
    for statement in statements:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.begin() as conn:
        conn.execute(text("UPDATE units SET name = 'Art and Design' WHERE code = 'ART'"))
        conn.execute(text("INSERT INTO periods (period, status) VALUES ('2031-01', 'open')"))
        assert conn.execute(text("DELETE FROM periods WHERE period = '2031-01'")).rowcount == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM units WHERE code = 'ART'")).scalar() == "Art and Design"
        assert conn.execute(text("SELECT count(*) FROM usage")).scalar() == 2
    engine.dispose()


def test_a_unit_named_by_an_uncommitted_usage_line_cannot_be_deleted_meanwhile(pg_url: str, mini_book: Path) -> None:
    """PostgreSQL: the statement's check locks the rows it names for key share, as a foreign
    key does, so deleting one waits for the import to end (here: times out) instead of
    leaving its lines naming nothing."""
    api.load(pg_url, mini_book)
    engine = db.connect(pg_url)
    with engine.connect() as importing, engine.connect() as deleting:
        importing.execute(text("INSERT INTO periods (period, status) VALUES ('2026-03', 'open')"))
        importing.execute(
            text(
                "INSERT INTO imports (period, file_name, sha256, at, lines_read, imported, duplicates) "
                "VALUES ('2026-03', 'u.csv', '', now(), 1, 1, 0)"
            )
        )
        importing.execute(
            text(
                "INSERT INTO usage (period, import_id, line, date, service, consumer, "
                "quantity_micro, reference) SELECT '2026-03', max(id), 1, '2026-03-02', "
                "'HELP', 'ART', 1000000, 'T-1' FROM imports"
            )
        )
        deleting.execute(text("SET lock_timeout = '300ms'"))
        with pytest.raises(OperationalError, match="lock timeout"):
            deleting.execute(text("DELETE FROM units WHERE code = 'ART'"))
        deleting.rollback()
        importing.commit()
        with pytest.raises(IntegrityError):
            deleting.execute(text("DELETE FROM units WHERE code = 'ART'"))
    engine.dispose()


def plain_table(name: str, *more: Column) -> Table:
    """A table with a column of each plain kind: integer, big integer, short text, long text, date."""
    return Table(
        name,
        MetaData(),
        Column("n", Integer),
        Column("big", BigInteger),
        Column("code", String(8)),
        Column("memo", Text),
        Column("day", Date),
        *more,
    )


def test_bulk_insert_stores_every_kind_of_value_as_given(db_url: str) -> None:
    """PostgreSQL's COPY goes in binary form where every column has one (`db.copy_types`),
    in text form otherwise; either way, and on SQLite, the values read back as given."""
    import datetime as dt

    from sqlalchemy import Numeric, select

    kinds = plain_table("kinds", Column("at", DateTime))
    decimal = Table("decimals", MetaData(), Column("n", Integer), Column("amount", Numeric(12, 2)))
    assert db.copy_types(kinds, ("n", "big", "code", "memo", "day", "at")) == (
        "int4",
        "int8",
        "text",
        "text",
        "date",
        "timestamp",
    )
    assert db.copy_types(decimal, ("n", "amount")) is None
    rows = [
        (1, 2**62, "ART", 'Café, "quoted"\ttab\nline', dt.date(2026, 3, 31), dt.datetime(2026, 4, 1, 9, 30, 5)),
        (2, -(2**62), "X", None, None, None),
    ]
    engine = db.connect(db_url)
    with engine.begin() as conn:
        kinds.create(conn)
        decimal.create(conn)
        assert db.bulk_insert(conn, kinds, ("n", "big", "code", "memo", "day", "at"), rows) == 2
        assert db.bulk_insert(conn, decimal, ("n", "amount"), [(1, "12.50")]) == 1
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(select(kinds).order_by(kinds.c.n))] == rows
        assert str(conn.execute(select(decimal.c.amount)).scalar()) == "12.50"
    engine.dispose()


def test_plain_rows_reads_what_sqlalchemy_reads_a_chunk_at_a_time(db_url: str) -> None:
    """`db.plain_rows` gives the rows as plain tuples, `size` at a time, with the values
    SQLAlchemy gives, inside the transaction that reads them (a row not yet committed
    included); a column or a parameter that needs SQLAlchemy's conversion is refused."""
    import datetime as dt

    from sqlalchemy import TypeDecorator, select

    class Shouted(TypeDecorator):
        impl = String
        cache_ok = True

        def process_result_value(self, value, dialect):
            return value.upper()

        def process_bind_param(self, value, dialect):
            return value.lower()

    lines = plain_table("lines")
    rows = [
        (n, 2**40 + n, f"C{n % 3}", None if n % 4 else f'memo {n}, "quoted"', dt.date(2026, 3, 1 + n % 28))
        for n in range(1, 12)
    ]
    engine = db.connect(db_url)
    with engine.begin() as conn:
        lines.create(conn)
        db.bulk_insert(conn, lines, ("n", "big", "code", "memo", "day"), rows)
    with engine.begin() as conn:
        conn.execute(lines.insert().values(n=12, big=0, code="NEW", memo=None, day=dt.date(2026, 3, 31)))
        query = (
            select(lines.c.n, lines.c.big, lines.c.code, lines.c.memo, *db.dates_as_stored([lines.c.day]))
            .where(lines.c.code != "C0")
            .order_by(lines.c.n)
        )
        chunks = list(db.plain_rows(conn, query, size=3))
        assert [len(chunk) for chunk in chunks] == [3, 3, 3]  # 8 of the 11 committed, and the new one
        assert all(type(row) is tuple for chunk in chunks for row in chunk)
        read = [(*row[:4], db.stored_date(row[4])) for chunk in chunks for row in chunk]
        assert read == [tuple(r) for r in conn.execute(select(lines).where(lines.c.code != "C0").order_by(lines.c.n))]
        assert read[-1][2] == "NEW"
        listed = (
            select(lines.c.n).where(lines.c.code.not_in(["C0", "C2"]), lines.c.n.in_([1, 4, 7, 9])).order_by(lines.c.n)
        )  # a list is rendered as one parameter a value
        assert [row for chunk in db.plain_rows(conn, listed) for row in chunk] == [(1,), (4,), (7,)]
        for refused in (
            select(lines.c.n, type_coerce(lines.c.code, Shouted)),
            select(lines.c.n).where(lines.c.code == type_coerce("C1", Shouted)),
        ):
            with pytest.raises(ValueError, match="needs SQLAlchemy's conversion"):
                next(db.plain_rows(conn, refused))
    engine.dispose()
