"""The database schema: reference data, usage, periods and the journal.

Money is stored as integer minor units (`*_minor`), quantities and rates as integer
millionths (`*_micro`): exact on SQLite and PostgreSQL alike. The journal table
(`entries`) is append-only; each row is one balanced transfer (one amount, a debit
account and a credit account), so an entry cannot be unbalanced by construction.
Alembic migrations in `chargeback/migrations` build exactly this schema.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CODE = String(32)
PERIOD = String(7)
#: The key of a table that grows with the usage (a row or more per usage line): 64-bit on
#: PostgreSQL (migration 0010), the table's own 64-bit row id on SQLite.
ROW_ID = BigInteger().with_variant(Integer(), "sqlite")

#: The foreign keys of the two tables a big month fills that PostgreSQL checks a statement
#: at a time, by triggers, instead of a row at a time (migration 0008: a million usage
#: lines inserted in 9.0 s instead of 47.4 s; migration 0009 made the check one grouping
#: pass); SQLite checks them as foreign keys.
STATEMENT_CHECKED = frozenset(
    {
        "fk_usage_period_periods",
        "fk_usage_import_id_imports",
        "fk_usage_service_services",
        "fk_usage_consumer_units",
        "fk_entries_period_periods",
        "fk_entries_usage_id_usage",
        "fk_entries_service_services",
        "fk_entries_provider_units",
        "fk_entries_consumer_units",
        "fk_charge_lines_usage_id_usage",
        "fk_charge_lines_entry_id_entries",
        "fk_line_tiers_usage_id_usage",
    }
)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    #: every mapped class here is a plain table (no joined or selectable mapping), so its
    #: `__table__` is a `Table` (named, with `c`, insertable)
    __table__: ClassVar[Table]


class Book(Base):
    """The organization's settings from `book.toml` (one row)."""

    __tablename__ = "book"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    minor_digits: Mapped[int] = mapped_column(Integer)
    fiscal_year_start: Mapped[int] = mapped_column(Integer)
    payment_terms: Mapped[str | None] = mapped_column(String(200))
    allocation_method: Mapped[str] = mapped_column(String(20))
    variance_threshold: Mapped[str] = mapped_column(String(20))
    #: How many usage lines an invoice lists under its charges before it points to the detail.
    invoice_line_limit: Mapped[int] = mapped_column(Integer, default=300, server_default="300")
    #: What a close does when a service with an SLA in force has no measurement: warn | refuse.
    sla_missing: Mapped[str] = mapped_column(String(6), default="warn", server_default="warn")
    loaded_at: Mapped[dt.datetime] = mapped_column(DateTime)
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class Unit(Base):
    """A business unit: a department (internal) or an outside customer (external)."""

    __tablename__ = "units"
    code: Mapped[str] = mapped_column(CODE, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(8))
    parent: Mapped[str | None] = mapped_column(CODE, ForeignKey("units.code"))
    manager: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    active_from: Mapped[dt.date | None] = mapped_column(Date)
    active_to: Mapped[dt.date | None] = mapped_column(Date)
    expense_account: Mapped[str | None] = mapped_column(String(64))
    revenue_account: Mapped[str | None] = mapped_column(String(64))
    __table_args__ = (CheckConstraint("kind IN ('internal', 'external')", name="kind"),)


class Service(Base):
    """A service a provider sells, priced per unit of measure."""

    __tablename__ = "services"
    code: Mapped[str] = mapped_column(CODE, primary_key=True)
    provider: Mapped[str] = mapped_column(CODE, ForeignKey("units.code"))
    name: Mapped[str] = mapped_column(String(200))
    unit_of_measure: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)


class Rate(Base):
    """A price per unit of a service for one customer class over a date range."""

    __tablename__ = "rates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(CODE, ForeignKey("services.code"))
    customer_class: Mapped[str] = mapped_column(String(8))
    effective_from: Mapped[dt.date] = mapped_column(Date)
    effective_to: Mapped[dt.date | None] = mapped_column(Date)
    rate_micro: Mapped[int] = mapped_column(BigInteger)
    tier_from_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    __table_args__ = (
        CheckConstraint("rate_micro >= 0", name="rate_not_negative"),
        CheckConstraint("customer_class IN ('internal', 'external')", name="class"),
        Index("ix_rates_service", "service", "customer_class", "effective_from"),
    )


