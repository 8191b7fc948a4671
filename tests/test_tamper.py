"""`verify` against a careful forger: one who changes an amount and then recomputes every
hash after it and the journal head, so the chain itself is intact again. The totals
recorded when the period was closed, and the journal hash recorded at its close, still
give the rewrite away. (test_journal.py covers the plain changes: an amount, a deleted,
inserted or reordered entry; test_audit.py the audit log.)"""

from reliability import engine_for, sql
from sqlalchemy import select, update

from chargeback import api
from chargeback.ledger.entries import GENESIS, entry_hash
from chargeback.ledger.journal import ENTRY_COLUMNS
from chargeback.store.schema import Entry, JournalHead, Period


def rechain(url: str, entry_id: int, delta: int) -> None:
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(update(Entry).where(Entry.id == entry_id).values(amount_minor=Entry.amount_minor + delta))
        previous = GENESIS
        for row in conn.execute(select(*ENTRY_COLUMNS).order_by(Entry.id)).all():
            values = list(row)[:-2]
            values[-1] = previous
            previous = entry_hash(values, row.lines_digest)
            conn.execute(update(Entry).where(Entry.id == row.id).values(prev_hash=values[-1], hash=previous))
        conn.execute(update(JournalHead).values(last_hash=previous))
    engine.dispose()


def test_a_rechained_rewrite_is_found_by_the_closed_periods(closed: str) -> None:
    rechain(closed, 2, 100)
    problems = api.verify(closed).problems
    seals = [p for p in problems if "the seal of its close" in p]
    assert [p.split(" at ")[0] for p in seals] == [
        "period 2026-03: the seal of its close",
        "period 2026-04: the seal of its close",
    ]
    assert all(p.endswith("is no longer in the journal: entries were rewritten") for p in seals)
    assert [p for p in problems if p not in seals] == [
        "entry 2: its usage lines do not add up to its quantity and amount: charge_lines was altered",
        "period 2026-03: its entries no longer match the totals recorded when it was closed (5 entries now, 5 at close)",
        "period 2026-03: the journal hash recorded when it was closed is no longer in the journal: entries were rewritten",
        "period 2026-04: the journal hash recorded when it was closed is no longer in the journal: entries were rewritten",
        "period 2026-03: its entries no longer match the totals by consumer and service stored at its close "
        "(one or the other was changed behind the engine's back)",
    ]


def test_changed_recorded_totals_are_found(closed: str) -> None:
    sql(closed, "UPDATE periods SET internal_spend_minor = internal_spend_minor - 1 WHERE period = '2026-04'")
    assert api.verify(closed).problems == [
        "period 2026-04: its entries no longer match the totals recorded when it was closed (3 entries now, 3 at close)"
    ]


def test_an_entry_moved_into_a_closed_period_is_found(closed: str) -> None:
    engine = engine_for(closed)
    with engine.begin() as conn:
        assert conn.execute(select(Period.entry_count).where(Period.period == "2026-04")).scalar() == 3
    engine.dispose()
    sql(closed, "UPDATE entries SET period = '2026-04' WHERE id = 1")
    problems = api.verify(closed).problems
    assert problems[0] == "entry 1: its contents do not match its hash: the entry was altered"
    assert (
        "period 2026-03: its entries no longer match the totals recorded when it was closed (4 entries now, 5 at close)"
        in problems
    )


def test_changed_stored_totals_are_found(closed: str) -> None:
    """The totals stored at a close, which later closes read for the months before theirs."""
    sql(
        closed,
        "UPDATE period_totals SET amount_minor = amount_minor + 1 "
        "WHERE id = (SELECT min(id) FROM period_totals WHERE period = '2026-04')",
    )
    assert api.verify(closed).problems == [
        "period 2026-04: its entries no longer match the totals by consumer and service stored at its close "
        "(one or the other was changed behind the engine's back)"
    ]
