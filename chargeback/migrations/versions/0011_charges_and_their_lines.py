"""The journal posts charges, not lines: each usage line's price is kept in `charge_lines`.

A usage charge is the usage lines of one consumer and one service priced by one rate row
(or one tier schedule) in one close, posted as one entry. Each line keeps its amount,
its rate and the entry it belongs to in `charge_lines`, and the tier pieces of a line of
a tiered service in `line_tiers`. The entry gains `lines_digest`, the sha256 of its lines,
which its hash covers. `book.invoice_line_limit` says how many lines an invoice lists.

Entries posted before this (one entry per usage line, named by `entries.usage_id`) are
charges with one line: their lines are written into `charge_lines` (and their tier pieces
from `entry_tiers` into `line_tiers`) here, so every reader finds the lines of every
charge in one place. Their hashes are unchanged (no digest).

Both new tables are append-only, like the usage lines. On PostgreSQL their references
are checked a statement at a time by a trigger (migration 0008 says why); SQLite keeps
its foreign keys.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY = ("priced usage lines are append-only: the price of a posted line cannot be changed or deleted "
               "(correct a charge with chargeback adjust)")
#: (table, column, referred table, referred column, foreign key's name)
REFERENCES = (
    ("charge_lines", "usage_id", "usage", "id", "fk_charge_lines_usage_id_usage"),
    ("charge_lines", "entry_id", "entries", "id", "fk_charge_lines_entry_id_entries"),
    ("line_tiers", "usage_id", "usage", "id", "fk_line_tiers_usage_id_usage"),
)
TABLES = ("charge_lines", "line_tiers")


def _references_exist(table: str) -> str:
    """After each INSERT statement on `table`: every usage line and entry its new rows name
    exists. Neither can be removed afterwards (usage lines are append-only; entries are
    guarded by the hash chain), so nothing is locked."""
    body = []
    for _, column, referred, key, name in (r for r in REFERENCES if r[0] == table):
        body += [
            f"SELECT n.{column}::text INTO missing FROM new_rows n WHERE NOT EXISTS "
            f"(SELECT 1 FROM {referred} r WHERE r.{key} = n.{column}) LIMIT 1;",
            "IF FOUND THEN",
            f"  RAISE EXCEPTION 'insert on table \"{table}\" violates foreign key constraint \"{name}\"' "
            "USING ERRCODE = 'foreign_key_violation', "
            f"DETAIL = format('Key ({column})=(%s) is not present in table \"{referred}\".', missing), "
            f"CONSTRAINT = '{name}', TABLE = '{table}';",
            "END IF;",
        ]
    return (f"CREATE FUNCTION {table}_references_exist() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            "DECLARE missing text;\nBEGIN\n  " + "\n  ".join(body) + "\n  RETURN NULL;\nEND $$")


def upgrade() -> None:
    bind = op.get_bind()
    postgresql = bind.dialect.name == "postgresql"
    with op.batch_alter_table("entries") as batch:
        batch.add_column(sa.Column("lines_digest", sa.String(64), nullable=True))
    with op.batch_alter_table("book") as batch:
        batch.add_column(sa.Column("invoice_line_limit", sa.Integer(), nullable=False, server_default="300"))
    op.create_table(
        "charge_lines",
        sa.Column("usage_id", ROW_ID, sa.ForeignKey("usage.id", name="fk_charge_lines_usage_id_usage"),
                  primary_key=True, autoincrement=False),
        sa.Column("entry_id", ROW_ID, sa.ForeignKey("entries.id", name="fk_charge_lines_entry_id_entries"),
                  nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("rate_micro", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("usage_id", name="pk_charge_lines"),
    )
    op.create_index("ix_charge_lines_entry_id", "charge_lines", ["entry_id"])
    op.create_table(
        "line_tiers",
        sa.Column("usage_id", ROW_ID, sa.ForeignKey("usage.id", name="fk_line_tiers_usage_id_usage"),
                  nullable=False),
        sa.Column("piece", sa.Integer(), nullable=False),
        sa.Column("tier_from_micro", sa.BigInteger(), nullable=False),
        sa.Column("quantity_micro", sa.BigInteger(), nullable=False),
        sa.Column("rate_micro", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("usage_id", "piece", name="pk_line_tiers"),
        sa.CheckConstraint("rate_micro >= 0", name="ck_line_tiers_rate_not_negative"),
    )
    if postgresql:
        for table, _, _, _, name in REFERENCES:
            op.drop_constraint(name, table, type_="foreignkey")
    op.execute("INSERT INTO charge_lines (usage_id, entry_id, amount_minor, rate_micro) "
               "SELECT usage_id, id, amount_minor, rate_micro FROM entries WHERE usage_id IS NOT NULL")
    op.execute("INSERT INTO line_tiers (usage_id, piece, tier_from_micro, quantity_micro, rate_micro) "
               "SELECT e.usage_id, t.piece, t.tier_from_micro, t.quantity_micro, t.rate_micro "
               "FROM entry_tiers t JOIN entries e ON e.id = t.entry_id WHERE e.usage_id IS NOT NULL")
    if not postgresql:
        for table in TABLES:
            for action in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END")
        return
    op.execute("CREATE FUNCTION priced_lines_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
               f"BEGIN RAISE EXCEPTION '{APPEND_ONLY}' USING ERRCODE = 'restrict_violation', "
               "TABLE = TG_TABLE_NAME; END $$")
    for table in TABLES:
        op.execute(_references_exist(table))
        op.execute(f"CREATE TRIGGER {table}_references_on_insert AFTER INSERT ON {table} "
                   "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
                   f"EXECUTE FUNCTION {table}_references_exist()")
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION priced_lines_append_only()")
        op.execute(f"CREATE TRIGGER {table}_not_truncated BEFORE TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION priced_lines_append_only()")


def downgrade() -> None:
    """Only while no charge of several lines was posted: the old journal cannot hold one."""
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER {table}_not_truncated ON {table}")
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER {table}_references_on_insert ON {table}")
            op.execute(f"DROP FUNCTION {table}_references_exist()")
        op.execute("DROP FUNCTION priced_lines_append_only()")
    op.drop_table("line_tiers")
    op.drop_index("ix_charge_lines_entry_id", "charge_lines")
    op.drop_table("charge_lines")
    with op.batch_alter_table("book") as batch:
        batch.drop_column("invoice_line_limit")
    with op.batch_alter_table("entries") as batch:
        batch.drop_column("lines_digest")