class Recurring(Base):
    """A fixed monthly charge, priced at the rate in force on the period's first day."""

    __tablename__ = "recurring"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(CODE, ForeignKey("services.code"))
    consumer: Mapped[str] = mapped_column(CODE, ForeignKey("units.code"))
    quantity_micro: Mapped[int] = mapped_column(BigInteger)
    from_period: Mapped[str] = mapped_column(PERIOD)
    to_period: Mapped[str | None] = mapped_column(PERIOD)
    description: Mapped[str | None] = mapped_column(Text)


class Period(Base):
    """A calendar month; `closed` locks it. Totals and journal head are recorded at close."""

    __tablename__ = "periods"
    period: Mapped[str] = mapped_column(PERIOD, primary_key=True)
    status: Mapped[str] = mapped_column(String(6), default="open")
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    closed_hash: Mapped[str | None] = mapped_column(String(64))
    entry_count: Mapped[int | None] = mapped_column(BigInteger)
    internal_revenue_minor: Mapped[int | None] = mapped_column(BigInteger)
    internal_spend_minor: Mapped[int | None] = mapped_column(BigInteger)
    external_revenue_minor: Mapped[int | None] = mapped_column(BigInteger)
    __table_args__ = (CheckConstraint("status IN ('open', 'closed')", name="status"),)


class PeriodEvent(Base):
    """History of closes and reopens, with the reason given: a period's status follows
    from its events, so `verify` finds a status changed without one.

    Append-only (database triggers refuse UPDATE and DELETE, migration 0012) and
    hash-chained like the audit log (`period_event_head` names the last one). A close
    records its seal: the journal head after it (`journal_entry`, `journal_hash`), signed
    when a seal key is configured (`signature`, by the key whose fingerprint is `key`);
    the event's hash covers the seal, so the events are anchored to the journal."""

    __tablename__ = "period_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(PERIOD, ForeignKey("periods.period"))
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    action: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str | None] = mapped_column(Text)
    user: Mapped[str | None] = mapped_column(String(100))
    journal_entry: Mapped[int | None] = mapped_column(BigInteger)
    journal_hash: Mapped[str | None] = mapped_column(String(64))
    signature: Mapped[str | None] = mapped_column(String(128))
    key: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class PeriodEventHead(Base):
    """The last period event (one row), locked to append so the events' chain is linear."""

    __tablename__ = "period_event_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_event: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class Import(Base):
    """One usage file imported into a period, with what it did."""

    __tablename__ = "imports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(PERIOD, ForeignKey("periods.period"))
    file_name: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    lines_read: Mapped[int] = mapped_column(BigInteger)
    imported: Mapped[int] = mapped_column(BigInteger)
    duplicates: Mapped[int] = mapped_column(BigInteger)
    #: The operating-system user who imported it; None for imports before migration 0013.
    user: Mapped[str | None] = mapped_column(String(100))


class Usage(Base):
    """A usage line as imported; (service, reference) identifies it for ever.

    Append-only: the source document of the charge posted for it, so the database
    refuses UPDATE and DELETE of it (migration 0009); a correction is an adjustment."""

    __tablename__ = "usage"
    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    period: Mapped[str] = mapped_column(PERIOD, ForeignKey("periods.period"))
    import_id: Mapped[int] = mapped_column(Integer, ForeignKey("imports.id"))
    line: Mapped[int] = mapped_column(Integer)
    date: Mapped[dt.date] = mapped_column(Date)
    service: Mapped[str] = mapped_column(CODE, ForeignKey("services.code"))
    consumer: Mapped[str] = mapped_column(CODE, ForeignKey("units.code"))
    quantity_micro: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    #: A cloud bill's line is priced by its amount (cost basis with markup), not by a rate.
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    #: How many rows of the cloud bill the line sums.
    source_rows: Mapped[int | None] = mapped_column(BigInteger)
    #: The void of its import (`voids.id`), the one change allowed (migration 0013): a
    #: voided line is priced, posted and counted nowhere, and its reference is free again.
    void_id: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (
        Index(
            "uq_usage_service_reference",
            "service",
            "reference",
            unique=True,
            sqlite_where=text("void_id IS NULL"),
            postgresql_where=text("void_id IS NULL"),
        ),
        CheckConstraint("quantity_micro <> 0", name="quantity_not_zero"),
        Index("ix_usage_period", "period"),
    )


