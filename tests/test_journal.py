"""The journal is append-only and hash-chained: `verify` finds any rewrite of history,
made behind the engine's back with plain SQL."""

import datetime as dt
import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability import plain_connection, sql
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from chargeback import api
from chargeback.core.errors import Refused
from chargeback.core.settings import Settings
from chargeback.ledger.entries import GENESIS, entry_hash, hashed_json
from chargeback.ledger.journal import ENTRY_COLUMNS


def test_entries_link_to_the_one_before(closed: str) -> None:
    with plain_connection(closed) as conn:
        rows = conn.execute(select(*ENTRY_COLUMNS).order_by(ENTRY_COLUMNS[0])).all()
    assert rows[0].prev_hash == GENESIS
    for before, after in zip(rows, rows[1:], strict=False):
        assert after.prev_hash == before.hash
    assert all(entry_hash(tuple(r)[:-2], r.lines_digest) == r.hash for r in rows)


def test_a_changed_amount_is_found(closed: str) -> None:
    sql(closed, "UPDATE entries SET amount_minor = amount_minor + 1 WHERE id = 3")
    result = api.verify(closed)
    assert result.problems[0] == "entry 3: its contents do not match its hash: the entry was altered"
    assert any(p.startswith("period 2026-03: its entries no longer match the totals") for p in result.problems)


def test_a_deleted_entry_is_found(closed: str) -> None:
    sql(closed, "DELETE FROM entries WHERE id = 2")
    problems = api.verify(closed).problems
    assert problems[0] == "entry 3: expected entry 2 here: entries were deleted, inserted or renumbered"
    assert problems[1].startswith("entry 3: does not follow the entry before it")


def test_a_deleted_last_entry_is_found(closed: str) -> None:
    sql(closed, "DELETE FROM entries WHERE id = 8")
    problems = api.verify(closed).problems
    assert problems[0].startswith("journal head names entry 8 but the journal ends at entry 7")


def test_reordered_entries_are_found(closed: str) -> None:
    sql(closed, "UPDATE entries SET id = -1 WHERE id = 4")
    sql(closed, "UPDATE entries SET id = 4 WHERE id = 5")
    sql(closed, "UPDATE entries SET id = 5 WHERE id = -1")
    problems = api.verify(closed).problems
    assert problems[0].startswith("entry 4: does not follow the entry before it")


def test_an_inserted_entry_is_found(closed: str) -> None:
    sql(
        closed,
        "INSERT INTO entries SELECT id + 100, period, posted_at, date, service_date, kind, NULL, 'forged', "
        "service, provider, consumer, customer_class, quantity_micro, rate_micro, amount_minor, debit_account, "
        "credit_account, debit_gl, credit_gl, reference, memo, rate_source, prev_hash, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', NULL "
        "FROM entries WHERE id = 8",
    )
    problems = api.verify(closed).problems
    assert problems[0] == "entry 108: expected entry 9 here: entries were deleted, inserted or renumbered"


def test_an_entry_moved_to_another_account_is_found(closed: str) -> None:
    sql(closed, "UPDATE entries SET credit_account = 'revenue:external:IT' WHERE id = 1")
    problems = api.verify(closed).problems
    assert "entry 1: posted to the wrong accounts" in problems


def test_the_database_refuses_an_entry_with_one_account(closed: str) -> None:
    with pytest.raises(DBAPIError):
        sql(closed, "UPDATE entries SET credit_account = debit_account WHERE id = 1")
    with pytest.raises(DBAPIError):
        sql(closed, "UPDATE entries SET amount_minor = NULL WHERE id = 1")


