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

A downgrade keeps the new tables and the digests (posted history is never deleted), and
an upgrade takes them up again. Both new tables are append-only, like the usage lines. On PostgreSQL their references
are checked a statement at a time by a trigger (migration 0008 says why); SQLite keeps
its foreign keys.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY = (
    "priced usage lines are append-only: the price of a posted line cannot be changed or deleted "
    "(correct a charge with chargeback adjust)"
)
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
            f'  RAISE EXCEPTION \'insert on table "{table}" violates foreign key constraint "{name}"\' '
            "USING ERRCODE = 'foreign_key_violation', "
            f"DETAIL = format('Key ({column})=(%s) is not present in table \"{referred}\".', missing), "
            f"CONSTRAINT = '{name}', TABLE = '{table}';",
            "END IF;",
        ]
    return (
        f"CREATE FUNCTION {table}_references_exist() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "DECLARE missing text;\nBEGIN\n  " + "\n  ".join(body) + "\n  RETURN NULL;\nEND $$"
    )


def upgrade() -> None:
    bind = op.get_bind()
    postgresql = bind.dialect.name == "postgresql"
    found = sa.inspect(bind)
    if "lines_digest" not in {c["name"] for c in found.get_columns("entries")}:
        with op.batch_alter_table("entries") as batch:
            batch.add_column(sa.Column("lines_digest", sa.String(64), nullable=True))
    with op.batch_alter_table("book") as batch:
        batch.add_column(sa.Column("invoice_line_limit", sa.Integer(), nullable=False, server_default="300"))
    if "charge_lines" in found.get_table_names():  # kept by a downgrade: the charges' lines are history
        if not postgresql:
            with op.batch_alter_table("charge_lines") as batch:
                batch.create_foreign_key("fk_charge_lines_entry_id_entries", "entries", ["entry_id"], ["id"])
            _sqlite_append_only()
        _backfill()
        return
    op.create_table(
        "charge_lines",
        sa.Column(
            "usage_id",
            ROW_ID,
            sa.ForeignKey("usage.id", name="fk_charge_lines_usage_id_usage"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column(
            "entry_id", ROW_ID, sa.ForeignKey("entries.id", name="fk_charge_lines_entry_id_entries"), nullable=False
        ),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("rate_micro", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("usage_id", name="pk_charge_lines"),
    )
    op.create_table(
        "line_tiers",
        sa.Column("usage_id", ROW_ID, sa.ForeignKey("usage.id", name="fk_line_tiers_usage_id_usage"), nullable=False),
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
    _backfill()
    if not postgresql:
        _sqlite_append_only()
        return
    op.execute(
        "CREATE FUNCTION priced_lines_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN RAISE EXCEPTION '{APPEND_ONLY}' USING ERRCODE = 'restrict_violation', "
        "TABLE = TG_TABLE_NAME; END $$"
    )
    for table in TABLES:
        op.execute(_references_exist(table))
        op.execute(
            f"CREATE TRIGGER {table}_references_on_insert AFTER INSERT ON {table} "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
            f"EXECUTE FUNCTION {table}_references_exist()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION priced_lines_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_not_truncated BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION priced_lines_append_only()"
        )


def _sqlite_append_only() -> None:
    for table in TABLES:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )


def _backfill() -> None:
    """The one line of each entry posted per usage line, where it is not recorded yet."""
    op.execute(
        "INSERT INTO charge_lines (usage_id, entry_id, amount_minor, rate_micro) "
        "SELECT e.usage_id, e.id, e.amount_minor, e.rate_micro FROM entries e WHERE e.usage_id IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM charge_lines c WHERE c.usage_id = e.usage_id)"
    )
    op.execute(
        "INSERT INTO line_tiers (usage_id, piece, tier_from_micro, quantity_micro, rate_micro) "
        "SELECT e.usage_id, t.piece, t.tier_from_micro, t.quantity_micro, t.rate_micro "
        "FROM entry_tiers t JOIN entries e ON e.id = t.entry_id WHERE e.usage_id IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM line_tiers l WHERE l.usage_id = e.usage_id)"
    )


def downgrade() -> None:
    """Posted history is never deleted: the charges' lines (`charge_lines`, `line_tiers`)
    and their digests (`entries.lines_digest`) stay where they are, unused by the older
    code (whose `verify` cannot check a charge of several lines), and an upgrade takes
    them up again as they were. Only the book's invoice setting goes. On SQLite the lines
    stop naming their entries by a foreign key meanwhile, since older migrations rebuild
    the entries table."""
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table("charge_lines") as batch:
            batch.drop_constraint("fk_charge_lines_entry_id_entries", type_="foreignkey")
    with op.batch_alter_table("book") as batch:
        batch.drop_column("invoice_line_limit")
