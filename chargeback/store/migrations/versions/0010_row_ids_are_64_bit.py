"""The keys of the tables that grow with the usage are 64-bit on PostgreSQL.

`usage.id` (and `entries.usage_id`, which names it) and `period_totals.id` were 32-bit
on PostgreSQL: at most 2,147,483,647 rows ever. An organisation feeding ten million
usage lines a month would have run out in eighteen years, and a million-line month adds
half a million period totals at every close and re-close. The journal's own key was
64-bit already. Each column becomes `bigint`, and its sequence counts as far.

SQLite is unchanged: a table's `INTEGER PRIMARY KEY` is its 64-bit row id already.

On PostgreSQL this rewrites the three tables and their indexes under an exclusive lock:
run it (`chargeback init`) with no other command running. On a database holding a
closed million-line month (1,000,000 usage lines, 1,000,215 entries, 563,797 period
totals; 696 MB) it took 19.9 s on the project's 2-core machine, and `verify` passed
after it.

Revision ID: 0010
Revises: 0009
"""

from alembic import op
from sqlalchemy import text

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: (table, column, whether a sequence counts it: the table's own key)
COLUMNS = (("usage", "id", True), ("entries", "usage_id", False), ("period_totals", "id", True))


def _retype(kind: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table, column, counted in COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {kind}")
        if counted:
            sequence = bind.execute(text(f"SELECT pg_get_serial_sequence('{table}', '{column}')")).scalar()
            # a sequence's bounds follow its type when they were the old type's own
            op.execute(f"ALTER SEQUENCE {sequence} AS {kind}")


def upgrade() -> None:
    _retype("bigint")


def downgrade() -> None:
    """Refused by PostgreSQL if a key is already past the 32-bit range."""
    _retype("integer")
