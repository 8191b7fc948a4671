"""Closing a period (contract section 4): price, recurring fees, adjustments, post,
net zero, lock, documents; all or nothing; reopen and a later close."""

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import built_state, import_rows
from hypothesis import given
from hypothesis import strategies as st
from reliability import engine_for, plain_connection
from sqlalchemy import func, select

from chargeback import api
from chargeback.core.errors import Refused
from chargeback.core.settings import Settings
from chargeback.documents import folder as documents
from chargeback.ledger.charges import consumer_ranges
from chargeback.store import db
from chargeback.store.schema import Entry, PeriodEvent

D = Decimal


def entries(url: str, period: str | None = None) -> list[tuple]:
    query = select(
        Entry.kind, Entry.consumer, Entry.service, Entry.amount_minor, Entry.debit_account, Entry.credit_account
    ).order_by(Entry.id)
    if period:
        query = query.where(Entry.period == period)
    with plain_connection(url) as conn:
        rows = [tuple(r) for r in conn.execute(query)]
    return rows


def march(url: str, tmp_path: Path) -> None:
    import_rows(
        url,
        tmp_path,
        """
        2026-03-02,HELP,ART,1.5,T-1,Laptop
        2026-03-21,HELP,EXT-1,2,T-2,Kiosk
        """,
    )


def test_close_posts_one_balanced_entry_per_charge_and_locks(loaded: str, tmp_path: Path) -> None:
    march(loaded, tmp_path)
    result = api.close(loaded, "2026-03", tmp_path / "out")
    assert result.posted == 2
    assert entries(loaded) == [
        ("usage", "ART", "HELP", 9000, "expenses:internal:ART", "revenue:internal:IT"),
        ("usage", "EXT-1", "HELP", 18000, "assets:receivable:EXT-1", "revenue:external:IT"),
    ]
    rec = api.reconcile(loaded, "2026-03")
    assert (rec.status, rec.internal_revenue, rec.internal_spend, rec.external_revenue) == ("closed", 9000, 9000, 18000)
    assert sorted(p.name for p in (tmp_path / "out" / "2026-03").iterdir())[:2] == ["journal.csv", "manifest.json"] or {
        "journal.csv",
        "manifest.json",
    } <= {p.name for p in (tmp_path / "out" / "2026-03").iterdir()}
    with pytest.raises(Refused, match="already closed"):
        api.close(loaded, "2026-03", tmp_path / "out")
    with pytest.raises(Refused, match="period 2026-03 is closed"):
        api.adjust(loaded, "2026-03", "HELP", "ART", "-5", "goodwill")


def test_a_month_priced_a_few_consumers_at_a_time_posts_the_same_charges(
    loaded: str, tmp_path: Path, tuned: Callable[..., Settings]
) -> None:
    """A close prices and posts a range of consumers at a time (`close_lines` usage
    lines at most, a consumer never split), so a big month needs the memory of a range.
    Cut into three ranges, the charges, their lines and the totals are the month's."""
    import_rows(
        loaded,
        tmp_path,
        """
        2026-03-02,HELP,ART,1.5,T-1,Laptop
        2026-03-05,HELP,ART,0.5,T-3,Printer
        2026-03-10,VAN,MATH,2,V-1,Field trip
        2026-03-20,VAN,MATH,1,V-2,Move
        2026-03-21,HELP,EXT-1,2,T-2,Kiosk
        """,
    )
    with db.reading(db.connect(loaded)) as conn:
        assert consumer_ranges(conn, "2026-03", 10) == [("ART", "MATH")]
        assert consumer_ranges(conn, "2026-03", 1) == [("ART", "ART"), ("EXT-1", "EXT-1"), ("MATH", "MATH")]
        assert consumer_ranges(conn, "2026-03", 3) == [("ART", "EXT-1"), ("MATH", "MATH")]
    tuned(close_lines=2)
    result = api.close(loaded, "2026-03", tmp_path / "out", documents=False)
    assert result.posted == 4
    assert sorted(entries(loaded)) == [
        ("usage", "ART", "HELP", 12000, "expenses:internal:ART", "revenue:internal:IT"),  # 1.5 h + 0.5 h at 60.00
        ("usage", "EXT-1", "HELP", 18000, "assets:receivable:EXT-1", "revenue:external:IT"),
        ("usage", "MATH", "VAN", 4750, "expenses:internal:MATH", "revenue:internal:FLEET"),  # 1 day at 47.50
        ("usage", "MATH", "VAN", 9025, "expenses:internal:MATH", "revenue:internal:FLEET"),  # 2 days at 45.125
    ]
    figures = api.reconcile(loaded, "2026-03")
    assert (figures.internal_revenue, figures.internal_spend, figures.external_revenue) == (25775, 25775, 18000)
    assert api.verify(loaded).problems == []


