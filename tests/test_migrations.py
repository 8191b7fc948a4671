"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from chargeback import api, db
from chargeback.schema import Adjustment, Base


def _diff(engine) -> list:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "compare_server_default": False})
        return compare_metadata(context, Base.metadata)


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
        command.upgrade(db._alembic_config(conn), "0001")
    with engine.begin() as conn:
        command.upgrade(db._alembic_config(conn), "head")
    api.load(engine, mini_book)
    api.adjust(engine, "2026-03", "HELP", "ART", "10.00", "setup")
    with engine.begin() as conn:
        command.downgrade(db._alembic_config(conn), "0001")
    with engine.begin() as conn:
        assert "allocations" not in inspect(conn).get_table_names()
        command.upgrade(db._alembic_config(conn), "head")
    assert _diff(engine) == []
    with engine.connect() as conn:
        rows = conn.execute(select(Adjustment.amount_minor, Adjustment.against_service)).all()
    assert rows == [(1000, None)]
