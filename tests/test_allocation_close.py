"""Allocations through the engine: loaded from a book, posted at close, reconciled, on
SQLite and PostgreSQL; and every refusal, at load and at close, naming pool and period."""

from __future__ import annotations

from pathlib import Path

import pytest
import textbook as tb
from conftest import csv_rows, usage_file, write_csv
from sqlalchemy import select

from chargeback import api
from chargeback.core.errors import InputRefused, Refused
from chargeback.store import db
from chargeback.store.schema import Entry


def _entries(url: str, period: str, kind: str = "allocation") -> list:
    with db.connect(url).connect() as conn:
        return conn.execute(
            select(Entry.__table__).where(Entry.period == period, Entry.kind == kind).order_by(Entry.id)
        ).all()


def _by_pool(rows) -> dict[str, dict[str, int]]:
    shares: dict[str, dict[str, int]] = {}
    for row in rows:
        pool = row.source.split(":")[1]
        unit = shares.setdefault(pool, {})
        unit[row.consumer] = unit.get(row.consumer, 0) + row.amount_minor
    return {p: {u: a for u, a in units.items() if a} for p, units in shares.items()}


@pytest.mark.parametrize("method", ["direct", "step", "reciprocal"])
def test_textbook_book_closes_to_the_cent(db_url: str, tmp_path: Path, method: str) -> None:
    book = tb.write_book(tmp_path / "book", method)
    api.load(db_url, book)
    result = api.close(db_url, "2026-03", tmp_path / "out")
    rec = result.reconciliation
    assert rec.balanced and rec.status == "closed"
    rows = _entries(db_url, "2026-03")
    assert _by_pool(rows) == tb.EXPECTED[method]
    assert result.posted == len(rows)
    # Each provider is credited exactly its pool's (rounded) total.
    totals = {"direct": tb.COSTS, "step": tb.STEP_TOTALS, "reciprocal": tb.RECIPROCAL_TOTALS}[method]
    assert {u: internal for u, (internal, _) in rec.providers.items()} == {
        code.removeprefix("P-"): total for code, total in totals.items()
    }
    first = rows[0]
    assert first.source == f"allocation:{first.source.split(':')[1]}:2026-03:{first.consumer}"
    assert first.service == first.source.split(":")[1].removeprefix("P-") + "-OH"
    assert first.provider == first.source.split(":")[1].removeprefix("P-")
    assert first.rate_source.startswith(f"pool {first.source.split(':')[1]} {method} by ")
    assert first.reference == f"{first.source.split(':')[1]}-2026-03"
    assert first.memo.startswith("Allocation of pool")
    by_unit = {r.consumer: r for r in rows if r.source.startswith("allocation:P-FAC:")}
    assert by_unit["MACH"].quantity_micro == 3000 * 10**6  # the driver value
    assert "sqft: 3000 of " in by_unit["MACH"].rate_source
    assert api.verify(db_url).ok
    journal = (tmp_path / "out" / "2026-03" / "journal.csv").read_text()
    assert "allocation" not in journal.splitlines()[0]  # the contract's header is untouched
    assert journal.count("P-FAC-2026-03") == 2 * len(tb.EXPECTED[method]["P-FAC"])


def test_reclose_after_reopen_posts_only_what_changed(db_url: str, tmp_path: Path) -> None:
    book = tb.write_book(tmp_path / "book", "step")
    api.load(db_url, book)
    api.close(db_url, "2026-03", tmp_path / "out")
    api.reopen(db_url, "2026-03", "late invoice")
    again = api.close(db_url, "2026-03", tmp_path / "out")
    assert again.posted == 0
    # FAC's cost is revised: only the differences are posted, under new sources.
    costs = (book / "costs.csv").read_text().replace("77730.25", "77830.25")
    (book / "costs.csv").write_text(costs)
    api.load(db_url, book)
    api.reopen(db_url, "2026-03", "facilities cost revised")
    revised = api.close(db_url, "2026-03", tmp_path / "out")
    assert revised.reconciliation.balanced
    rows = _entries(db_url, "2026-03")
    later = [r for r in rows if r.source.endswith(":2")]
    assert later and len(later) == revised.posted
    assert all(r.memo.endswith("(revised)") for r in later)
    # What is posted per target is now the step allocation of the revised costs.
    from dataclasses import replace

    from chargeback.core.allocation import allocate

    specs = tb.pool_specs()
    specs[0] = replace(specs[0], amount=7_783_025)
    expected = {r.code: {s.unit: s.amount for s in r.shares if s.amount} for r in allocate(specs, "step")}
    assert _by_pool(rows) == expected
    assert revised.reconciliation.providers["FAC"][0] == 7_783_025
    assert api.verify(db_url).ok