def test_earlier_periods_with_activity_close_first(loaded: str, tmp_path: Path) -> None:
    march(loaded, tmp_path)
    import_rows(loaded, tmp_path, "2026-04-02,HELP,ART,1,T-3,", "2026-04")
    with pytest.raises(Refused, match="period 2026-03 is still open and has activity: close it before 2026-04"):
        api.close(loaded, "2026-04", tmp_path / "out")
    api.close(loaded, "2026-03", tmp_path / "out")
    api.close(loaded, "2026-04", tmp_path / "out")
    assert api.reconcile(loaded, "2026-04").internal_spend == 6000


def test_recurring_fees_and_adjustments_are_posted_at_close(db_url: str, mini_book: Path, tmp_path: Path) -> None:
    (mini_book / "recurring.csv").write_text(
        "service,consumer,quantity,from_period,to_period,description\n"
        "HELP,ART,0.5,2026-03,2026-04,Support retainer\n"
        "VAN,MATH,1,2026-03,,Reserved van\n"
    )
    api.load(db_url, mini_book)
    api.adjust(db_url, "2026-03", "HELP", "MATH", "-12.34", "Goodwill credit", "ADJ-7")
    api.close(db_url, "2026-03", tmp_path / "out")
    assert entries(db_url, "2026-03") == [
        ("recurring", "ART", "HELP", 3000, "expenses:internal:ART", "revenue:internal:IT"),
        # the van is priced at the rate in force on the period's first day: 45.125 -> 45.13
        ("recurring", "MATH", "VAN", 4513, "expenses:internal:MATH", "revenue:internal:FLEET"),
        ("adjustment", "MATH", "HELP", -1234, "expenses:internal:MATH", "revenue:internal:IT"),
    ]
    rec = api.reconcile(db_url, "2026-03").as_json()
    assert rec["consumers"] == [{"unit": "ART", "internal_spend": "30.00"}, {"unit": "MATH", "internal_spend": "32.79"}]
    api.close(db_url, "2026-04", tmp_path / "out")
    assert [e[3] for e in entries(db_url, "2026-04")] == [3000, 4750]


def test_adjustment_refusals(loaded: str) -> None:
    with pytest.raises(Refused, match="a unit cannot charge itself"):
        api.adjust(loaded, "2026-03", "HELP", "IT", "5", "x")
    with pytest.raises(Refused, match="--amount: amount '1.234' has more than 2 decimal places"):
        api.adjust(loaded, "2026-03", "HELP", "ART", "1.234", "x")
    with pytest.raises(Refused, match="--reason"):
        api.adjust(loaded, "2026-03", "HELP", "ART", "1", " ")
    with pytest.raises(Refused, match="not a period"):
        api.adjust(loaded, "2026-3", "HELP", "ART", "1", "x")
    api.adjust(loaded, "2026-03", "HELP", "ART", "1", "x", "R-1")
    with pytest.raises(Refused, match="already used"):
        api.adjust(loaded, "2026-03", "HELP", "ART", "2", "y", "R-1")


