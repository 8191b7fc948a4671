"""Graduated tiers: pure pricing, then through close, reopen and a later close."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from pathlib import Path

import polars as pl
import pytest
from conftest import csv_rows, import_rows, usage_file
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text, update
from test_allocation_close import campus

from chargeback import api
from chargeback.core.errors import InputRefused
from chargeback.core.money import to_micro, to_minor
from chargeback.core.pricing import LINE_COLUMNS, RateRow, RateTable, price_lines, price_tiered, rate_frame, tier_pieces
from chargeback.store import db
from chargeback.store.schema import ChargeLine, Entry, LineTier, Usage

DAY = dt.date(2026, 1, 1)


def schedule(*tiers: tuple[str, str]) -> tuple[RateRow, ...]:
    return tuple(RateRow("HELP", "internal", DAY, None, D(rate), D(start)) for start, rate in tiers)


HELP = schedule(("0", "60"), ("100", "50"), ("150", "40"))


def pieces(start: str, quantity: str, tiers=HELP) -> list[str]:
    return [p.text for p in tier_pieces(D(start), D(quantity), tiers)]


def test_a_line_crossing_a_threshold_is_split_into_pieces() -> None:
    assert pieces("90", "30") == ["0:10@60", "100:20@50"]
    assert pieces("0", "200") == ["0:100@60", "100:50@50", "150:50@40"]
    assert pieces("100", "50") == ["100:50@50"]
    assert pieces("0", "100") == ["0:100@60"]
    assert pieces("150", "0.5") == ["150:0.5@40"]


def test_a_credit_takes_its_pieces_off_the_top() -> None:
    assert pieces("120", "-25") == ["100:-20@50", "0:-5@60"]
    assert pieces("10", "-15") == ["0:-15@60"]  # below zero stays in the lowest tier


def test_lines_accumulate_and_each_is_rounded_once() -> None:
    lines = [(D("90"), HELP), (D("30"), HELP), (D("35"), HELP), (D("-5"), HELP)]
    priced = list(price_tiered(lines, 2))
    assert [p.amount for p in priced] == [D("5400.00"), D("1600.00"), D("1700.00"), D("-200.00")]
    assert priced[1].rate_source == "HELP/internal/2026-01-01 tiers 0:10@60, 100:20@50"
    # The same lines after 95 already posted (a re-close after a reopen).
    again = list(price_tiered([(D("10"), HELP)], 2, start=D("95")))
    assert again[0].amount == D("550.00") and [p.text for p in again[0].pieces] == ["0:5@60", "100:5@50"]
    # Rounded once: 0.5 x 0.01 + 0.5 x 0.011 = 0.0105 -> 0.01 (piece by piece it would be 0.02).
    fine = schedule(("0", "0.01"), ("0.5", "0.011"))
    assert next(price_tiered([(D("1"), fine)], 2)).amount == D("0.01")


def _cumulative(quantity: D, tiers) -> D:
    """The exact price of the first `quantity` units, tier by tier."""
    total = D(0)
    for index, tier in enumerate(tiers):
        upper = tiers[index + 1].tier_from if index + 1 < len(tiers) else None
        low = tier.tier_from if index else min(D(0), quantity)
        high = quantity if upper is None else min(quantity, upper)
        if high > low:
            total += (high - low) * tier.rate
    return total


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 500), st.integers(0, 10_000)), min_size=0, max_size=4),
    st.lists(st.integers(-300, 600).filter(bool), min_size=1, max_size=12),
)
def test_pieces_add_up_to_the_schedule(steps, quantities) -> None:
    tiers, start = [RateRow("S", "internal", DAY, None, D(60), D(0))], D(0)
    for width, rate in steps:
        start += width
        tiers.append(RateRow("S", "internal", DAY, None, D(rate) / 100, start))
    accumulated = D(0)
    exact_total = D(0)
    for quantity in map(D, quantities):
        found = tier_pieces(accumulated, quantity, tiers)
        assert sum(p.quantity for p in found) == quantity
        exact_total += sum(p.quantity * p.tier.rate for p in found)
        accumulated += quantity
    # Below zero the lowest tier extends downwards; elsewhere the lines' exact amounts
    # add up to the price of the accumulated quantity, whatever the lines were.
    if all(sum(map(D, quantities[: i + 1])) >= 0 for i in range(len(quantities))):
        assert exact_total == _cumulative(accumulated, tiers)


# --- through the engine ------------------------------------------------------------


def _usage_entries(url: str, period: str) -> dict[str, object]:
    """Each usage line of the period by reference: its amount, its rate (None over
    several tiers) and its tier pieces, as priced into its charge."""
    with db.connect(url).connect() as conn:
        rows = conn.execute(
            select(Usage.reference, ChargeLine.amount_minor, ChargeLine.rate_micro, Usage.id)
            .join(ChargeLine, ChargeLine.usage_id == Usage.id)
            .where(Usage.period == period)
        ).all()
        tiers = conn.execute(select(LineTier.__table__).order_by(LineTier.usage_id, LineTier.piece)).all()
    by_line: dict[int, list[tuple[int, int, int]]] = {}
    for t in tiers:
        by_line.setdefault(t.usage_id, []).append((t.tier_from_micro, t.quantity_micro, t.rate_micro))
    return {r.reference: (r.amount_minor, r.rate_micro, by_line.get(r.id, [])) for r in rows}


def _rate_sources(url: str, period: str) -> set[str]:
    with db.connect(url).connect() as conn:
        return set(
            conn.execute(select(Entry.rate_source).where(Entry.period == period, Entry.kind == "usage")).scalars()
        )


M = 10**6


def test_tiers_accumulate_by_date_and_carry_on_after_a_reopen(db_url: str, tmp_path: Path) -> None:
    # In the file, the later line comes first: pricing follows date, then reference.
    march = csv_rows("""
        2026-03-20,HELP,ART,30,H-3,Crosses 100
        2026-03-02,HELP,ART,90,H-1,Laptops
        2026-03-09,HELP,BIO,5,H-2,Printer
        2026-03-20,HELP,ART,2,H-30,"Same day, reference after H-3"
        2026-03-21,HELP,EXT-1,200,H-4,External: no tiers
    """)
    book = campus(tmp_path / "campus", costs=[], usage={"2026-03": march})
    api.run(db_url, book, tmp_path / "out")
    march = _usage_entries(db_url, "2026-03")
    assert march["H-1"] == (540000, 60 * M, [(0, 90 * M, 60 * M)])
    assert march["H-3"] == (160000, None, [(0, 10 * M, 60 * M), (100 * M, 20 * M, 50 * M)])
    assert march["H-30"][:2] == (10000, 50 * M)  # 120 -> 122, all at 50
    assert march["H-2"][0] == 30000  # BIO accumulates on its own
    assert march["H-4"][:2] == (1800000, 90 * M)
    # one charge per consumer and schedule, which its rate source names
    assert _rate_sources(db_url, "2026-03") == {
        "HELP/internal/2026-01-01 tiers 0@60, 100@50, 150@40",
        "HELP/external/2026-01-01 tiers 0@90",
    }
    # Reopen, import more for March: ART carries on from 122.
    api.reopen(db_url, "2026-03", "late help desk tickets")
    late = """
        2026-03-25,HELP,ART,40,H-6,Crosses 150
        2026-03-01,HELP,ART,1,H-7,"Dated earlier, priced after what is posted"
    """
    import_rows(db_url, tmp_path, late, name="late.csv")
    result = api.close(db_url, "2026-03", tmp_path / "out")
    assert result.posted == 1 and result.reconciliation.balanced  # both late lines: one charge
    march = _usage_entries(db_url, "2026-03")
    # H-7 (03-01) comes first by date: 122 -> 123 at 50; then H-6: 123 -> 163.
    assert march["H-7"][0] == 5000
    assert march["H-6"] == (187000, None, [(100 * M, 27 * M, 50 * M), (150 * M, 13 * M, 40 * M)])
    assert api.verify(db_url).ok
    # Tampering with a piece is found by verify.
    engine = db.connect(db_url)
    with engine.begin() as conn:  # a forger who can change the schema first lifts the append-only guard
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE line_tiers DISABLE TRIGGER line_tiers_append_only"))
        else:
            conn.execute(text("DROP TRIGGER line_tiers_no_update"))
        usage_id, entry_id = conn.execute(
            select(Usage.id, ChargeLine.entry_id)
            .join(ChargeLine, ChargeLine.usage_id == Usage.id)
            .where(Usage.reference == "H-6")
        ).one()
        conn.execute(
            update(LineTier).where(LineTier.usage_id == usage_id, LineTier.piece == 2).values(rate_micro=30 * M)
        )
    problems = api.verify(db_url).problems
    assert problems == [
        f"usage line {usage_id}: its tier pieces do not add up to its quantity and amount: line_tiers was altered",
        f"entry {entry_id}: its usage lines do not match its lines digest: a usage line or its price was altered",
    ]


def test_tiers_restart_each_period(db_url: str, tmp_path: Path) -> None:
    book = campus(tmp_path / "campus", costs=[])
    usage_file(book / "usage", "2026-04.csv", [["2026-04-02", "HELP", "ART", "10", "H-5", "April"]])
    api.run(db_url, book, tmp_path / "out")
    assert _usage_entries(db_url, "2026-04")["H-5"][0] == 60000


def test_a_higher_tier_needs_a_base_tier(db_url: str, tmp_path: Path) -> None:
    book = campus(tmp_path / "campus")
    rates = (
        (book / "rates.csv").read_text().replace("HELP,internal,2026-01-01,60.00,0", "HELP,internal,2026-02-01,60.00,0")
    )
    (book / "rates.csv").write_text(rates)
    with pytest.raises(InputRefused) as info:
        api.load(db_url, book)
    assert [str(p) for p in info.value.problems] == [
        "rates.csv:3: tier_from: tier 100 of HELP internal is in force on days with no base tier "
        "(tier_from 0): graduated tiers need a tier 0 row over the same dates",
        "rates.csv:4: tier_from: tier 150 of HELP internal is in force on days with no base tier "
        "(tier_from 0): graduated tiers need a tier 0 row over the same dates",
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 500), st.decimals(D("0"), D("90"), places=3)),
        min_size=1,
        max_size=4,
        unique_by=lambda step: step[0],
    ),
    st.lists(st.decimals(D("-60"), D("250"), places=6).filter(lambda q: q != 0), min_size=1, max_size=12),
    st.decimals(D("0"), D("300"), places=2),
    st.sampled_from([0, 2, 3]),
)
def test_the_close_prices_whole_columns_as_line_by_line_pricing_does(steps, quantities, start, digits) -> None:
    """`price_lines` (the close: cumulative sums against the tier table, over columns)
    gives each line the pieces and amount `price_tiered` (one line at a time) gives it."""
    thresholds = [D(0)] + sorted(D(t) for t, _ in steps)[: len(steps) - 1]
    rates = [rate for _, rate in steps]
    tiers = [
        RateRow("HELP", "internal", dt.date(2026, 1, 1), None, rate, threshold)
        for threshold, rate in zip(thresholds, rates, strict=False)
    ]
    table = RateTable(tiers)
    lines = pl.DataFrame(
        [
            (i + 1, dt.date(2026, 3, 1), "HELP", "ART", "internal", to_micro(q), f"R{i:03d}")
            for i, q in enumerate(quantities)
        ],
        schema=LINE_COLUMNS,
        orient="row",
    )
    started = pl.DataFrame(
        [("HELP", "ART", to_micro(start))],
        orient="row",
        schema={"service": pl.String, "consumer": pl.String, "quantity_micro": pl.Int64},
    )
    priced, pieces = price_lines(lines, rate_frame(table), table.tiered or frozenset({"HELP"}), started, digits)
    expected = list(price_tiered(((q, tiers) for q in quantities), digits, start))
    assert priced["amount_minor"].to_list() == [to_minor(e.amount, digits) for e in expected]
    got = [
        [
            (p["tier_from_micro"], p["quantity_micro"], p["rate_micro"])
            for p in pieces.filter(pl.col("usage_id") == i + 1).sort("piece").iter_rows(named=True)
        ]
        for i in range(len(quantities))
    ]
    assert got == [
        [(to_micro(p.tier.tier_from), to_micro(p.quantity), to_micro(p.tier.rate)) for p in e.pieces] for e in expected
    ]
