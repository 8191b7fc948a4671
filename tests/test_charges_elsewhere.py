"""A big period's usage priced in a second process (`charges_elsewhere`): the same
entries, to the byte of their hashes, as priced in the closing process; its refusals
said the same way; and usage the second process cannot see is priced here."""

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select, update

from chargeback import api, charges_elsewhere, db
from chargeback.errors import Refused
from chargeback.periods import close_period
from chargeback.schema import Entry, EntryTier, Rate
from chargeback.usage import import_usage

WHEN = dt.datetime(2026, 10, 1, 9, 30)


@pytest.fixture
def september(db_url: str, tmp_path: Path) -> str:
    """The demo book closed through August, September's usage imported (untiered and
    tiered services, recurring fees, an adjustment and allocations to come)."""
    api.run(db_url, api.demo_book(), tmp_path / "out", through="2026-08")
    for name in ("2026-09.csv", "2026-09-fleet.xlsx"):
        api.import_file(db_url, api.demo_book() / "usage" / name, "2026-09")
    # texts a JSON round trip must give back exactly: quotes, a backslash, a line break,
    # accents, an emoji, a tab, no text at all; and a big quantity
    tricky = tmp_path / "tricky.csv"
    tricky.write_text(
        "date,service,consumer,quantity,reference,description\n"
        '2026-09-04,IT-LICENSE,MATH,1,"TRICKY-\\1","Say ""hi"" \\ then\nnext line"\n'
        "2026-09-05,IT-LICENSE,MATH,2,TRICKY-2,Café Zoë 📈\ttab\n"
        "2026-09-06,IT-LICENSE,MATH,9999999.999999,TRICKY-3,\n",
        encoding="utf-8")
    api.import_file(db_url, tricky, "2026-09")
    api.adjust(db_url, "2026-09", "IT-HELPDESK", "CHEM", "-12.50", "Goodwill credit")
    return db_url


@pytest.fixture
def priced_where(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each close priced its usage in a second process; any size is big enough."""
    used: list[bool] = []
    original = charges_elsewhere.start

    def spied(*args, **kwargs):  # type: ignore[no-untyped-def]
        elsewhere = original(*args, **kwargs)
        used.append(elsewhere is not None)
        return elsewhere

    monkeypatch.setattr(charges_elsewhere, "ELSEWHERE_LINES", 1)
    monkeypatch.setattr(charges_elsewhere, "server_on_this_machine", lambda url: False)
    monkeypatch.setattr(charges_elsewhere, "start", spied)
    return used


def closed_in_a_rolled_back_transaction(url: str) -> tuple[int, list[tuple], list[tuple]]:  # type: ignore[type-arg]
    engine = db.connect(url)
    with db.rolled_back(engine) as conn:
        posted = close_period(conn, "2026-09", WHEN).posted
        entries = [tuple(r) for r in conn.execute(select(Entry.__table__).order_by(Entry.id))]
        tiers = [tuple(r) for r in conn.execute(select(EntryTier.__table__).order_by(
            EntryTier.entry_id, EntryTier.piece))]
    engine.dispose()
    return posted, entries, tiers


def test_the_same_entries_and_hashes_as_priced_here(september: str, priced_where: list[bool],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = closed_in_a_rolled_back_transaction(september)
    monkeypatch.setattr(charges_elsewhere, "ELSEWHERE_LINES", 10**9)
    here = closed_in_a_rolled_back_transaction(september)
    assert priced_where == [True, False]
    assert elsewhere == here
    posted, entries, tiers = here
    assert posted == len([e for e in entries if e[1] == "2026-09"]) and tiers
    kinds = {e[5] for e in entries if e[1] == "2026-09"}
    assert kinds == {"usage", "recurring", "adjustment", "allocation"}
    memos = {e[20] for e in entries if (e[19] or "").startswith("TRICKY-")}
    assert memos == {'Say "hi" \\ then\nnext line', "Café Zoë 📈\ttab", None}


def test_a_close_priced_elsewhere_verifies_and_stores_the_totals_of_its_entries(
        september: str, priced_where: list[bool], tmp_path: Path) -> None:
    from chargeback.reconciliation import period_totals, stored_totals

    result = api.close(september, "2026-09", tmp_path / "out")
    assert priced_where == [True] and result.reconciliation.balanced
    assert api.verify(september).ok
    engine = db.connect(september)
    with engine.connect() as conn:
        assert stored_totals(conn, "2026-09") == period_totals(conn, "2026-09")
    engine.dispose()


def test_its_refusal_is_said_as_here_and_nothing_is_posted(september: str, priced_where: list[bool],
                                                           tmp_path: Path) -> None:
    engine = db.connect(september)
    with engine.begin() as conn:  # the rate of every service starts after September
        conn.execute(update(Rate).values(effective_from=dt.date(2026, 10, 1)))
    engine.dispose()
    with pytest.raises(Refused, match=r"usage \S+ \S+ \(2026-09-\d\d, \S+\): no rate in force any more"):
        api.close(september, "2026-09", tmp_path / "out")
    assert priced_where == [True]
    assert api.reconcile(september, "2026-09").entries == 0


def test_usage_stored_in_the_same_transaction_is_priced_here(september: str, priced_where: list[bool],
                                                             tmp_path: Path) -> None:
    """The second process sees only what is committed: lines imported in the closing
    transaction make the two views differ, and the closing process prices it all."""
    late = tmp_path / "late.csv"
    late.write_text("date,service,consumer,quantity,reference,description\n"
                    "2026-09-30,IT-HELPDESK,CHEM,2,LATE-1,imported with the close\n")
    engine = db.connect(september)
    with db.transaction(engine) as conn:
        import_usage(conn, late, "2026-09", WHEN)
        posted = close_period(conn, "2026-09", WHEN).posted
        references = set(conn.execute(select(Entry.reference).where(Entry.period == "2026-09")).scalars())
    engine.dispose()
    assert priced_where == [False]
    assert "LATE-1" in references and posted > 1
    assert api.verify(september).ok


def test_a_postgresql_server_on_this_machine_leaves_the_pricing_here() -> None:
    """The server takes the second core; one on another machine leaves it to the close."""
    from sqlalchemy.engine import make_url

    local = ["postgresql://u:p@localhost/db", "postgresql://u:p@127.0.0.1:5432/db", "postgresql:///db",
             "postgresql://u@/db?host=/var/run/postgresql"]
    assert all(charges_elsewhere.server_on_this_machine(make_url(url)) for url in local)
    assert not charges_elsewhere.server_on_this_machine(make_url("postgresql://u:p@db.example.org/ledger"))


def test_the_second_process_stops_when_the_close_stops_reading(september: str, priced_where: list[bool]) -> None:
    """A close that stops (refused, failed or killed) closes its end of the pipe: the
    second process, blocked handing over a batch, ends on its own, having written
    nothing."""
    from chargeback.reference import load_reference

    engine = db.connect(september)
    with db.rolled_back(engine) as conn:
        elsewhere = charges_elsewhere.start(conn, load_reference(conn), "2026-09", WHEN)
        assert elsewhere is not None and elsewhere.helper.process.is_alive()
        elsewhere.helper.receiver.close()  # as when the closing process dies
        elsewhere.helper.process.join(timeout=30)
        assert elsewhere.helper.process.exitcode == 0
    engine.dispose()
    assert api.reconcile(september, "2026-09").entries == 0


def test_the_cores_counted_where_the_affinity_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Linux gives the cores this process may use; elsewhere (macOS, Windows) the
    machine's count stands in for it."""
    import os

    from chargeback.processes import cores

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert cores() == 3
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 5)
    assert cores() == 5