# --- a small campus: metered services, a tiered one, and allocations --------------


def campus(
    folder: Path,
    method: str = "direct",
    allocations: list[list[object]] | None = None,
    drivers: list[list[object]] | None = None,
    costs: list[list[object]] | None = None,
    usage: dict[str, list[list[object]]] | None = None,
) -> Path:
    """The small campus's book in `folder`; `allocations`, `drivers`, `costs` and `usage`
    (rows by period) replace its own when given."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "book.toml").write_text(f'name = "Small Campus"\ncurrency = "USD"\nallocation_method = "{method}"\n')
    units = """
        COL,College,internal,
        SCI,Sciences,internal,COL
        IT,Information Technology,internal,COL
        FAC,Facilities,internal,COL
        HR,Human Resources,internal,COL
        ART,Art,internal,COL
        BIO,Biology,internal,SCI
        CHEM,Chemistry,internal,SCI
        EXT-1,Town Library,external,
    """
    write_csv(folder / "units.csv", ["code", "name", "kind", "parent"], csv_rows(units))
    services = """
        HELP,IT,Help desk,hour
        SPACE,FAC,Space and utilities,sq ft
        PEOPLE,HR,Human resources,head
    """
    write_csv(folder / "services.csv", ["code", "provider", "name", "unit_of_measure"], csv_rows(services))
    rates = """
        HELP,internal,2026-01-01,60.00,0
        HELP,internal,2026-01-01,50.00,100
        HELP,internal,2026-01-01,40.00,150
        HELP,external,2026-01-01,90.00,
    """
    write_csv(
        folder / "rates.csv", ["service", "customer_class", "effective_from", "rate", "tier_from"], csv_rows(rates)
    )
    write_csv(
        folder / "allocations.csv",
        ["pool", "provider", "service", "driver", "targets", "order"],
        allocations
        if allocations is not None
        else [["FACILITIES", "FAC", "SPACE", "sqft", "*", "1"], ["PERSONNEL", "HR", "PEOPLE", "headcount", "*", "2"]],
    )
    write_csv(
        folder / "drivers.csv",
        ["period", "driver", "unit", "value"],
        drivers
        if drivers is not None
        else csv_rows("""
            2026-03,sqft,IT,1200
            2026-03,sqft,HR,800
            2026-03,sqft,ART,3000
            2026-03,sqft,BIO,2500
            2026-03,sqft,CHEM,2500
            2026-03,headcount,IT,12
            2026-03,headcount,FAC,6
            2026-03,headcount,ART,10
            2026-03,headcount,BIO,8
            2026-03,headcount,CHEM,6.5
        """),
    )
    write_csv(
        folder / "costs.csv",
        ["period", "pool", "amount"],
        costs
        if costs is not None
        else [
            ["2026-03", "FACILITIES", "10000.00"],
            ["2026-03", "PERSONNEL", "5000.00"],
            ["2026-04", "FACILITIES", "10000.00"],
            ["2026-04", "PERSONNEL", "4000.00"],
        ],
    )
    for period, rows in (
        usage
        if usage is not None
        else {
            "2026-03": [
                ["2026-03-02", "HELP", "ART", "90", "H-1", "Laptops"],
                ["2026-03-09", "HELP", "BIO", "5", "H-2", "Printer"],
                ["2026-03-20", "HELP", "ART", "30", "H-3", "Crosses 100"],
                ["2026-03-21", "HELP", "EXT-1", "2", "H-4", "Wifi"],
            ],
            "2026-04": [["2026-04-02", "HELP", "ART", "1", "H-5", "Password"]],
        }
    ).items():
        usage_file(folder / "usage", f"{period}.csv", rows)
    return folder


def test_campus_run_allocates_every_month_with_costs(db_url: str, tmp_path: Path) -> None:
    book = campus(tmp_path / "campus")
    result = api.run(db_url, book, tmp_path / "out")
    assert [c.period for c in result.closes] == ["2026-03", "2026-04"]
    march = _by_pool(_entries(db_url, "2026-03"))
    # Direct: the providers of both pools (FAC, HR) are left out of both pools; IT is a
    # leaf unit like any other. PERSONNEL: 5,000.00 over 36.5 heads leaves a cent after
    # rounding down, which goes to IT (remainder 0.56 of a cent).
    assert march == {
        "FACILITIES": {"IT": 130435, "ART": 326087, "BIO": 271739, "CHEM": 271739},
        "PERSONNEL": {"IT": 164384, "ART": 136986, "BIO": 109589, "CHEM": 89041},
    }
    # April has no driver rows: March's are used. Two cents left over: CHEM (0.88), IT (0.85).
    april = _by_pool(_entries(db_url, "2026-04"))
    assert april["PERSONNEL"] == {"IT": 131507, "ART": 109589, "BIO": 87671, "CHEM": 71233}
    for period in ("2026-03", "2026-04"):
        assert api.reconcile(db_url, period).balanced
    assert api.verify(db_url).ok


def test_usage_and_equal_drivers_and_parent_targets(db_url: str, tmp_path: Path) -> None:
    book = campus(
        tmp_path / "campus",
        allocations=[
            ["FACILITIES", "FAC", "SPACE", "usage:HELP", "*", ""],
            ["PERSONNEL", "HR", "PEOPLE", "equal", "parent:SCI", ""],
        ],
    )
    api.run(db_url, book, tmp_path / "out", through="2026-03")
    march = _by_pool(_entries(db_url, "2026-03"))
    # HELP in March: ART 120 hours, BIO 5 (the external customer is not a target).
    assert march["FACILITIES"] == {"ART": 960000, "BIO": 40000}
    assert march["PERSONNEL"] == {"BIO": 250000, "CHEM": 250000}
    rows = {r.consumer: r for r in _entries(db_url, "2026-03") if r.source.startswith("allocation:FAC")}
    assert rows["ART"].quantity_micro == 120 * 10**6
    assert "by usage:HELP: 120 of 125" in rows["ART"].rate_source


def test_step_method_on_the_campus(db_url: str, tmp_path: Path) -> None:
    book = campus(tmp_path / "campus", method="step")
    api.run(db_url, book, tmp_path / "out", through="2026-03")
    march = _by_pool(_entries(db_url, "2026-03"))
    # FACILITIES first spreads 10,000.00 over 10,000 sq ft including HR's 800; PERSONNEL
    # then spreads 5,000.00 + 800.00 over everyone but FAC.
    assert march["FACILITIES"] == {"IT": 120000, "HR": 80000, "ART": 300000, "BIO": 250000, "CHEM": 250000}
    assert sum(march["PERSONNEL"].values()) == 580000
    assert "FAC" not in march["PERSONNEL"]


# --- refusals ----------------------------------------------------------------------


def _load_problems(url: str, book: Path) -> list[str]:
    with pytest.raises(InputRefused) as info:
        api.load(url, book)
    return [str(p) for p in info.value.problems]


def test_load_refuses_unknown_driver_missing_order_and_shared_providers(db_url: str, tmp_path: Path) -> None:
    book = campus(
        tmp_path / "campus",
        method="step",
        allocations=[
            ["FACILITIES", "FAC", "SPACE", "sqm", "*", ""],
            ["ROOMS", "FAC", "SPACE", "usage:NOPE", "ART|EXT-1|FAC", "2"],
            ["PERSONNEL", "HR", "HELP", "headcount", "parent:NOWHERE", "2"],
        ],
    )
    problems = _load_problems(db_url, book)
    assert problems == [
        "allocations.csv:2: driver: pool FACILITIES: unknown driver 'sqm': it has no rows in "
        "drivers.csv (write a driver name used there, usage:SERVICE or equal)",
        'allocations.csv:2: order: pool FACILITIES has no order: allocation_method = "step" needs one for every pool',
        "allocations.csv:3: driver: pool ROOMS: 'NOPE' is not a service code in services.csv",
        "allocations.csv:3: provider: pool ROOMS: FAC also provides pool FACILITIES; with "
        'allocation_method = "step" a provider owns at most one pool',
        "allocations.csv:3: targets: pool ROOMS: 'EXT-1' is an external unit; it must be internal",
        "allocations.csv:3: targets: pool ROOMS: FAC is the pool's provider: a unit cannot charge itself",
        "allocations.csv:4: order: pool PERSONNEL: order 2 is also the order of pool ROOMS",
        "allocations.csv:4: service: pool PERSONNEL: HELP is a service of IT, not of HR",
        "allocations.csv:4: targets: pool PERSONNEL: 'NOWHERE' is not a unit code in units.csv",
    ]


def test_load_refuses_two_pools_of_a_provider_under_reciprocal(db_url: str, tmp_path: Path) -> None:
    book = campus(
        tmp_path / "campus",
        method="reciprocal",
        allocations=[["FACILITIES", "FAC", "SPACE", "sqft", "*", ""], ["ROOMS", "FAC", "SPACE", "equal", "*", ""]],
        costs=[["2026-03", "ROOMS", "10"]],
    )
    assert _load_problems(db_url, book) == [
        "allocations.csv:3: provider: pool ROOMS: FAC also provides pool FACILITIES; with "
        'allocation_method = "reciprocal" a provider owns at most one pool'
    ]


def test_load_checks_costs_and_drivers(db_url: str, tmp_path: Path) -> None:
    book = campus(
        tmp_path / "campus",
        drivers=[["2026-03", "sqft", "ART", "-1"], ["2026-03", "sqft", "ART", "2"], ["2026-03", "equal", "NOPE", "1"]],
        costs=[["2026-03", "FACILITIES", "10.001"], ["2026-03", "GHOST", "5"], ["2026-13", "PERSONNEL", "-5"]],
    )
    assert _load_problems(db_url, book) == [
        "allocations.csv:3: driver: pool PERSONNEL: unknown driver 'headcount': it has no rows in "
        "drivers.csv (write a driver name used there, usage:SERVICE or equal)",
        "costs.csv:2: amount: 10.001 has more decimal places than the currency's 2",
        "costs.csv:3: pool: 'GHOST' is not a pool in allocations.csv",
        "costs.csv:4: period: '2026-13' is not a period: write it as YYYY-MM, e.g. 2026-10",
        "drivers.csv:2: value: must not be negative",
        "drivers.csv:3: unit: the sqft of ART in 2026-03 is already given on line 2",
        "drivers.csv:4: driver: 'equal' is reserved: it needs no rows; choose another name",
        "drivers.csv:4: unit: 'NOPE' is not a unit code in units.csv",
    ]


def test_close_refuses_a_zero_driver_total_naming_pool_and_period(db_url: str, tmp_path: Path) -> None:
    book = campus(
        tmp_path / "campus",
        drivers=[
            ["2026-03", "sqft", "ART", "100"],
            ["2026-03", "headcount", "ART", "0"],
            ["2026-03", "headcount", "FAC", "4"],
        ],
    )
    api.load(db_url, book)
    api.import_file(db_url, book / "usage" / "2026-03.csv", "2026-03")
    with pytest.raises(
        Refused,
        match=r"^allocation refused: pool PERSONNEL, period 2026-03: its driver "
        r"totals zero over its targets \(leaving out FAC, HR\)$",
    ):
        api.close(db_url, "2026-03", tmp_path / "out")
    # Nothing was posted and the period stays open.
    assert api.reconcile(db_url, "2026-03").status == "open"
    assert not _entries(db_url, "2026-03", "usage")
    assert not (tmp_path / "out" / "2026-03").exists()


def test_close_refuses_a_driver_with_no_values_yet(db_url: str, tmp_path: Path) -> None:
    book = campus(
        tmp_path / "campus", drivers=[["2026-04", "sqft", "ART", "100"], ["2026-03", "headcount", "ART", "1"]]
    )
    api.load(db_url, book)
    with pytest.raises(
        Refused,
        match=r"^allocation refused: pool FACILITIES, period 2026-03: unknown driver "
        r"'sqft': drivers.csv has no values for it in 2026-03 or before$",
    ):
        api.close(db_url, "2026-03", tmp_path / "out")


def test_cli_close_prints_the_refusal(db_url: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from chargeback.cli import main

    book = campus(tmp_path / "campus", drivers=[["2026-03", "sqft", "ART", "0"], ["2026-03", "headcount", "ART", "1"]])
    runner = CliRunner()
    assert runner.invoke(main, ["--db", db_url, "load", str(book)]).exit_code == 0
    out = runner.invoke(main, ["--db", db_url, "close", "2026-03", "--out", str(tmp_path / "out")])
    assert out.exit_code == 1
    assert "refused: allocation refused: pool FACILITIES, period 2026-03: its driver totals zero" in out.output
