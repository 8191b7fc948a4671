"""Service levels: SLAs (`slas.csv`), their credit bands (`sla_credits.csv`), the measured
values of each period (`sla import`), the book's `sla_missing` setting, and the journal
entry kind `sla_credit` (a credit for a missed SLA).

On SQLite the entries table is rebuilt to change its kind constraint (as 0005 and 0007
rebuilt it); ids and hashes do not change.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

KINDS = "'usage', 'recurring', 'adjustment', 'allocation'"


def _entry_kinds(kinds: str) -> None:
    condition = f"kind IN ({kinds})"
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("entries", recreate="always") as batch:
            batch.drop_constraint(op.f("ck_entries_kind"), type_="check")
            batch.create_check_constraint(op.f("ck_entries_kind"), condition)
    else:
        op.drop_constraint(op.f("ck_entries_kind"), "entries", type_="check")
        op.create_check_constraint(op.f("ck_entries_kind"), "entries", condition)


def upgrade() -> None:
    with op.batch_alter_table("book") as batch:
        batch.add_column(sa.Column("sla_missing", sa.String(length=6), nullable=False, server_default="warn"))
    op.create_table(
        "slas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("unit", sa.String(length=8), nullable=False),
        sa.Column("target_micro", sa.BigInteger(), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("customer_class", sa.String(length=8), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.CheckConstraint("direction IN ('min', 'max')", name=op.f("ck_slas_direction")),
        sa.CheckConstraint("customer_class IN ('internal', 'external')", name=op.f("ck_slas_class")),
        sa.ForeignKeyConstraint(["service"], ["services.code"], name=op.f("fk_slas_service_services")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slas")),
    )
    op.create_table(
        "sla_credit_bands",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("breach_from_micro", sa.BigInteger(), nullable=False),
        sa.Column("credit_percent_micro", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "credit_percent_micro > 0 AND credit_percent_micro <= 100000000", name=op.f("ck_sla_credit_bands_percent")
        ),
        sa.ForeignKeyConstraint(["service"], ["services.code"], name=op.f("fk_sla_credit_bands_service_services")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_credit_bands")),
    )
    op.create_table(
        "sla_measurements",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("consumer", sa.String(length=32), nullable=False),
        sa.Column("value_micro", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("imported_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["period"], ["periods.period"], name=op.f("fk_sla_measurements_period_periods")),
        sa.ForeignKeyConstraint(["service"], ["services.code"], name=op.f("fk_sla_measurements_service_services")),
        sa.PrimaryKeyConstraint("period", "service", "metric", "consumer", name=op.f("pk_sla_measurements")),
    )
    _entry_kinds(KINDS + ", 'sla_credit'")


def downgrade() -> None:
    """Posted SLA credits stay in the journal (history is never deleted), so the kind
    constraint keeps allowing them; the book's SLA tables and setting go."""
    op.drop_table("sla_measurements")
    op.drop_table("sla_credit_bands")
    op.drop_table("slas")
    with op.batch_alter_table("book") as batch:
        batch.drop_column("sla_missing")