def test_a_close_that_fails_half_way_changes_nothing(
    loaded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    march(loaded, tmp_path)

    def broken_writer(folder: Path, ctx: object, bill: object) -> Path:
        (folder / "half-written.txt").write_text("...")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(documents, "write_invoice", broken_writer)
    with pytest.raises(Refused, match="No space left on device; the period stays open"):
        api.close(loaded, "2026-03", tmp_path / "out")
    assert entries(loaded) == []
    assert api.reconcile(loaded, "2026-03").status == "open"
    assert list((tmp_path / "out").iterdir()) == []
    monkeypatch.undo()
    assert api.close(loaded, "2026-03", tmp_path / "out").posted == 2
    assert api.verify(loaded).ok


def test_reopen_needs_a_reason_and_a_later_close_posts_only_what_is_new(loaded: str, tmp_path: Path) -> None:
    march(loaded, tmp_path)
    api.close(loaded, "2026-03", tmp_path / "out")
    with pytest.raises(Refused, match="needs a reason"):
        api.reopen(loaded, "2026-03", "  ")
    api.reopen(loaded, "2026-03", "Missed help desk tickets")
    with pytest.raises(Refused, match="open already"):
        api.reopen(loaded, "2026-03", "again")
    import_rows(
        loaded,
        tmp_path,
        """
        2026-03-02,HELP,ART,1.5,T-1,Laptop (already posted)
        2026-03-30,HELP,MATH,1,T-9,Missed ticket
        """,
    )
    result = api.close(loaded, "2026-03", tmp_path / "out")
    assert result.posted == 1
    assert result.reconciliation.internal_spend == 9000 + 6000
    with plain_connection(loaded) as conn:
        events = conn.execute(select(PeriodEvent.action, PeriodEvent.reason).order_by(PeriodEvent.id)).all()
        assert [tuple(e) for e in events] == [
            ("close", "2 entries posted"),
            ("reopen", "Missed help desk tickets"),
            ("close", "1 entries posted"),
        ]
        assert conn.execute(select(func.count()).select_from(Entry)).scalar() == 3
    assert api.verify(loaded).ok


def test_reconcile_of_a_period_with_no_activity(loaded: str) -> None:
    rec = api.reconcile(loaded, "2030-01").as_json()
    assert rec["status"] == "open" and rec["balanced"] is True and rec["internal_revenue"] == "0.00"


def test_run_is_safe_to_repeat(db_url: str, mini_book: Path, tmp_path: Path) -> None:
    first = api.run(db_url, mini_book, tmp_path / "out")
    assert [c.posted for c in first.closes] == [5, 3]
    again = api.run(db_url, mini_book, tmp_path / "out")
    assert again.closes == [] and again.skipped == ["2026-03", "2026-04"]
    assert len(entries(db_url)) == 8


def close_the_demo_book(url: str, book: Path, folder: Path) -> None:
    """The demo book's months (budgets, external customers, allocations, an adjustment in
    the last) closed by `run`, documents in `folder/out`; `book` is not read."""
    api.run(url, api.demo_book(), folder / "out", through="2026-08")
    api.adjust(url, "2026-09", "IT-HELPDESK", "CHEM", "-12.50", "Goodwill credit")
    api.run(url, api.demo_book(), folder / "out")


@pytest.fixture
def demo_closed(request: pytest.FixtureRequest, db_url: str) -> str:
    return built_state(request, db_url, "demo_closed", close_the_demo_book)


def test_the_figures_read_once_are_the_figures_read_each_way(demo_closed: str) -> None:
    """The close and the documents read a period's totals once (`period_totals`) and sum
    the reconciliation, the variance review, the budgets and the statements' service
    table from them. Each equals what its own query over the entries gives, on the demo
    book's three months (budgets, external customers, allocations, an adjustment), and a
    mis-posted entry (revenue credited to an external account) still shows as a difference."""
    from chargeback.close import budgets, variance
    from chargeback.close.reconciliation import period_totals, reconcile
    from chargeback.documents.bills import document_context, service_totals
    from chargeback.store import db

    db_url = demo_closed
    engine = engine_for(db_url)
    with engine.begin() as conn:
        first = conn.execute(
            select(func.min(Entry.id)).where(Entry.period == "2026-08", Entry.credit_account.like("revenue:internal:%"))
        ).scalar()
        conn.execute(Entry.__table__.update().where(Entry.id == first).values(credit_account="revenue:external:IT"))
    engine.dispose()
    engine = db.connect(db_url)
    with engine.connect() as conn:
        for period in ("2026-07", "2026-08", "2026-09"):
            totals = period_totals(conn, period)
            assert (
                totals
                and sum(t.entries for t in totals)
                == conn.execute(select(func.count()).where(Entry.period == period)).scalar()
            )
            assert reconcile(conn, period, totals) == reconcile(conn, period)
            assert variance.review(conn, period, totals) == variance.review(conn, period)
            assert budgets.statuses_for(conn, period, totals) == budgets.statuses_for(conn, period)
            assert budgets.warnings(conn, period, totals) == budgets.warnings(conn, period)
            ctx = document_context(conn, period)
            assert service_totals(conn, ctx, totals) == service_totals(conn, ctx)
            assert document_context(conn, period, totals=totals) == ctx
        assert not reconcile(conn, "2026-08", period_totals(conn, "2026-08")).balanced
        # the months before are read from the totals stored at their close: the review of
        # September equals one computed from the entries of all three months
        keys = (Entry.period, Entry.consumer, Entry.customer_class, Entry.provider, Entry.service, Entry.kind)
        from_entries = [
            variance.Total(*row[:-1], int(row[-1]))
            for row in conn.execute(select(*keys, func.sum(Entry.amount_minor)).group_by(*keys).order_by(Entry.period))
        ]
        september = variance.review(conn, "2026-09")
        assert september.window == ("2026-08", "2026-07")
        assert september == variance.compute(
            "2026-09",
            from_entries,
            september.window,
            threshold=september.threshold,
            digits=september.digits,
            currency=september.currency,
            names=september.names,
        )
        assert any(t.kind == "adjustment" for t in period_totals(conn, "2026-09"))
        assert any(s.budget is not None for s in budgets.statuses_for(conn, "2026-09").values())
    engine.dispose()


def test_each_close_stores_its_totals_and_a_close_after_a_reopen_replaces_them(loaded: str, tmp_path: Path) -> None:
    """Later closes read earlier months from the totals stored at close; they always
    equal a grouping of the period's entries, a late line posted after a reopen included."""
    from chargeback.close.reconciliation import period_totals, stored_totals
    from chargeback.store import db

    engine = db.connect(loaded)

    def stored_and_grouped() -> tuple[list[object], list[object]]:
        with engine.connect() as conn:
            return stored_totals(conn, "2026-03"), period_totals(conn, "2026-03")

    march(loaded, tmp_path)
    api.close(loaded, "2026-03", tmp_path / "out", documents=False)
    first, grouped = stored_and_grouped()
    assert first == grouped and sum(t.entries for t in first) == 2
    api.reopen(loaded, "2026-03", "a late ticket")
    import_rows(loaded, tmp_path, "2026-03-30,HELP,ART,2,T-3,Printer")
    api.close(loaded, "2026-03", tmp_path / "out", documents=False)
    again, grouped = stored_and_grouped()
    assert again == grouped != first
    assert [(t.consumer, t.entries, t.amount_minor) for t in again if t.consumer == "ART"] == [
        ("ART", 2, sum(a for _, c, _, a, _, _ in entries(loaded, "2026-03") if c == "ART"))
    ]
    assert api.verify(loaded).ok
    engine.dispose()


def test_a_first_close_sums_its_totals_as_it_posts_and_they_equal_the_entries_grouped(demo_closed: str) -> None:
    """A first close sums the period's totals from the drafts it posts (`Tally`) instead of
    grouping the entries it has just written: on the demo book's months (usage, recurring
    fees, an adjustment, allocations, external customers) the totals stored at each close
    are exactly the entries grouped, key by key and in the same order."""
    from chargeback.close.reconciliation import period_totals, stored_totals
    from chargeback.store import db

    db_url = demo_closed
    engine = db.connect(db_url)
    with engine.connect() as conn:
        periods = conn.execute(select(Entry.period).distinct().order_by(Entry.period)).scalars().all()
        assert len(periods) >= 3
        kinds = set()
        for period in periods:
            stored = stored_totals(conn, period)
            assert stored == period_totals(conn, period)
            kinds |= {t.kind for t in stored}
    engine.dispose()
    assert kinds == {"usage", "recurring", "adjustment", "allocation", "sla_credit"}
    assert api.verify(db_url).ok


_CODE = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,5}\Z")


