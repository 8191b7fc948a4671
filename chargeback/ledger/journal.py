"""The journal: append-only, hash-chained, balanced entries.

Each charge is posted as one entry that debits the consumer's account and credits the
provider's by one amount, so no entry can be unbalanced. Entries are appended in
id order under a lock on the journal head; each carries the hash of the one before it,
and `verify` recomputes the whole chain. Corrections are new entries, never edits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import Connection, select, update

from chargeback.core.errors import Refused
from chargeback.ledger.entries import HASHED_FIELDS, Draft, hashed_json
from chargeback.store.db import Overlapped, bind_processor, bulk_insert, collector_paused, insert_values
from chargeback.store.schema import Entry, JournalHead

#: No charge reaches 10^12 in any currency (minor digits 0-3): every amount, and the sum
#: of a period's amounts, stays well inside a signed 64-bit column.
MAX_AMOUNT_MINOR = 10**15


@dataclass(frozen=True)
class Posted:
    """What a posting run appended."""

    count: int
    first_id: int | None
    last_hash: str


class Prepared(NamedTuple):
    """A batch of drafts made ready to chain: everything of each entry but its place in
    the chain, so the work can be done ahead of the chain (in another process, even)."""

    #: Each entry's stored values but the last two (prev_hash, hash); the first (its id)
    #: is None until the entry is chained.
    rows: list[list[object]]
    #: Each entry's hashed JSON between its id and its prev_hash: `[ID,TAIL,"PREV"]` is
    #: the JSON `hashed_json` writes of the entry's values.
    tails: list[bytes]
    #: Each entry's lines digest, or None.
    digests: list[str | None]


def prepared(
    drafts: Iterable[Draft], posted_at: dt.datetime, stored_at: object, stored: bool, batch: int = 50_000
) -> Iterator[Prepared]:
    """`drafts` ready to chain, `batch` at a time; refuses a charge the journal cannot
    hold (an amount out of range, a NUL character in its text). `stored`: rows as SQLite
    stores them (dates as the ISO text they are hashed with, the timestamp as
    `stored_at`); otherwise as PostgreSQL's COPY takes them."""
    # The hash is taken over the JSON of the values with dates as ISO text: the same
    # bytes `entry_hash` produces from the stored row.
    stamp = posted_at.isoformat()
    iso: dict[dt.date, str] = {}
    encode = hashed_json
    rows: list[list[object]] = []
    tails: list[bytes] = []
    digests: list[str | None] = []
    for draft in drafts:
        if not -MAX_AMOUNT_MINOR < draft.amount_minor < MAX_AMOUNT_MINOR:
            raise Refused(
                f"{draft.kind} charge {draft.service} {draft.reference or ''} to {draft.consumer}: "
                f"its amount ({draft.amount_minor} minor units) is too large to post; "
                "check its quantity and rate (a charge must stay below 10^12)"
            )
        day, service_day = draft[1], draft[2]
        day_text = iso.get(day) or iso.setdefault(day, day.isoformat())
        service_text = iso.get(service_day) or iso.setdefault(service_day, service_day.isoformat())
        values: list[object] = [None, stamp, draft[0], day_text, service_text, *draft[3:-1]]
        text = encode(values)
        if b"\\u0000" in text and any(isinstance(v, str) and "\x00" in v for v in draft):
            raise Refused(
                f"{draft.kind} charge {draft.service} {draft.reference or ''} to {draft.consumer}: "
                "its text holds a NUL character, which the journal and its exports cannot "
                "carry; remove it from the input"
            )
        tails.append(text[6:-1])  # between `[null,` and `]`
        if stored:  # the hashed values are the row, but for the timestamp's stored form
            values[1] = stored_at
            rows.append(values)
        else:
            rows.append([None, posted_at, *draft[:-1]])
        digests.append(draft.lines_digest)
        if len(rows) >= batch:
            yield Prepared(rows, tails, digests)
            rows, tails, digests = [], [], []
    if rows:
        yield Prepared(rows, tails, digests)


