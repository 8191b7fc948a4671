"""Budgets (budgets.csv) and deliveries (documents sent to units by `deliver`).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("fiscal_year", sa.Integer(), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount_minor >= 0", name=op.f("ck_budgets_amount_not_negative")),
        sa.ForeignKeyConstraint(["unit"], ["units.code"], name=op.f("fk_budgets_unit_units")),
        sa.PrimaryKeyConstraint("fiscal_year", "unit", name=op.f("pk_budgets")),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("journal_hash", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.Column("message_id", sa.String(length=250), nullable=False),
        sa.Column("attachments", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["period"], ["periods.period"], name=op.f("fk_deliveries_period_periods")),
        sa.ForeignKeyConstraint(["unit"], ["units.code"], name=op.f("fk_deliveries_unit_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("period", "unit", "journal_hash", name=op.f("uq_deliveries_period_unit_journal_hash")),
    )


def downgrade() -> None:
    op.drop_table("deliveries")
    op.drop_table("budgets")
