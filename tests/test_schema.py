"""The database schema: Alembic's migrations build exactly the models, `init` is safe to
repeat, and the database itself enforces what it can."""

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from chargeback import api, db
from chargeback.schema import Base


def test_migrations_build_exactly_the_models(db_url: str) -> None:
    api.init(db_url)
    api.init(db_url)
    engine = db.connect(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
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
        with pytest.raises(IntegrityError):
            with engine.begin() as conn:
                conn.execute(text(statement))
    engine.dispose()
