"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from conftest import model_differences
from sqlalchemy import inspect, select

from chargeback import api
from chargeback.store import db
from chargeback.store.schema import Adjustment, ChargeLine, Entry, PeriodTotalRow, Usage


def _diff(engine) -> list:
    with engine.connect() as conn:
        return model_differences(conn)


def test_the_schema_check_knows_the_newest_migration(db_url: str) -> None:
    """Commands check the schema against `db.SCHEMA_HEAD` without loading Alembic: a new
    migration must move it."""
    engine = db.connect(db_url)
    with engine.connect() as conn:
        assert ScriptDirectory.from_config(db.alembic_config(conn)).get_current_head() == db.SCHEMA_HEAD
        assert not db.schema_is_current(conn)  # an empty database
    api.init(engine)
    with engine.connect() as conn:
        assert db.schema_is_current(conn)


def test_migrations_match_the_models(db_url: str) -> None:
    engine = db.connect(db_url)
    api.init(engine)
    assert _diff(engine) == []
    with engine.connect() as conn:
        assert db.schema_is_current(conn)
        tables = set(inspect(conn).get_table_names())
    assert {"allocations", "costs", "drivers", "provider_costs", "entry_tiers"} <= tables


def test_upgrade_keeps_data_and_downgrade_round_trips(db_url: str, mini_book: Path) -> None:
    engine = db.connect(db_url)
    with engine.begin() as conn:
        command.upgrade(db.alembic_config(conn), "0001")
    with engine.begin() as conn:
        command.upgrade(db.alembic_config(conn), "head")
    api.load(engine, mini_book)
    api.adjust(engine, "2026-03", "HELP", "ART", "10.00", "setup")
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "0001")
    with engine.begin() as conn:
        assert "allocations" not in inspect(conn).get_table_names()
        assert not db.schema_is_current(conn)
        command.upgrade(db.alembic_config(conn), "head")
    assert _diff(engine) == []
    with engine.connect() as conn:
        rows = conn.execute(select(Adjustment.amount_minor, Adjustment.against_service)).all()
    assert rows == [(1000, None)]


def test_dropping_the_hash_index_keeps_the_journal_and_its_constraints(
    db_url: str, mini_book: Path, tmp_path: Path
) -> None:
    """0005 rebuilds `entries` on SQLite: posted entries, their checks, foreign keys and
    the tier pieces that refer to them come through, and `verify` still passes."""
    engine = db.connect(db_url)
    api.load(engine, mini_book)
    for period, path in api.usage_files(mini_book):
        api.import_file(engine, path, period)
    api.close(engine, "2026-03", tmp_path / "out", documents=False)

    def shape() -> tuple[object, ...]:
        with engine.connect() as conn:
            found = inspect(conn)
            return (
                sorted(c["name"] for c in found.get_check_constraints("entries")),
                sorted(f["name"] for f in found.get_foreign_keys("entries")),
                sorted(f["referred_table"] for f in found.get_foreign_keys("entry_tiers")),
                sorted(tuple(u["column_names"]) for u in found.get_unique_constraints("entries")),
                conn.execute(select(Entry.id, Entry.hash).order_by(Entry.id)).all(),
            )

    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "0007")  # 0008 moves foreign keys on PostgreSQL
    after = shape()
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "0004")
    before = shape()
    assert before[3] == sorted([("hash",), ("source",), ("usage_id",)])
    with engine.begin() as conn:
        command.upgrade(db.alembic_config(conn), "0007")
    assert shape() == after
    db.upgrade(engine)
    assert after[3] == sorted([("source",), ("usage_id",)])
    assert after[:3] == before[:3]
    assert after[0] == ["ck_entries_class", "ck_entries_kind", "ck_entries_two_accounts"]
    assert len(after[4]) > 0
    assert api.verify(engine).ok
    assert _diff(engine) == []


def test_the_upgrade_stores_the_totals_of_every_period_from_its_entries(closed: str) -> None:
    """0006: a journal closed before it gets each period's totals from its entries, so
    later closes can read them and `verify` passes."""
    from chargeback.close.reconciliation import stored_totals

    engine = db.connect(closed)  # the mini book's months closed by `run`
    with engine.connect() as conn:
        before = {period: stored_totals(conn, period) for period in ("2026-03", "2026-04")}
    assert all(before.values())
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "0005")
        assert "period_totals" not in inspect(conn).get_table_names()
    db.upgrade(engine)
    with engine.connect() as conn:
        assert {period: stored_totals(conn, period) for period in before} == before
    assert api.verify(engine).ok


