"""Period events (closes and reopens) become hash-chained and append-only, and each close
records its seal.

A period's status must follow from its events, so `verify` finds a status changed in SQL
(a reopen that left no trace). A close's event records the journal head after it
(`journal_entry`, `journal_hash`): its seal, which auditors keep outside the database,
signed when a seal key is configured (`signature`, by the key whose fingerprint is `key`).
Each event's hash covers its fields, its seal and the hash of the event before it;
`period_event_head` names the last one, as `audit_head` does for the audit log.

Existing events are chained here in id order. The last close of a period that is closed
gets the journal hash recorded at that close (`periods.closed_hash`) as its seal, and the
id of the entry that holds it. An earlier close, superseded by a reopen, recorded no
journal head, so it gets no seal rather than a guessed one.

Database triggers refuse UPDATE and DELETE of an event (and TRUNCATE on PostgreSQL), as
they do on the audit log. A downgrade removes the chain (its hashes, head and triggers)
but keeps the seals: they are history, and an upgrade takes them up again.

Revision ID: 0012
Revises: 0011
"""

import datetime as dt
import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
APPEND_ONLY = "period events are append-only: a close or reopen cannot be changed or deleted"
SEAL_COLUMNS = (
    ("journal_entry", sa.BigInteger()),
    ("journal_hash", sa.String(64)),
    ("signature", sa.String(128)),
    ("key", sa.String(64)),
)
CHAIN_COLUMNS = ("prev_hash", "hash")
HASHED = (
    "id",
    "period",
    "at",
    "action",
    "reason",
    "user",
    "journal_entry",
    "journal_hash",
    "signature",
    "key",
    "prev_hash",
)


def _event_hash(values: list[object]) -> str:
    """`seals.event_hash`: sha256 of the values as compact JSON, dates as ISO text (the
    form `journal.hashed_json` defines)."""

    def iso(value: object) -> str:
        if isinstance(value, (dt.date, dt.datetime)):
            return value.isoformat()
        raise TypeError(type(value).__name__)

    text = json.dumps(values, ensure_ascii=False, separators=(",", ":"), default=iso)
    return hashlib.sha256(text.encode()).hexdigest()


def _events() -> sa.TableClause:
    return sa.table(
        "period_events",
        sa.column("id", sa.Integer),
        sa.column("period", sa.String),
        sa.column("at", sa.DateTime),
        sa.column("action", sa.String),
        sa.column("reason", sa.Text),
        sa.column("user", sa.String),
        sa.column("journal_entry", sa.BigInteger),
        sa.column("journal_hash", sa.String),
        sa.column("signature", sa.String),
        sa.column("key", sa.String),
        sa.column("prev_hash", sa.String),
        sa.column("hash", sa.String),
    )


def _chain(bind: sa.Connection) -> tuple[int, str]:
    """Chain every event in id order, giving the last close of each closed period its
    seal; returns the head (last id, last hash)."""
    events = _events()
    periods = sa.table(
        "periods", sa.column("period", sa.String), sa.column("status", sa.String), sa.column("closed_hash", sa.String)
    )
    entries = sa.table("entries", sa.column("id", sa.BigInteger), sa.column("hash", sa.String))
    rows = bind.execute(sa.select(events).order_by(events.c.id)).all()
    last_close = {}
    for row in rows:
        if row.action == "close":
            last_close[row.period] = row.id
    closed = dict(
        bind.execute(sa.select(periods.c.period, periods.c.closed_hash).where(periods.c.status == "closed")).all()
    )
    previous, last_id = GENESIS, 0
    for row in rows:
        entry, journal_hash = row.journal_entry, row.journal_hash
        if journal_hash is None and row.action == "close" and last_close.get(row.period) == row.id:
            journal_hash = closed.get(row.period)
            if journal_hash == GENESIS:
                entry = 0
            elif journal_hash is not None:
                entry = bind.execute(
                    sa.select(entries.c.id).where(entries.c.hash == journal_hash).order_by(entries.c.id).limit(1)
                ).scalar()
        values = [
            row.id,
            row.period,
            row.at,
            row.action,
            row.reason,
            row.user,
            entry,
            journal_hash,
            row.signature,
            row.key,
            previous,
        ]
        digest = _event_hash(values)
        bind.execute(
            sa.update(events)
            .where(events.c.id == row.id)
            .values(journal_entry=entry, journal_hash=journal_hash, prev_hash=previous, hash=digest)
        )
        previous, last_id = digest, row.id
    return last_id, previous


def upgrade() -> None:
    bind = op.get_bind()
    present = {c["name"] for c in sa.inspect(bind).get_columns("period_events")}
    with op.batch_alter_table("period_events") as batch:
        for name, kind in SEAL_COLUMNS:
            if name not in present:
                batch.add_column(sa.Column(name, kind, nullable=True))
        for name in CHAIN_COLUMNS:
            batch.add_column(sa.Column(name, sa.String(64), nullable=True))
    last_id, last_hash = _chain(bind)
    with op.batch_alter_table("period_events") as batch:
        for name in CHAIN_COLUMNS:
            batch.alter_column(name, existing_type=sa.String(64), nullable=False)
    op.create_table(
        "period_event_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_event", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_period_event_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_period_event_head")),
    )
    op.bulk_insert(
        sa.table(
            "period_event_head",
            sa.column("id", sa.Integer),
            sa.column("last_event", sa.BigInteger),
            sa.column("last_hash", sa.String),
        ),
        [{"id": 1, "last_event": last_id, "last_hash": last_hash}],
    )
    if bind.dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION period_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{APPEND_ONLY}' USING ERRCODE = 'restrict_violation', "
            "TABLE = 'period_events'; END $$"
        )
        op.execute(
            "CREATE TRIGGER period_events_append_only BEFORE UPDATE OR DELETE ON period_events "
            "FOR EACH ROW EXECUTE FUNCTION period_events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER period_events_not_truncated BEFORE TRUNCATE ON period_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION period_events_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER period_events_no_{action.lower()} BEFORE {action} ON period_events "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )


def downgrade() -> None:
    """The chain goes (an upgrade chains the events again); the seals stay. On PostgreSQL
    the id sequence, unused while events are numbered under their head's lock, moves past
    them for the older code."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "SELECT setval(pg_get_serial_sequence('period_events', 'id'), coalesce(max(id), 0) + 1, false) "
            "FROM period_events"
        )
        op.execute("DROP TRIGGER period_events_not_truncated ON period_events")
        op.execute("DROP TRIGGER period_events_append_only ON period_events")
        op.execute("DROP FUNCTION period_events_append_only()")
    else:
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER period_events_no_{action}")
    op.drop_table("period_event_head")
    with op.batch_alter_table("period_events") as batch:
        for name in CHAIN_COLUMNS:
            batch.drop_column(name)
