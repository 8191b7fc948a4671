"""A big period's usage priced in a second process while this one chains and stores it.

At a million lines a close is bound by one core of Python: reading and pricing each
usage line and writing its JSON, then chaining the hashes and handing the rows to the
database. The chain and the connection cannot be shared, but the work before them can:
a second process reads the period's usage of services without tiers on its own
connection, prices it (`charges.untiered_usage_charges`, the same code) and prepares the
entries (`journal.prepared`); this process gives each entry its id and the hash of the
one before (`journal.chain`) and stores it. The rest of the period (tiered usage,
recurring fees, adjustments, allocations) is priced here, after it, as before.

The second process sees what is committed. The close holds the period's lock, so
nothing can be imported into the period meanwhile; before anything is posted, the lines
it will price are compared (count, sum and last of their ids) with the ones this
transaction sees, and when they differ (usage stored in this same transaction, not yet
committed) the usage is priced here instead.
"""

from __future__ import annotations

import datetime as dt
import marshal
import pickle
from collections.abc import Iterator
from types import TracebackType

import orjson
from sqlalchemy import Connection, func, select
from sqlalchemy.engine import URL

from chargeback.charges import untiered_query, untiered_usage_charges
from chargeback.db import url_for_another_process
from chargeback.journal import Prepared, prepared, stored_timestamp
from chargeback.processes import Helper, Send, cores
from chargeback.reconciliation import PeriodTotal, Tally
from chargeback.reference import Reference
from chargeback.schema import Usage

#: From this many lines of untiered usage on, they are priced in a second process
#: (unless the PostgreSQL server is on this machine: `server_on_this_machine`).
#: Starting it (a second Python, its imports, its connection) takes about a second;
#: each line then costs this process some 6 microseconds less.
ELSEWHERE_LINES = 200_000

#: Batches of entries (50,000 each, 12.9-13.0 MB as sent at a million lines) the second
#: process may have priced and not yet handed over, some 65 MB with the one being sent:
#: it prices faster than this process chains and stores, and with them it sums up its
#: totals while this process still stores the last batches.
PRICED_AHEAD = 4

Fingerprint = tuple[int, int, int]


def fingerprint(conn: Connection, period: str, tiered: frozenset[str]) -> Fingerprint:
    """(count, sum of ids, last id) of the lines `untiered_usage_charges` will price."""
    lines = untiered_query(conn, period, tiered).subquery()
    row = conn.execute(select(func.count(), func.coalesce(func.sum(lines.c.id), 0),
                              func.coalesce(func.max(lines.c.id), 0))).one()
    return int(row[0]), int(row[1]), int(row[2])


class UsageElsewhere:
    """The second process and what it sends: `batches()` yields the prepared entries in
    order; once they are all read, `totals` holds their totals (`Tally.totals`), in order."""

    def __init__(self, helper: Helper, posted_at: dt.datetime, stored_at: object, stored: bool) -> None:
        self.helper = helper
        self.posted_at, self.stored_at, self.stored = posted_at, stored_at, stored
        self.totals: list[PeriodTotal] = []

    def batches(self) -> Iterator[Prepared]:
        """The entries prepared by the second process. Each comes as the JSON its hash is
        taken over (`journal.hashed_json`, the id's place left out), one a line; the rows
        are that JSON read back by orjson (dates as the ISO text they were hashed as),
        which gives back exactly the values written, all of them texts, integers and
        nulls. Sending the rows themselves as well, in `marshal`'s form, cost the second
        process, the busier of the two, 4-10 s a million lines; reading them back from
        the JSON costs this one about the time `marshal` took (3.5 against 2.5-3.4 s)."""
        stored, stored_at, posted_at = self.stored, self.stored_at, self.posted_at
        days: dict[str, dt.date] = {}
        while True:
            kind, content = self.helper.receive()
            if kind == "done":
                make = tuple.__new__
                self.totals = [make(PeriodTotal, total) for total in marshal.loads(content)]  # type: ignore[arg-type]
                return
            lines = content.split(b"\n")  # type: ignore[attr-defined]
            rows = orjson.loads(b"[[null," + b"],[null,".join(lines) + b"]]")
            if stored:  # SQLite stores the dates as the ISO text they were hashed as
                for row in rows:
                    row[1] = stored_at
            else:
                for row in rows:
                    row[1] = posted_at
                    row[3] = days.get(row[3]) or days.setdefault(row[3], dt.date.fromisoformat(row[3]))
                    row[4] = days.get(row[4]) or days.setdefault(row[4], dt.date.fromisoformat(row[4]))
            yield Prepared(rows, lines, [])

    def __enter__(self) -> UsageElsewhere:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.helper.stop()