def test_an_entry_id_becomes_sqlite_s_row_id_and_keeps_its_entry(closed: str) -> None:
    """0007: on SQLite `entries.id` becomes the row id, so a period's entries are read in
    id order without sorting them; every entry, its hash and its tier pieces come
    through, and `verify` passes. PostgreSQL keeps its BIGINT."""
    engine = db.connect(closed)  # the mini book's months closed by `run`
    sqlite = engine.dialect.name == "sqlite"
    journal = select(Entry.id, Entry.hash).where(Entry.period == "2026-03").order_by(Entry.id)

    def shape() -> tuple[object, ...]:
        with engine.connect() as conn:
            columns = {c["name"]: str(c["type"]) for c in inspect(conn).get_columns("entries")}
            plan = (
                conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + str(journal.compile(conn, compile_kwargs={"literal_binds": True}))
                ).all()
                if sqlite
                else []
            )
            rowid = conn.exec_driver_sql("SELECT count(*) FROM entries WHERE rowid <> id").scalar() if sqlite else 0
            return columns["id"], " ".join(str(row[-1]) for row in plan), rowid, conn.execute(journal).all()

    after = shape()
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "0006")
    before = shape()
    db.upgrade(engine)
    assert shape() == after
    assert before[3] == after[3] and len(after[3]) > 0
    if sqlite:
        assert (before[0], after[0]) == ("BIGINT", "INTEGER")
        assert "TEMP B-TREE" in before[1] and "TEMP B-TREE" not in after[1]
        assert after[2] == 0
    else:
        assert before[0] == after[0] == "BIGINT"
    assert api.verify(engine).ok
    assert _diff(engine) == []


def test_usage_lines_and_totals_numbered_past_32_bits_are_imported_closed_and_verified(
    pg_url: str, mini_book: Path, tmp_path: Path
) -> None:
    """0010: on PostgreSQL a usage line's key, the entry's reference to it and a period
    total's key go past 2,147,483,647 (a big organisation's ten million lines a month, for
    eighteen years). SQLite's keys are its 64-bit row ids already."""
    engine = db.connect(pg_url)
    api.init(engine)
    start = 3_000_000_000
    with engine.begin() as conn:
        for table in ("usage", "period_totals"):
            conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {start})")
    api.run(engine, mini_book, tmp_path / "out")
    with engine.connect() as conn:
        lines = conn.execute(select(Usage.id).order_by(Usage.id)).scalars().all()
        named = conn.execute(select(ChargeLine.usage_id).order_by(ChargeLine.usage_id)).scalars().all()
        totals = conn.execute(select(PeriodTotalRow.id)).scalars().all()
    assert lines and lines[0] == start + 1
    assert named == lines  # every usage line was charged once, by its 64-bit key
    assert totals and min(totals) > 2**31
    assert api.verify(engine).ok


def test_widening_the_keys_keeps_the_journal(closed: str) -> None:
    """0010 down and up again on a closed journal: every entry, its hash and the usage
    lines priced into it come through, and `verify` passes."""
    engine = db.connect(closed)  # the mini book's months closed by `run`
    journal = (
        select(Entry.id, ChargeLine.usage_id, Entry.hash)
        .outerjoin(ChargeLine, ChargeLine.entry_id == Entry.id)
        .order_by(Entry.id, ChargeLine.usage_id)
    )
    with engine.connect() as conn:
        before = conn.execute(journal).all()
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "0009")
        assert not db.schema_is_current(conn)
    db.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(journal).all() == before
    assert any(usage_id is not None for _, usage_id, _ in before)
    assert _diff(engine) == []
    assert api.verify(engine).ok