def test_the_hash_is_the_json_of_the_values() -> None:
    """The fast encoder gives the bytes of the JSON the chain was defined with."""
    import datetime as dt
    import hashlib
    import json

    values = [
        7,
        dt.datetime(2026, 3, 31, 23, 59, 1),
        "2026-03",
        dt.date(2026, 3, 1),
        dt.date(2026, 2, 28),
        "usage",
        None,
        'a "quoted" \\ back\nslash\t',
        "é€😀\x00\x1f",
        -12,
        10**17,
        "",
        None,
    ]
    reference = json.dumps(values, ensure_ascii=False, separators=(",", ":"), default=lambda v: v.isoformat())
    assert entry_hash(values) == hashlib.sha256(reference.encode("utf-8")).hexdigest()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
            st.dates(),
            st.datetimes(),
            st.datetimes(timezones=st.just(dt.UTC)),
        )
    )
)
def test_the_fast_json_is_the_standard_librarys(values: list[object]) -> None:
    """Journals hashed before orjson still verify: for any text (control characters,
    quotes, line separators, emoji), 64-bit number, date or timestamp, the bytes hashed
    are those of the standard library's compact, unescaped JSON."""
    reference = json.dumps(values, ensure_ascii=False, separators=(",", ":"), default=lambda v: v.isoformat())
    assert hashed_json(values) == reference.encode("utf-8")


def test_posted_entries_store_exactly_what_was_hashed(loaded: str, tuned: Callable[..., Settings]) -> None:
    """On SQLite a batch is inserted many rows a statement (here 3, so a batch of 10 ends
    with a shorter one), its dates as the text they were hashed with; on PostgreSQL it is
    copied in. Either way every value comes back as posted: text with quotes, backslashes,
    line breaks, control characters, emoji and line separators; negative, large and missing numbers;
    and two batches' worth of entries chained across the batch boundary."""
    import datetime as dt

    from chargeback.close.periods import lock_period
    from chargeback.close.reconciliation import period_totals, store_totals
    from chargeback.ledger import journal
    from chargeback.ledger.entries import Draft
    from chargeback.store import db

    tuned(rows_per_insert=3)

    awkward = [
        'say "hi"',
        "back\\slash",
        "line\nbreak\r\n",
        "ctrl\x01\x1f",
        "emoji \U0001f4b8",
        "sep\u2028arator",
        "x" * 2000,
        "",
        "tab\tand ünïcode",
        "a literal \\u0000, not a NUL",
    ]
    drafts = [
        Draft(
            "2026-03",
            dt.date(2026, 3, 1 + i % 28),
            dt.date(2026, 2, 1 + i % 28),
            "adjustment",
            None,
            None,
            "HELP",
            "IT",
            "ART",
            "internal",
            -(10**12) + i,
            None if i % 2 else 60_000_000,
            (-1) ** i * (10**14 + i),
            "expenses:internal:ART",
            "revenue:internal:IT",
            'GL "6100"' if i % 3 else None,
            None,
            f"R-{i}",
            awkward[i % len(awkward)] or None,
            None,
        )
        for i in range(25)
    ]
    engine = db.connect(loaded)
    with engine.begin() as conn:
        lock_period(conn, "2026-03", create=True)
        posted = journal.post(conn, drafts, dt.datetime(2026, 4, 1, 9, 30), batch=10)
        store_totals(conn, "2026-03", period_totals(conn, "2026-03"))  # as a close does
    assert posted.count == 25
    with engine.connect() as conn:
        rows = conn.execute(select(*ENTRY_COLUMNS).order_by(ENTRY_COLUMNS[0])).all()
    assert [tuple(r)[2:-3] for r in rows] == [tuple(d[:-1]) for d in drafts]
    assert all(r.posted_at == dt.datetime(2026, 4, 1, 9, 30) for r in rows)
    assert all(entry_hash(tuple(r)[:-2], r.lines_digest) == r.hash for r in rows)
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert api.verify(loaded).ok

    with engine.begin() as conn, pytest.raises(Refused, match="NUL character"):
        journal.post(conn, [drafts[0]._replace(memo="nul\x00inside")], dt.datetime(2026, 4, 2))
    assert api.verify(loaded).entries == 25