@given(
    st.lists(
        st.tuples(
            _CODE,
            st.sampled_from(["internal", "external"]),
            _CODE,
            _CODE,
            st.sampled_from(["usage", "recurring", "adjustment", "allocation"]),
            _CODE,
            _CODE,
        ),
        min_size=1,
        max_size=40,
    ),
    st.lists(st.integers(-(10**9), 10**9), min_size=80, max_size=80),
)
def test_a_tally_sums_and_orders_as_the_database_groups(keys: list[tuple[str, ...]], numbers: list[int]) -> None:
    """Each key summed apart, in the tuples' order (the database's bytewise order of the
    seven columns), whatever the codes: `A` before `A-B` before `A.B` before `AB`."""
    import datetime as dt

    from chargeback.close.reconciliation import PeriodTotal, Tally
    from chargeback.ledger.entries import Draft

    day = dt.date(2026, 3, 1)
    drafts = [
        Draft(
            "2026-03",
            day,
            day,
            kind,
            None,
            None,
            service,
            provider,
            consumer,
            kind_of,
            numbers[2 * i],
            None,
            numbers[2 * i + 1],
            debit,
            credit,
            None,
            None,
            None,
            None,
            None,
        )
        for i, (consumer, kind_of, provider, service, kind, debit, credit) in enumerate(keys * 2)
        if i < 40
    ]
    tally = Tally()
    assert list(tally.counting(drafts)) == drafts
    expected: dict[tuple[str, ...], list[int]] = {}
    for d in drafts:
        sums = expected.setdefault(
            (d.consumer, d.customer_class, d.provider, d.service, d.kind, d.debit_account, d.credit_account), [0, 0, 0]
        )
        sums[0] += 1
        sums[1] += d.quantity_micro
        sums[2] += d.amount_minor
    assert tally.totals() == [PeriodTotal(*key, *expected[key]) for key in sorted(expected)]