class CloudSettings(Base):
    """book.toml's `[cloud]` table: who recharges the cloud bill, under which service,
    at which cost basis, with which markup per ServiceCategory (JSON), and the pool."""

    __tablename__ = "cloud_settings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(CODE)
    service: Mapped[str] = mapped_column(CODE)
    basis: Mapped[str] = mapped_column(String(20))
    pool: Mapped[str] = mapped_column(CODE)
    quantity: Mapped[str] = mapped_column(String(20))
    markup: Mapped[str] = mapped_column(Text)


class CloudRule(Base):
    """A row of `cloud_map.csv`: rows of a cloud bill whose `match` column (or tag) is
    `value` go to `consumer`; the lowest priority (then the first line) wins."""

    __tablename__ = "cloud_rules"
    priority: Mapped[int] = mapped_column(Integer, primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    match: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(Text)
    consumer: Mapped[str] = mapped_column(CODE, ForeignKey("units.code"))


class CloudBucket(Base):
    """What one imported cloud bill holds per InvoiceId and bucket (`charged`,
    `purchase`, `unused`, `unmatched`, `untagged`): rows, BilledCost, EffectiveCost, the
    cost basis, markup and the amount charged (to departments, or to the pool)."""

    __tablename__ = "cloud_buckets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    import_id: Mapped[int] = mapped_column(Integer)  # the bill's `imports` row
    period: Mapped[str] = mapped_column(PERIOD, ForeignKey("periods.period"))
    basis: Mapped[str] = mapped_column(String(20))
    invoice: Mapped[str] = mapped_column(String(200))
    bucket: Mapped[str] = mapped_column(String(20))
    rows: Mapped[int] = mapped_column(BigInteger)
    billed_minor: Mapped[int] = mapped_column(BigInteger)
    effective_minor: Mapped[int] = mapped_column(BigInteger)
    basis_minor: Mapped[int] = mapped_column(BigInteger)
    markup_minor: Mapped[int] = mapped_column(BigInteger)
    charged_minor: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (UniqueConstraint("import_id", "invoice", "bucket"), Index("ix_cloud_buckets_period", "period"))


class Adjustment(Base):
    """A manual charge or credit entered by finance staff, with its reason."""

    __tablename__ = "adjustments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(PERIOD, ForeignKey("periods.period"))
    service: Mapped[str] = mapped_column(CODE, ForeignKey("services.code"))
    consumer: Mapped[str] = mapped_column(CODE, ForeignKey("units.code"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(String(100))
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    #: A linked credit names the charge it corrects: (service, reference) of the original.
    against_service: Mapped[str | None] = mapped_column(CODE, ForeignKey("services.code"))
    against_reference: Mapped[str | None] = mapped_column(String(100))
    #: What documents show (None: "Adjustment"); `reason` is internal.
    memo: Mapped[str | None] = mapped_column(Text)
    #: Its void, if voided before a close posted it.
    void_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("voids.id"))
    __table_args__ = (
        CheckConstraint("amount_minor <> 0", name="amount_not_zero"),
        CheckConstraint("(against_service IS NULL) = (against_reference IS NULL)", name="against_both_or_neither"),
        Index("ix_adjustments_against", "against_service", "against_reference"),
    )


class Void(Base):
    """A void of an import or an adjustment not posted yet (migration 0013): why, by whom,
    when, and what it took out (`lines` usage lines, or the adjustment's amount)."""

    __tablename__ = "voids"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(PERIOD, ForeignKey("periods.period"))
    kind: Mapped[str] = mapped_column(String(10))
    target: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    user: Mapped[str | None] = mapped_column(String(100))
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    lines: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    __table_args__ = (
        UniqueConstraint("kind", "target"),
        CheckConstraint("kind IN ('import', 'adjustment')", name="kind"),
    )


class Allocation(Base):
    """A cost pool from `allocations.csv`: a provider's cost spread over targets by a driver.

    `driver` is a name from drivers.csv, `usage:SERVICE` or `equal`; `targets` is `*`,
    `parent:CODE` or codes separated by `|`; `step_order` is the file's `order`."""

    __tablename__ = "allocations"
    pool: Mapped[str] = mapped_column(CODE, primary_key=True)
    provider: Mapped[str] = mapped_column(CODE, ForeignKey("units.code"))
    service: Mapped[str] = mapped_column(CODE, ForeignKey("services.code"))
    driver: Mapped[str] = mapped_column(String(64))
    targets: Mapped[str] = mapped_column(Text)
    step_order: Mapped[int | None] = mapped_column(Integer)


class Cost(Base):
    """`costs.csv`: the cost to spread for a pool in a period."""

    __tablename__ = "costs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(PERIOD)
    pool: Mapped[str] = mapped_column(CODE, ForeignKey("allocations.pool"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        UniqueConstraint("period", "pool"),
        CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
    )


class Driver(Base):
    """`drivers.csv`: a unit's value of a named driver in a period."""

    __tablename__ = "drivers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(PERIOD)
    driver: Mapped[str] = mapped_column(CODE)
    unit: Mapped[str] = mapped_column(CODE, ForeignKey("units.code"))
    value_micro: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        UniqueConstraint("driver", "period", "unit"),
        CheckConstraint("value_micro >= 0", name="value_not_negative"),
    )


class ProviderCost(Base):
    """`provider_costs.csv`: a provider's full cost in a period, for cost recovery."""

    __tablename__ = "provider_costs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(PERIOD)
    provider: Mapped[str] = mapped_column(CODE, ForeignKey("units.code"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        UniqueConstraint("provider", "period"),
        CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
    )


class JournalHead(Base):
    """The last entry of the journal (one row): locked to append, so the chain is linear."""

    __tablename__ = "journal_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_entry: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class Entry(Base):
    """One posted charge: debit the consumer, credit the provider, by `amount_minor`.

    A usage charge is the usage lines of one consumer and one service priced by one rate
    row (or one tier schedule) in one close: its quantity and amount are their sums, and
    its lines are in `charge_lines`. Entries posted before charges (migration 0011) name
    their one line in `usage_id`.

    Append-only. `hash` covers every column and `prev_hash`, the hash of the entry
    before it, so an edited, deleted, inserted or reordered entry breaks the chain; for a
    usage charge it also covers `lines_digest`, the sha256 of its lines
    (`ledger.lines_digest`), so an edited line breaks it too.
    """

    __tablename__ = "entries"
    #: On SQLite the table's own row id: one b-tree in id order (migration 0007).
    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True, autoincrement=False)
    period: Mapped[str] = mapped_column(PERIOD, ForeignKey("periods.period"))
    posted_at: Mapped[dt.datetime] = mapped_column(DateTime)
    date: Mapped[dt.date] = mapped_column(Date)
    service_date: Mapped[dt.date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(12))
    usage_id: Mapped[int | None] = mapped_column(ROW_ID, ForeignKey("usage.id"), unique=True)
    source: Mapped[str | None] = mapped_column(String(200), unique=True)
    service: Mapped[str] = mapped_column(CODE, ForeignKey("services.code"))
    provider: Mapped[str] = mapped_column(CODE, ForeignKey("units.code"))
    consumer: Mapped[str] = mapped_column(CODE, ForeignKey("units.code"))
    customer_class: Mapped[str] = mapped_column(String(8))
    quantity_micro: Mapped[int] = mapped_column(BigInteger)
    rate_micro: Mapped[int | None] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    debit_account: Mapped[str] = mapped_column(String(80))
    credit_account: Mapped[str] = mapped_column(String(80))
    debit_gl: Mapped[str | None] = mapped_column(String(64))
    credit_gl: Mapped[str | None] = mapped_column(String(64))
    reference: Mapped[str | None] = mapped_column(String(100))
    memo: Mapped[str | None] = mapped_column(Text)
    rate_source: Mapped[str | None] = mapped_column(String(200))
    prev_hash: Mapped[str] = mapped_column(String(64))
    lines_digest: Mapped[str | None] = mapped_column(String(64))
    #: Not indexed: the chain, recomputed by `verify`, is what guards it (migration 0005).
    hash: Mapped[str] = mapped_column(String(64))
    __table_args__ = (
        CheckConstraint("debit_account <> credit_account", name="two_accounts"),
        CheckConstraint("kind IN ('usage', 'recurring', 'adjustment', 'allocation', 'sla_credit')", name="kind"),
        CheckConstraint("customer_class IN ('internal', 'external')", name="class"),
        Index("ix_entries_period", "period"),
    )


class EntryTier(Base):
    """The tier pieces of a usage charge of a tiered service, one row per piece.

    A line priced over a graduated schedule is one entry whose amount is the sum of its
    pieces rounded once; these rows say which tier priced which part of its quantity
    (`piece` counts from 1 in the order the pieces were taken). The entry's
    `rate_source` repeats them as text (`HELP/internal/2026-01-01 tiers 0:100@60,
    100:20@50`), which the journal's hash covers."""

    __tablename__ = "entry_tiers"
    entry_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("entries.id"))
    piece: Mapped[int] = mapped_column(Integer)
    tier_from_micro: Mapped[int] = mapped_column(BigInteger)
    quantity_micro: Mapped[int] = mapped_column(BigInteger)
    rate_micro: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        PrimaryKeyConstraint("entry_id", "piece"),
        CheckConstraint("rate_micro >= 0", name="rate_not_negative"),
    )


