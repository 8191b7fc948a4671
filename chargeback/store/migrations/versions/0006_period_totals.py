"""Each period's totals by consumer, class, provider, service, kind and accounts
(`period_totals`), stored at close so later closes need not group earlier entries again.

Every period that has entries gets its totals from them here: entries are only posted by
a close, so the stored totals of every period equal its entries from now on.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

KEYS = "consumer, customer_class, provider, service, kind, debit_account, credit_account"


def upgrade() -> None:
    op.create_table(
        "period_totals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("consumer", sa.String(length=32), nullable=False),
        sa.Column("customer_class", sa.String(length=8), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("debit_account", sa.String(length=80), nullable=False),
        sa.Column("credit_account", sa.String(length=80), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("quantity_micro", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_period_totals")),
    )
    op.create_index("ix_period_totals_period", "period_totals", ["period"], unique=False)
    op.execute(
        f"INSERT INTO period_totals (period, {KEYS}, entries, quantity_micro, amount_minor) "
        f"SELECT period, {KEYS}, count(*), sum(quantity_micro), sum(amount_minor) FROM entries "
        f"GROUP BY period, {KEYS}"
    )


def downgrade() -> None:
    op.drop_index("ix_period_totals_period", table_name="period_totals")
    op.drop_table("period_totals")
