"""The journal's `hash` column loses its unique index.

The index made every posted entry update a b-tree in random order (a third of the time
of inserting a million entries on SQLite) and served no query: the hash chain, which
`verify` recomputes from the first entry, is what proves the journal unchanged, and a
duplicate hash would already break it. On SQLite the table is rebuilt (its unique
constraint is part of the table); `chargeback.store.db.upgrade` turns foreign keys off for
that and checks them all before it commits.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.drop_constraint("uq_entries_hash", type_="unique")


def downgrade() -> None:
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_entries_hash", ["hash"])