class ChargeLine(Base):
    """A usage line as priced into a charge: its own amount (rounded half-up on its own),
    its rate (none when its quantity spans several tiers: see `line_tiers`) and the entry
    it is posted in. The entry's amount is the sum of its lines' amounts; `verify`
    checks it. Append-only, like the usage lines (migration 0011)."""

    __tablename__ = "charge_lines"
    usage_id: Mapped[int] = mapped_column(ROW_ID, ForeignKey("usage.id"), primary_key=True, autoincrement=False)
    entry_id: Mapped[int] = mapped_column(ROW_ID, ForeignKey("entries.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    rate_micro: Mapped[int | None] = mapped_column(BigInteger)
    #: Not indexed by entry: lines are read a period (or a journal) at a time, through the
    #: usage lines; an index on it made storing a million lines 6.2 s instead of 1.5 s.


class LineTier(Base):
    """The tier pieces of a usage line of a tiered service, one row per piece, in the
    order the pieces were taken (`piece` from 1). Append-only (migration 0011)."""

    __tablename__ = "line_tiers"
    usage_id: Mapped[int] = mapped_column(ROW_ID, ForeignKey("usage.id"))
    piece: Mapped[int] = mapped_column(Integer)
    tier_from_micro: Mapped[int] = mapped_column(BigInteger)
    quantity_micro: Mapped[int] = mapped_column(BigInteger)
    rate_micro: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        PrimaryKeyConstraint("usage_id", "piece"),
        CheckConstraint("rate_micro >= 0", name="rate_not_negative"),
    )


class AuditRecord(Base):
    """One command that wrote (or tried to write): when, who, what, on which files, and how
    it ended. Append-only (database triggers refuse UPDATE and DELETE) and hash-chained like
    the journal, so `verify` finds a record changed, removed or slipped in."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    os_user: Mapped[str] = mapped_column(String(100))
    command: Mapped[str] = mapped_column(String(20))
    arguments: Mapped[str] = mapped_column(Text)
    inputs: Mapped[str] = mapped_column(Text)
    period: Mapped[str | None] = mapped_column(PERIOD)
    outcome: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    __table_args__ = (Index("ix_audit_log_period", "period"),)


class AuditHead(Base):
    """The last audit record (one row), locked to append so the audit chain is linear."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_record: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class ServiceLevel(Base):
    """An SLA from `slas.csv`: a service's target for a metric, for one customer class."""

    __tablename__ = "slas"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(CODE, ForeignKey("services.code"))
    metric: Mapped[str] = mapped_column(CODE)
    unit: Mapped[str] = mapped_column(String(8))
    target_micro: Mapped[int] = mapped_column(BigInteger)
    direction: Mapped[str] = mapped_column(String(3))
    customer_class: Mapped[str] = mapped_column(String(8))
    effective_from: Mapped[dt.date] = mapped_column(Date)
    effective_to: Mapped[dt.date | None] = mapped_column(Date)
    description: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        CheckConstraint("direction IN ('min', 'max')", name="direction"),
        CheckConstraint("customer_class IN ('internal', 'external')", name="class"),
    )