def stored_timestamp(conn: Connection, posted_at: dt.datetime) -> tuple[bool, object]:
    """Whether rows go in as SQLite stores them, and `posted_at` in that stored form."""
    stored = conn.dialect.name == "sqlite"
    return stored, _stored(conn, posted_at) if stored else posted_at


def post(
    conn: Connection,
    drafts: Iterable[Draft],
    posted_at: dt.datetime,
    batch: int = 50_000,
    on_batch: Callable[[int], None] | None = None,
) -> Posted:
    """Append drafts to the journal, in order, under the journal head's lock.

    The drafts may read the database lazily as they go (the usage still to price, a
    chunk at a time): those reads only touch rows that no batch in flight writes."""
    posted_at = posted_at.replace(microsecond=0)
    stored, stored_at = stored_timestamp(conn, posted_at)
    return chain(conn, prepared(drafts, posted_at, stored_at, stored, batch), on_batch)


@collector_paused()
def chain(conn: Connection, batches: Iterable[Prepared], on_batch: Callable[[int], None] | None = None) -> Posted:
    """Append prepared batches to the journal, in order, under the journal head's lock:
    each entry gets the next id and the hash of the one before.

    Each batch is inserted on a second thread while the next is chained (`Overlapped`)."""
    head_row = conn.execute(
        select(JournalHead.last_entry, JournalHead.last_hash).where(JournalHead.id == 1).with_for_update()
    ).one()
    last_id, last_hash = head_row.last_entry, head_row.last_hash
    first_id, count = last_id + 1, 0
    sha256 = hashlib.sha256
    insert = _insert_stored if conn.dialect.name == "sqlite" else _insert
    previous = last_hash.encode()
    with Overlapped() as inserts:
        for rows, tails, digests in batches:
            for row, tail, lines in zip(rows, tails, digests, strict=False):
                last_id += 1
                row[0] = last_id
                if lines is None:
                    digest = sha256(b'[%d,%s,"%s"]' % (last_id, tail, previous)).hexdigest()
                else:
                    digest = sha256(b'[%d,%s,"%s","%s"]' % (last_id, tail, previous, lines.encode())).hexdigest()
                row.append(last_hash)
                row.append(digest)
                row.append(lines)
                last_hash, previous = digest, digest.encode()
            inserts.submit(insert, conn, rows)
            count += len(rows)
            if on_batch is not None:
                on_batch(len(rows))
    if count:
        conn.execute(update(JournalHead).where(JournalHead.id == 1).values(last_entry=last_id, last_hash=last_hash))
    return Posted(count, first_id if count else None, last_hash)


def _insert(conn: Connection, rows: list[Sequence[object]]) -> int:
    return bulk_insert(conn, Entry.__table__, COLUMNS, rows)


def _stored(conn: Connection, posted_at: dt.datetime) -> object:
    """`posted_at` as the database driver stores it (SQLAlchemy's text form on SQLite)."""
    process = bind_processor(Entry.__table__.c.posted_at.type, conn.dialect)
    return process(posted_at) if process else posted_at


def _insert_stored(conn: Connection, rows: list[Sequence[object]]) -> int:
    """SQLite: rows whose dates are already the text SQLite stores."""
    return insert_values(conn, Entry.__tablename__, COLUMNS, rows)


def head(conn: Connection) -> tuple[int, str]:
    """(id, hash) of the last entry; (0, GENESIS) for an empty journal."""
    row = conn.execute(select(JournalHead.last_entry, JournalHead.last_hash)).one()
    return row.last_entry, row.last_hash


ENTRY_COLUMNS = [getattr(Entry, name) for name in HASHED_FIELDS] + [Entry.hash, Entry.lines_digest]
COLUMNS = HASHED_FIELDS + ("hash", "lines_digest")
