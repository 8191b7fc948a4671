"""Voids of what is not posted yet, adjustment memos, and who imported a file.

`voids` records each void: of an import (its usage lines) or of an adjustment, with
the reason, the user and the time. The voided usage lines stay (usage is append-only):
each names its void in `usage.void_id`, the one change the append-only rule allows a
line (from none to a void, while no charge has priced it); the database still refuses
any other change, a delete, or a void of a posted line. A voided adjustment names its
void in `adjustments.void_id`. `usage.void_id` has no foreign key: a big import would
pay a check per line for a column always empty when inserted (only a void sets it,
after writing the void). The unique (service, reference) of the usage lines
becomes a unique index of the lines not voided, so a voided file can be imported again.

`adjustments.memo` is what documents show for an adjustment (`reason` stays internal).
Adjustments entered before have no memo (NULL): their documents show "Adjustment".
`imports.user` is the operating-system user who imported the file. For imports made
before, it is taken from the audit log: each successful import wrote one `import` record
(with the file and period as given) in its own transaction, so the imports of one
(period, file) and their records pair up in order. Where they do not (imports made
before the audit log, migration 0003, or records missing), the user stays NULL:
"unknown", not a guess.

A downgrade drops the voids and the new columns; it is refused by the database if a
voided file was imported again (two lines with one (service, reference)).

Revision ID: 0013
Revises: 0012
"""

import json
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