class SlaCreditBand(Base):
    """A graduated credit of an SLA metric, from `sla_credits.csv`."""

    __tablename__ = "sla_credit_bands"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(CODE, ForeignKey("services.code"))
    metric: Mapped[str] = mapped_column(CODE)
    breach_from_micro: Mapped[int] = mapped_column(BigInteger)
    credit_percent_micro: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        CheckConstraint("credit_percent_micro > 0 AND credit_percent_micro <= 100000000", name="percent"),
    )


class SlaMeasurement(Base):
    """A service level measured in a period (`sla import`): for every consumer (consumer
    `''`) or for one. A corrected value replaces the one before while the period is open."""

    __tablename__ = "sla_measurements"
    period: Mapped[str] = mapped_column(PERIOD, ForeignKey("periods.period"), primary_key=True)
    service: Mapped[str] = mapped_column(CODE, ForeignKey("services.code"), primary_key=True)
    metric: Mapped[str] = mapped_column(CODE, primary_key=True)
    consumer: Mapped[str] = mapped_column(CODE, primary_key=True)
    value_micro: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text)
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Budget(Base):
    """An internal unit's internal-spend budget for a fiscal year, from `budgets.csv`."""

    __tablename__ = "budgets"
    fiscal_year: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit: Mapped[str] = mapped_column(CODE, ForeignKey("units.code"), primary_key=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (CheckConstraint("amount_minor >= 0", name="amount_not_negative"),)


class Delivery(Base):
    """A period's documents sent to a unit: to whom, when, which files (path and sha256),
    and the close they came from (`journal_hash`), so a re-close's documents go again."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(PERIOD, ForeignKey("periods.period"))
    unit: Mapped[str] = mapped_column(CODE, ForeignKey("units.code"))
    journal_hash: Mapped[str] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(320))
    sent_at: Mapped[dt.datetime] = mapped_column(DateTime)
    message_id: Mapped[str] = mapped_column(String(250))
    attachments: Mapped[str] = mapped_column(Text)
    __table_args__ = (UniqueConstraint("period", "unit", "journal_hash"),)


class PeriodTotalRow(Base):
    """A period's entries summed by consumer, class, provider, service, kind and the
    accounts as posted (`reconciliation.PeriodTotal`), stored when the period is closed.

    Entries are only ever posted by a close, which rewrites its period's rows, so these
    always equal a grouping of the period's entries; `verify` checks that they do. Later
    closes read earlier periods from here (the variance review's three months, the
    budgets' fiscal year, the statements' previous month and year to date) instead of
    grouping every earlier entry again, so a close costs the same in the twelfth month of
    a year as in the first. Derived data: no foreign keys (a million-line month has half a
    million rows, and PostgreSQL checks a foreign key row by row)."""

    __tablename__ = "period_totals"
    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True)
    period: Mapped[str] = mapped_column(PERIOD)
    consumer: Mapped[str] = mapped_column(CODE)
    customer_class: Mapped[str] = mapped_column(String(8))
    provider: Mapped[str] = mapped_column(CODE)
    service: Mapped[str] = mapped_column(CODE)
    kind: Mapped[str] = mapped_column(String(12))
    debit_account: Mapped[str] = mapped_column(String(80))
    credit_account: Mapped[str] = mapped_column(String(80))
    entries: Mapped[int] = mapped_column(Integer)
    quantity_micro: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (Index("ix_period_totals_period", "period"),)