def server_on_this_machine(url: URL) -> bool:
    """Whether a PostgreSQL server runs here (no host, a socket or a loopback address):
    it takes a core of its own to store the entries, and a second Python process beside
    it gains nothing on two cores (a million-line close took 36.0 and 34.6 s with one,
    34.5 and 34.7 s without). A server on another machine leaves this one's cores to the
    close."""
    host = url.host or url.query.get("host")
    return not host or str(host).startswith("/") or host in ("localhost", "127.0.0.1", "::1")


def start(conn: Connection, ref: Reference, period: str, posted_at: dt.datetime) -> UsageElsewhere | None:
    """The period's untiered usage priced in a second process, when it is big enough and
    that process sees the same lines; None to price it here."""
    url = conn.engine.url
    shared = url_for_another_process(conn)
    if shared is None or (url.get_backend_name() == "postgresql" and server_on_this_machine(url)) \
            or cores() < 2:
        return None
    tiered = ref.rates.tiered
    in_period = select(func.count()).select_from(Usage).where(Usage.period == period)
    if (conn.execute(in_period).scalar() or 0) < ELSEWHERE_LINES:  # on the period's index: at once
        return None
    posted_at = posted_at.replace(microsecond=0)
    stored, stored_at = stored_timestamp(conn, posted_at)
    helper = Helper(_price, (shared, period,
                             pickle.dumps(ref, protocol=pickle.HIGHEST_PROTOCOL), posted_at),
                    f"pricing the usage of {period}", ahead=PRICED_AHEAD)
    try:
        ours = fingerprint(conn, period, tiered)  # while the second process starts
        kind, theirs = helper.receive()
        if kind == "lines" and theirs == ours and ours[0] >= ELSEWHERE_LINES:
            return UsageElsewhere(helper, posted_at, stored_at, stored)
    except BaseException:
        helper.stop()
        raise
    helper.stop()
    return None


def _price(send: Send, url: str, period: str, reference: bytes, posted_at: dt.datetime) -> None:
    """In the second process: the lines' fingerprint, then the prepared batches, then
    their totals in order."""
    from chargeback import db

    engine = db.connect(url, reader=True)
    ref: Reference = pickle.loads(reference)
    tally = Tally()
    with db.collector_paused():
        with engine.connect() as conn:
            send("lines", fingerprint(conn, period, ref.rates.tiered))
            drafts = tally.counting(untiered_usage_charges(conn, ref, period))
            # only the JSON each entry is hashed over, as lines (JSON has no raw line
            # breaks): the rows are read back from it (`UsageElsewhere.batches`)
            for batch in prepared(drafts, posted_at, "", stored=True):
                send("batch", b"\n".join(batch.tails))
        # sorted here while the closing process stores the last batches (with the cycle
        # collector on, making the half a million totals took 8 s instead of 2); as plain
        # tuples, which marshal carries (about 1 s to write, read and make into totals
        # again, against 3.6-4.1 s pickled as named tuples)
        send("done", marshal.dumps([tuple(total) for total in tally.totals()]))
    engine.dispose()
