"""Cloud bills (FOCUS exports): usage lines priced by their amount, the book's cloud
settings and mapping rules, and each imported bill's buckets.

`usage.amount_minor` is set on a line imported from a cloud bill: the line is priced by
it (the cost basis with the markup), not by a rate; `usage.source_rows` is how many rows
of the bill the line sums. `cloud_settings` is book.toml's `[cloud]` table and
`cloud_rules` cloud_map.csv (both replaced by every `load`). `cloud_buckets` holds, per
imported bill, InvoiceId and bucket (charged, purchase, unused, unmatched, untagged),
the rows and their sums: what `cloud.xlsx` reconciles and what the pool spreads.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage", sa.Column("amount_minor", sa.BigInteger(), nullable=True))
    op.add_column("usage", sa.Column("source_rows", sa.BigInteger(), nullable=True))
    op.create_table(
        "cloud_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("basis", sa.String(length=20), nullable=False),
        sa.Column("pool", sa.String(length=32), nullable=False),
        sa.Column("quantity", sa.String(length=20), nullable=False),
        sa.Column("markup", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cloud_settings")),
    )
    op.create_table(
        "cloud_rules",
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("match", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("consumer", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["consumer"], ["units.code"], name=op.f("fk_cloud_rules_consumer_units")),
        sa.PrimaryKeyConstraint("priority", "line", name=op.f("pk_cloud_rules")),
    )
    op.create_table(
        "cloud_buckets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("basis", sa.String(length=20), nullable=False),
        sa.Column("invoice", sa.String(length=200), nullable=False),
        sa.Column("bucket", sa.String(length=20), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("billed_minor", sa.BigInteger(), nullable=False),
        sa.Column("effective_minor", sa.BigInteger(), nullable=False),
        sa.Column("basis_minor", sa.BigInteger(), nullable=False),
        sa.Column("markup_minor", sa.BigInteger(), nullable=False),
        sa.Column("charged_minor", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["period"], ["periods.period"], name=op.f("fk_cloud_buckets_period_periods")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cloud_buckets")),
        sa.UniqueConstraint("import_id", "invoice", "bucket", name=op.f("uq_cloud_buckets_import_id_invoice_bucket")),
    )
    op.create_index("ix_cloud_buckets_period", "cloud_buckets", ["period"])


def downgrade() -> None:
    op.drop_index("ix_cloud_buckets_period", table_name="cloud_buckets")
    op.drop_table("cloud_buckets")
    op.drop_table("cloud_rules")
    op.drop_table("cloud_settings")
    op.drop_column("usage", "source_rows")
    op.drop_column("usage", "amount_minor")
