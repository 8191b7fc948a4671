"""Initial schema: book, units, services, rates, recurring fees, periods, usage,
adjustments and the hash-chained journal.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "book",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("minor_digits", sa.Integer(), nullable=False),
        sa.Column("fiscal_year_start", sa.Integer(), nullable=False),
        sa.Column("payment_terms", sa.String(length=200), nullable=True),
        sa.Column("allocation_method", sa.String(length=20), nullable=False),
        sa.Column("variance_threshold", sa.String(length=20), nullable=False),
        sa.Column("loaded_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_book_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_book")),
    )
    op.create_table(
        "journal_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_entry", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_journal_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_head")),
    )
    op.bulk_insert(
        sa.table(
            "journal_head",
            sa.column("id", sa.Integer),
            sa.column("last_entry", sa.BigInteger),
            sa.column("last_hash", sa.String),
        ),
        [{"id": 1, "last_entry": 0, "last_hash": "0" * 64}],
    )
    op.create_table(
        "periods",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("status", sa.String(length=6), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("closed_hash", sa.String(length=64), nullable=True),
        sa.Column("entry_count", sa.BigInteger(), nullable=True),
        sa.Column("internal_revenue_minor", sa.BigInteger(), nullable=True),
        sa.Column("internal_spend_minor", sa.BigInteger(), nullable=True),
        sa.Column("external_revenue_minor", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("status IN ('open', 'closed')", name=op.f("ck_periods_status")),
        sa.PrimaryKeyConstraint("period", name=op.f("pk_periods")),
    )
    op.create_table(
        "units",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("parent", sa.String(length=32), nullable=True),
        sa.Column("manager", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("active_from", sa.Date(), nullable=True),
        sa.Column("active_to", sa.Date(), nullable=True),
        sa.Column("expense_account", sa.String(length=64), nullable=True),
        sa.Column("revenue_account", sa.String(length=64), nullable=True),
        sa.CheckConstraint("kind IN ('internal', 'external')", name=op.f("ck_units_kind")),
        sa.ForeignKeyConstraint(["parent"], ["units.code"], name=op.f("fk_units_parent_units")),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_units")),
    )
    op.create_table(
        "imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("file_name", sa.String(length=500), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("lines_read", sa.BigInteger(), nullable=False),
        sa.Column("imported", sa.BigInteger(), nullable=False),
        sa.Column("duplicates", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["period"], ["periods.period"], name=op.f("fk_imports_period_periods")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imports")),
    )
    op.create_table(
        "period_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("user", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(["period"], ["periods.period"], name=op.f("fk_period_events_period_periods")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_period_events")),
    )
    op.create_table(
        "services",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("unit_of_measure", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["provider"], ["units.code"], name=op.f("fk_services_provider_units")),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_services")),
    )
    op.create_table(
        "adjustments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("consumer", sa.String(length=32), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("amount_minor <> 0", name=op.f("ck_adjustments_amount_not_zero")),
        sa.ForeignKeyConstraint(["consumer"], ["units.code"], name=op.f("fk_adjustments_consumer_units")),
        sa.ForeignKeyConstraint(["period"], ["periods.period"], name=op.f("fk_adjustments_period_periods")),
        sa.ForeignKeyConstraint(["service"], ["services.code"], name=op.f("fk_adjustments_service_services")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adjustments")),
    )
    op.create_table(
        "rates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("customer_class", sa.String(length=8), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date(), nullable=True),
        sa.Column("rate_micro", sa.BigInteger(), nullable=False),
        sa.Column("tier_from_micro", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("customer_class IN ('internal', 'external')", name=op.f("ck_rates_class")),
        sa.CheckConstraint("rate_micro >= 0", name=op.f("ck_rates_rate_not_negative")),
        sa.ForeignKeyConstraint(["service"], ["services.code"], name=op.f("fk_rates_service_services")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rates")),
    )
    with op.batch_alter_table("rates", schema=None) as batch_op:
        batch_op.create_index("ix_rates_service", ["service", "customer_class", "effective_from"], unique=False)

    op.create_table(
        "recurring",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("consumer", sa.String(length=32), nullable=False),
        sa.Column("quantity_micro", sa.BigInteger(), nullable=False),
        sa.Column("from_period", sa.String(length=7), nullable=False),
        sa.Column("to_period", sa.String(length=7), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["consumer"], ["units.code"], name=op.f("fk_recurring_consumer_units")),
        sa.ForeignKeyConstraint(["service"], ["services.code"], name=op.f("fk_recurring_service_services")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recurring")),
    )
    op.create_table(
        "usage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("consumer", sa.String(length=32), nullable=False),
        sa.Column("quantity_micro", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.CheckConstraint("quantity_micro <> 0", name=op.f("ck_usage_quantity_not_zero")),
        sa.ForeignKeyConstraint(["consumer"], ["units.code"], name=op.f("fk_usage_consumer_units")),
        sa.ForeignKeyConstraint(["import_id"], ["imports.id"], name=op.f("fk_usage_import_id_imports")),
        sa.ForeignKeyConstraint(["period"], ["periods.period"], name=op.f("fk_usage_period_periods")),
        sa.ForeignKeyConstraint(["service"], ["services.code"], name=op.f("fk_usage_service_services")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage")),
        sa.UniqueConstraint("service", "reference", name=op.f("uq_usage_service_reference")),
    )
    with op.batch_alter_table("usage", schema=None) as batch_op:
        batch_op.create_index("ix_usage_period", ["period"], unique=False)

    op.create_table(
        "entries",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("posted_at", sa.DateTime(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("usage_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("consumer", sa.String(length=32), nullable=False),
        sa.Column("customer_class", sa.String(length=8), nullable=False),
        sa.Column("quantity_micro", sa.BigInteger(), nullable=False),
        sa.Column("rate_micro", sa.BigInteger(), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("debit_account", sa.String(length=80), nullable=False),
        sa.Column("credit_account", sa.String(length=80), nullable=False),
        sa.Column("debit_gl", sa.String(length=64), nullable=True),
        sa.Column("credit_gl", sa.String(length=64), nullable=True),
        sa.Column("reference", sa.String(length=100), nullable=True),
        sa.Column("memo", sa.Text(), nullable=True),
        sa.Column("rate_source", sa.String(length=200), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("customer_class IN ('internal', 'external')", name=op.f("ck_entries_class")),
        sa.CheckConstraint("kind IN ('usage', 'recurring', 'adjustment', 'allocation')", name=op.f("ck_entries_kind")),
        sa.CheckConstraint("debit_account <> credit_account", name=op.f("ck_entries_two_accounts")),
        sa.ForeignKeyConstraint(["consumer"], ["units.code"], name=op.f("fk_entries_consumer_units")),
        sa.ForeignKeyConstraint(["period"], ["periods.period"], name=op.f("fk_entries_period_periods")),
        sa.ForeignKeyConstraint(["provider"], ["units.code"], name=op.f("fk_entries_provider_units")),
        sa.ForeignKeyConstraint(["service"], ["services.code"], name=op.f("fk_entries_service_services")),
        sa.ForeignKeyConstraint(["usage_id"], ["usage.id"], name=op.f("fk_entries_usage_id_usage")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entries")),
        sa.UniqueConstraint("hash", name=op.f("uq_entries_hash")),
        sa.UniqueConstraint("source", name=op.f("uq_entries_source")),
        sa.UniqueConstraint("usage_id", name=op.f("uq_entries_usage_id")),
    )
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.create_index("ix_entries_period", ["period"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.drop_index("ix_entries_period")

    op.drop_table("entries")
    with op.batch_alter_table("usage", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_period")

    op.drop_table("usage")
    op.drop_table("recurring")
    with op.batch_alter_table("rates", schema=None) as batch_op:
        batch_op.drop_index("ix_rates_service")

    op.drop_table("rates")
    op.drop_table("adjustments")
    op.drop_table("services")
    op.drop_table("period_events")
    op.drop_table("imports")
    op.drop_table("units")
    op.drop_table("periods")
    op.drop_table("journal_head")
    op.drop_table("book")