APPEND_ONLY = (
    "usage lines are append-only: a stored usage line cannot be changed or deleted "
    "(correct a charge with chargeback adjust)"
)
#: The usage columns a void leaves as they are (all of them but `void_id`).
KEPT = (
    "id",
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
UNIQUE = "uq_usage_service_reference"
NOT_VOID = sa.text("void_id IS NULL")


def _same() -> str:
    return " AND ".join(f"NEW.{c} IS NOT DISTINCT FROM OLD.{c}" for c in KEPT)


def _sqlite_same() -> str:
    return " AND ".join(f"NEW.{c} IS OLD.{c}" for c in KEPT)


def _sqlite_triggers(voidable: bool) -> None:
    op.execute("DROP TRIGGER IF EXISTS usage_no_update")
    op.execute("DROP TRIGGER IF EXISTS usage_no_delete")
    allowed = (
        f" WHEN NOT (OLD.void_id IS NULL AND NEW.void_id IS NOT NULL AND {_sqlite_same()} "
        "AND NOT EXISTS (SELECT 1 FROM charge_lines c WHERE c.usage_id = OLD.id))"
        if voidable
        else ""
    )
    op.execute(
        f"CREATE TRIGGER usage_no_update BEFORE UPDATE ON usage{allowed} BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
    )
    op.execute(f"CREATE TRIGGER usage_no_delete BEFORE DELETE ON usage BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END")


def _backfill_users() -> None:
    """Who imported each earlier file, from the audit log where it says so unambiguously."""
    bind = op.get_bind()
    imports = sa.table("imports", sa.column("id"), sa.column("period"), sa.column("file_name"), sa.column("user"))
    audit = sa.table("audit_log", sa.column("id"), sa.column("command"), sa.column("outcome"))
    audit.append_column(sa.column("os_user"))
    audit.append_column(sa.column("arguments"))
    found: dict[tuple[str, str], list[int]] = defaultdict(list)
    for number, period, name in bind.execute(sa.select(imports.c.id, imports.c.period, imports.c.file_name)):
        found[(period, name)].append(number)
    if not found or not sa.inspect(bind).has_table("audit_log"):
        return
    users: dict[tuple[str, str], list[str]] = defaultdict(list)
    for user, arguments in bind.execute(
        sa.select(audit.c.os_user, audit.c.arguments)
        .where(audit.c.command == "import", audit.c.outcome.like("done:%"))
        .order_by(audit.c.id)
    ):
        try:
            given = json.loads(arguments)
        except ValueError:
            continue
        if isinstance(given, dict):
            users[(str(given.get("period")), str(given.get("file")))].append(user)
    for key, numbers in found.items():
        if len(users.get(key, ())) != len(numbers):
            continue  # not one record per import: unknown
        for number, user in zip(sorted(numbers), users[key], strict=True):
            bind.execute(sa.update(imports).where(imports.c.id == number).values(user=user))


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "voids",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "period", sa.String(7), sa.ForeignKey("periods.period", name="fk_voids_period_periods"), nullable=False
        ),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("target", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("user", sa.String(100), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("lines", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_voids"),
        sa.UniqueConstraint("kind", "target", name="uq_voids_kind_target"),
        sa.CheckConstraint("kind IN ('import', 'adjustment')", name="ck_voids_kind"),
    )
    with op.batch_alter_table("adjustments") as batch:
        batch.add_column(sa.Column("memo", sa.Text(), nullable=True))
        batch.add_column(sa.Column("void_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_adjustments_void_id_voids", "voids", ["void_id"], ["id"])
    op.add_column("imports", sa.Column("user", sa.String(100), nullable=True))
    _backfill_users()
    if postgresql:
        op.add_column("usage", sa.Column("void_id", sa.Integer(), nullable=True))
        op.drop_constraint(UNIQUE, "usage", type_="unique")
        op.create_index(UNIQUE, "usage", ["service", "reference"], unique=True, postgresql_where=NOT_VOID)
        op.execute(
            "CREATE OR REPLACE FUNCTION usage_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF TG_OP = 'UPDATE' THEN "
            f"IF OLD.void_id IS NULL AND NEW.void_id IS NOT NULL AND {_same()} "
            "AND NOT EXISTS (SELECT 1 FROM charge_lines c WHERE c.usage_id = OLD.id) THEN RETURN NEW; END IF; "
            "END IF; "
            f"RAISE EXCEPTION '{APPEND_ONLY}' USING ERRCODE = 'restrict_violation', TABLE = 'usage'; END $$"
        )
        return
    if UNIQUE in {c["name"] for c in sa.inspect(op.get_bind()).get_unique_constraints("usage")}:
        # the table's own constraint: only a rebuild (foreign keys off: `db.upgrade`) drops it
        with op.batch_alter_table("usage", recreate="always") as batch:
            batch.add_column(sa.Column("void_id", sa.Integer(), nullable=True))
            batch.drop_constraint(UNIQUE, type_="unique")
            batch.create_index(UNIQUE, ["service", "reference"], unique=True, sqlite_where=NOT_VOID)
    else:  # a unique index, as a downgrade leaves it
        op.drop_index(UNIQUE, "usage")
        op.add_column("usage", sa.Column("void_id", sa.Integer(), nullable=True))
        op.create_index(UNIQUE, "usage", ["service", "reference"], unique=True, sqlite_where=NOT_VOID)
    _sqlite_triggers(voidable=True)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute(
            "CREATE OR REPLACE FUNCTION usage_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{APPEND_ONLY}' USING ERRCODE = 'restrict_violation', "
            "TABLE = 'usage'; END $$"
        )
        op.drop_index(UNIQUE, "usage")
        op.create_unique_constraint(UNIQUE, "usage", ["service", "reference"])
        op.drop_column("usage", "void_id")
    else:
        # Without a rebuild (the usage lines are named by other tables' foreign keys): the
        # same uniqueness as a unique index of the same name, and the column dropped.
        op.execute("DROP TRIGGER IF EXISTS usage_no_update")
        op.drop_index(UNIQUE, "usage")
        op.create_index(UNIQUE, "usage", ["service", "reference"], unique=True)
        op.drop_column("usage", "void_id")
        _sqlite_triggers(voidable=False)
    op.drop_column("imports", "user")  # no rebuild: usage lines name their import
    with op.batch_alter_table("adjustments") as batch:
        batch.drop_constraint("fk_adjustments_void_id_voids", type_="foreignkey")
        batch.drop_column("void_id")
        batch.drop_column("memo")
    op.drop_table("voids")
