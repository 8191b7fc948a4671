"""Allocations: cost pools, their costs and drivers, provider costs for cost recovery,
the tier pieces of tiered charges, and linked credits on adjustments.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drivers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("driver", sa.String(length=32), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("value_micro", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("value_micro >= 0", name=op.f("ck_drivers_value_not_negative")),
        sa.ForeignKeyConstraint(["unit"], ["units.code"], name=op.f("fk_drivers_unit_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drivers")),
        sa.UniqueConstraint("driver", "period", "unit", name=op.f("uq_drivers_driver_period_unit")),
    )
    op.create_table(
        "provider_costs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount_minor >= 0", name=op.f("ck_provider_costs_amount_not_negative")),
        sa.ForeignKeyConstraint(["provider"], ["units.code"], name=op.f("fk_provider_costs_provider_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_costs")),
        sa.UniqueConstraint("provider", "period", name=op.f("uq_provider_costs_provider_period")),
    )
    op.create_table(
        "allocations",
        sa.Column("pool", sa.String(length=32), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("driver", sa.String(length=64), nullable=False),
        sa.Column("targets", sa.Text(), nullable=False),
        sa.Column("step_order", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["provider"], ["units.code"], name=op.f("fk_allocations_provider_units")),
        sa.ForeignKeyConstraint(["service"], ["services.code"], name=op.f("fk_allocations_service_services")),
        sa.PrimaryKeyConstraint("pool", name=op.f("pk_allocations")),
    )
    op.create_table(
        "costs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("pool", sa.String(length=32), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount_minor >= 0", name=op.f("ck_costs_amount_not_negative")),
        sa.ForeignKeyConstraint(["pool"], ["allocations.pool"], name=op.f("fk_costs_pool_allocations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_costs")),
        sa.UniqueConstraint("period", "pool", name=op.f("uq_costs_period_pool")),
    )
    op.create_table(
        "entry_tiers",
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("piece", sa.Integer(), nullable=False),
        sa.Column("tier_from_micro", sa.BigInteger(), nullable=False),
        sa.Column("quantity_micro", sa.BigInteger(), nullable=False),
        sa.Column("rate_micro", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("rate_micro >= 0", name=op.f("ck_entry_tiers_rate_not_negative")),
        sa.ForeignKeyConstraint(["entry_id"], ["entries.id"], name=op.f("fk_entry_tiers_entry_id_entries")),
        sa.PrimaryKeyConstraint("entry_id", "piece", name=op.f("pk_entry_tiers")),
    )
    with op.batch_alter_table("adjustments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("against_service", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("against_reference", sa.String(length=100), nullable=True))
        batch_op.create_index("ix_adjustments_against", ["against_service", "against_reference"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_adjustments_against_service_services"), "services", ["against_service"], ["code"]
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_adjustments_against_both_or_neither"),
            "(against_service IS NULL) = (against_reference IS NULL)",
        )


def downgrade() -> None:
    with op.batch_alter_table("adjustments", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_adjustments_against_both_or_neither"), type_="check")
        batch_op.drop_constraint(batch_op.f("fk_adjustments_against_service_services"), type_="foreignkey")
        batch_op.drop_index("ix_adjustments_against")
        batch_op.drop_column("against_reference")
        batch_op.drop_column("against_service")

    op.drop_table("entry_tiers")
    op.drop_table("costs")
    op.drop_table("allocations")
    op.drop_table("provider_costs")
    op.drop_table("drivers")