def test_a_journal_posted_line_by_line_upgrades_to_charges_of_one_line(
    db_url: str, mini_book: Path, tmp_path: Path
) -> None:
    """0011 on a journal as the code before charges posted it: one entry per usage line,
    naming it in `usage_id`, and no line recorded anywhere else. Upgraded, each entry is a
    charge of one line: `verify` passes, the close posts nothing again for those lines, and
    a credit against one of them is held to that line's amount."""
    import datetime as dt
    from decimal import Decimal

    import pytest

    from chargeback.book.snapshot import load_reference
    from chargeback.close.periods import lock_period
    from chargeback.core.errors import Refused
    from chargeback.core.money import minor_of_product, to_micro
    from chargeback.ledger import journal
    from chargeback.ledger.entries import Draft, accounts

    engine = db.connect(db_url)
    api.load(engine, mini_book)
    api.import_file(engine, mini_book / "usage" / "2026-03.csv", "2026-03")
    with db.transaction(engine) as conn:
        ref = load_reference(conn)
        lock_period(conn, "2026-03", create=True)
        drafts = []
        for line in conn.execute(select(Usage.__table__).order_by(Usage.id)):
            unit, provider = ref.units[line.consumer], ref.services[line.service].provider
            rate = ref.rates.find(line.service, unit.kind, line.date)
            assert rate is not None
            rate_micro = to_micro(rate.rate)
            debit, credit = accounts(unit.kind, line.consumer, provider)
            drafts.append(
                Draft(
                    "2026-03",
                    line.date,
                    line.date,
                    "usage",
                    line.id,
                    None,
                    line.service,
                    provider,
                    line.consumer,
                    unit.kind,
                    line.quantity_micro,
                    rate_micro,
                    minor_of_product(line.quantity_micro, rate_micro, ref.digits),
                    debit,
                    credit,
                    unit.expense_account,
                    ref.units[provider].revenue_account,
                    line.reference,
                    line.description,
                    rate.provenance,
                )
            )
        journal.post(conn, drafts, dt.datetime(2026, 3, 31, 18, 0))
        assert conn.execute(select(ChargeLine.usage_id)).first() is None  # nothing recorded: as before 0011
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "0010")
    db.upgrade(engine)
    with engine.connect() as conn:
        lines = conn.execute(
            select(ChargeLine.usage_id, ChargeLine.entry_id, ChargeLine.amount_minor).order_by(ChargeLine.usage_id)
        ).all()
        entries = conn.execute(
            select(Entry.usage_id, Entry.id, Entry.amount_minor)
            .where(Entry.usage_id.is_not(None))
            .order_by(Entry.usage_id)
        ).all()
    assert [tuple(row) for row in lines] == [tuple(row) for row in entries] and len(lines) == len(drafts)
    result = api.close(engine, "2026-03", tmp_path / "out", documents=False)
    assert result.reconciliation.balanced
    with engine.connect() as conn:
        assert conn.execute(select(ChargeLine.usage_id)).all() == [(u,) for u, _, _ in lines]  # none again
    assert api.verify(engine).ok
    first = drafts[0]
    with pytest.raises(Refused, match="larger than the original charge"):
        api.adjust(
            engine,
            "2026-04",
            None,
            None,
            str(Decimal(-(first.amount_minor + 1)) / 100),
            "too much",
            against=f"{first.service}:{first.reference}",
        )
    api.adjust(
        engine,
        "2026-04",
        None,
        None,
        str(Decimal(-first.amount_minor) / 100),
        "all of it",
        against=f"{first.service}:{first.reference}",
    )


def test_who_imported_each_earlier_file_comes_from_the_audit_log_or_stays_unknown(
    db_url: str, mini_book: Path, tmp_path: Path
) -> None:
    """0013: each import made before it gets its user from its `import` audit record; an
    import without one (made before the audit log) stays unknown (NULL)."""
    from sqlalchemy import text

    from chargeback.store.schema import Import

    engine = db.connect(db_url)
    api.load(engine, mini_book)
    api.import_file(engine, mini_book / "usage" / "2026-03.csv", "2026-03")
    api.import_file(engine, mini_book / "usage" / "2026-04.csv", "2026-04")
    user = api.audit_log(engine)[0][-1].user
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "0012")
        conn.execute(
            text(
                "INSERT INTO imports (period, file_name, sha256, at, lines_read, imported, duplicates) "
                "VALUES ('2026-04', 'before-the-audit-log.csv', :digest, '2026-04-02 08:00:00', 0, 0, 0)"
            ),
            {"digest": "0" * 64},
        )
    db.upgrade(engine)
    with engine.connect() as conn:
        found = conn.execute(select(Import.file_name, Import.user).order_by(Import.id)).all()
    assert [(Path(name).name, who) for name, who in found] == [
        ("2026-03.csv", user),
        ("2026-04.csv", user),
        ("before-the-audit-log.csv", None),
    ]
    assert user
    assert _diff(engine) == []
    engine.dispose()
