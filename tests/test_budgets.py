"""Budgets: budgets.csv checked like every book file, fiscal years, spend to date and the
straight-line projection, the warnings of preview and close, and `chargeback budgets`."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner
from conftest import usage_file, write_csv

from chargeback import api
from chargeback.cli import main
from chargeback.close.budgets import BudgetStatus, statuses_for
from chargeback.core.calendar import fiscal_periods, fiscal_year
from chargeback.core.errors import InputRefused
from chargeback.store import db

HEADER = ["fiscal_year", "unit", "amount"]


def test_fiscal_years_end_in_their_year() -> None:
    assert fiscal_year("2026-06", 7) == 2026 and fiscal_year("2026-07", 7) == 2027
    assert fiscal_year("2026-01", 1) == 2026 and fiscal_year("2026-12", 1) == 2026
    assert fiscal_year("2026-09", 10) == 2026 and fiscal_year("2026-10", 10) == 2027
    assert fiscal_periods(2027, 7)[0] == "2026-07" and fiscal_periods(2027, 7)[-1] == "2027-06"
    assert fiscal_periods(2026, 1) == tuple(f"2026-{m:02d}" for m in range(1, 13))


def test_budget_status_arithmetic() -> None:
    status = BudgetStatus("ART", 2026, "2026-01", "2026-12", "2026-03", 3, budget=100000, spent=30000)
    assert (status.remaining, status.used, status.projected) == (70000, Decimal("0.3"), 120000)
    assert status.on_course_to_exceed and not status.over and status.state == "on course to exceed"
    over = BudgetStatus("ART", 2026, "2026-01", "2026-12", "2026-03", 3, budget=20000, spent=30000)
    assert over.over and not over.on_course_to_exceed and over.remaining == -10000
    zero = BudgetStatus("ART", 2026, "2026-01", "2026-12", None, 0, budget=0, spent=0)
    assert zero.used is None and zero.projected is None and zero.state == "within budget"
    assert BudgetStatus("X", 2026, "2026-01", "2026-12", "2026-01", 1, None, 5).state == "no budget"


def test_budgets_csv_is_checked_like_every_book_file(loaded: str, mini_book: Path) -> None:
    write_csv(
        mini_book / "budgets.csv",
        HEADER,
        [
            ["26", "ART", "600"],
            ["2026", "EXT-1", "100.005"],
            ["2026", "NOPE", "-1"],
            ["2026", "MATH", "10"],
            ["2026", "MATH", "20"],
            ["2026", "ART", "1,000.00"],
        ],
    )
    with pytest.raises(InputRefused) as refused:
        api.load(loaded, mini_book)
    assert [str(p) for p in refused.value.problems] == [
        "budgets.csv:2: fiscal_year: '26' is not a year: write the year as YYYY, e.g. 2027",
        "budgets.csv:3: amount: amount '100.005' has more than 2 decimal places (USD)",
        "budgets.csv:3: unit: 'EXT-1' is an external customer: budgets are for internal units' spend",
        "budgets.csv:4: amount: must not be negative",
        "budgets.csv:4: unit: 'NOPE' is not a unit code in units.csv",
        "budgets.csv:6: unit: 'MATH' already has a budget for fiscal year 2026 on line 5",
        "budgets.csv:7: amount: amount '1,000.00' is not a plain decimal number (digits with '.' as the separator)",
    ]
    (mini_book / "budgets.csv").write_text("fiscal_year,unit,amount,owner\n2026,ART,1,me\n")
    with pytest.raises(InputRefused) as refused:
        api.load(loaded, mini_book)
    assert str(refused.value.problems[0]).startswith("budgets.csv:1: owner: unknown column")


def budget_book(mini_book: Path, rows: list[list[object]], start: int = 1) -> None:
    (mini_book / "book.toml").write_text(f'name = "Mini College"\ncurrency = "USD"\nfiscal_year_start = {start}\n')
    write_csv(mini_book / "budgets.csv", HEADER, rows)


def test_status_for_a_statement(db_url: str, mini_book: Path, tmp_path: Path) -> None:
    budget_book(mini_book, [[2026, "ART", "1000"], [2027, "ART", "5000"]], start=1)
    assert len(api.load(db_url, mini_book).book.budgets) == 2
    api.run(db_url, mini_book, tmp_path / "out")  # March: ART 185.00; April: ART -30.00
    with db.transaction(db.connect(db_url)) as conn:
        march = statuses_for(conn, "2026-03").get("ART")
        april = statuses_for(conn, "2026-04").get("ART")
        assert (march.budget, march.spent, march.remaining, march.used) == (100000, 18500, 81500, Decimal("0.185"))
        # the tool's first charges are March's: two months counted, eight left
        assert (april.spent, april.months, april.through, april.counted_from) == (15500, 2, "2026-04", "2026-03")
        assert april.projected == 77500
        assert statuses_for(conn, "2026-03").get("MATH") is None  # no budget
        assert statuses_for(conn, "2027-01").get("ART").spent == 0
    # reloading the book without budgets.csv removes them
    (mini_book / "budgets.csv").unlink()
    api.load(db_url, mini_book)
    with db.transaction(db.connect(db_url)) as conn:
        assert statuses_for(conn, "2026-03").get("ART") is None


def test_preview_and_close_warn_about_budgets(loaded: str, mini_book: Path, tmp_path: Path) -> None:
    # fiscal year 2026 from July 2025: March is month 9 of 12
    budget_book(
        mini_book, [[2026, "ART", "200"], [2026, "MATH", "100"], [2026, "FLEET", "10"], [2026, "IT", "1000"]], start=7
    )
    api.load(loaded, mini_book)
    api.import_file(loaded, mini_book / "usage" / "2026-03.csv", "2026-03")
    preview = api.preview(loaded, "2026-03", tmp_path / "out")
    # March is the first month the tool has: each unit's March spend is projected over the
    # four months March-June, not averaged over the eight months before it had any data.
    # ART 185.00 of 200.00: 740.00 by June; MATH 45.13 of 100.00: 180.52; FLEET 15.00 of 10.00: over
    assert [(s.unit, s.state, s.projected) for s in preview.budget_warnings] == [
        ("ART", "on course to exceed", 74000),
        ("FLEET", "over budget", 6000),
        ("MATH", "on course to exceed", 18052),
    ]
    out = str(tmp_path / "out")
    result = CliRunner().invoke(main, ["--db", loaded, "close", "2026-03", "--out", out])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-3:] == [
        "warning: ART is on course to exceed its fiscal year 2026 budget: spent 185.00 of 200.00 USD "
        "in 1 month since 2026-03 (the first month with charges), 740.00 by 2026-06 on a straight line",
        "warning: FLEET is over its fiscal year 2026 budget: spent 15.00 of 10.00 USD (150.0%) through 2026-03",
        "warning: MATH is on course to exceed its fiscal year 2026 budget: spent 45.13 of 100.00 USD "
        "in 1 month since 2026-03 (the first month with charges), 180.52 by 2026-06 on a straight line",
    ]


def test_the_budgets_command(loaded: str, mini_book: Path, tmp_path: Path) -> None:
    budget_book(mini_book, [[2026, "ART", "1000"], [2026, "MATH", "50"]], start=1)
    api.load(loaded, mini_book)
    api.import_file(loaded, mini_book / "usage" / "2026-03.csv", "2026-03")
    api.close(loaded, "2026-03", tmp_path / "out")
    result = CliRunner().invoke(
        main, ["--db", loaded, "budgets", "--fiscal-year", "2026", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "budgets of fiscal year 2026 (2026-01 to 2026-12), through 2026-03 (3 of 12 months)"
    assert [line.split() for line in lines[2:5]] == [
        ["ART", "1000.00", "185.00", "815.00", "18.5%", "1850.00", "on", "course", "to", "exceed"],
        ["FLEET", "15.00", "150.00", "no", "budget"],
        ["MATH", "50.00", "45.13", "4.87", "90.3%", "451.30", "on", "course", "to", "exceed"],
    ]
    path = tmp_path / "out" / "budgets-FY2026.xlsx"
    assert lines[-1] == f"written to {path}"
    sheet = openpyxl.load_workbook(path)["Budgets"]
    rows = {row[0].value: row for row in sheet.iter_rows(min_row=6)}
    assert [c.value for c in rows["MATH"][:2]] == ["MATH", "Mathematics"]
    assert rows["MATH"][2].value == 50 and rows["MATH"][3].value == pytest.approx(45.13)
    assert rows["MATH"][2].number_format == '"$"#,##0.00;[Red]-"$"#,##0.00'
    assert rows["MATH"][5].number_format.startswith("0.0%") and rows["MATH"][7].value == "on course to exceed"
    assert rows["ART"][7].value == "on course to exceed"  # 185.00 in March, the first month with charges
    assert rows["FLEET"][2].value is None and rows["FLEET"][7].value == "no budget"
    result = CliRunner().invoke(main, ["--db", loaded, "budgets", "--fiscal-year", "26"])
    assert result.exit_code == 2 and "--fiscal-year" in result.stderr
    result = CliRunner().invoke(main, ["--db", loaded, "budgets", "--fiscal-year", "next"])
    assert result.exit_code == 2


def test_spend_through_a_later_import_is_counted(loaded: str, mini_book: Path, tmp_path: Path) -> None:
    budget_book(mini_book, [[2026, "MATH", "100"]], start=1)
    api.load(loaded, mini_book)
    api.import_file(loaded, usage_file(tmp_path, "m.csv", [["2026-01-05", "HELP", "MATH", "1", "T-1", ""]]), "2026-01")
    assert api.preview(loaded, "2026-01", tmp_path / "out").budget_warnings[0].projected == 72000
    api.close(loaded, "2026-01", tmp_path / "out")
    # February without MATH: 60.00 in 2 months projects 360.00, still on course to exceed
    api.import_file(loaded, usage_file(tmp_path, "f.csv", [["2026-02-05", "HELP", "ART", "1", "T-2", ""]]), "2026-02")
    [warning] = api.close(loaded, "2026-02", tmp_path / "out").budget_warnings
    assert (warning.unit, warning.spent, warning.months, warning.projected) == ("MATH", 6000, 2, 36000)


def test_a_statement_shows_the_units_budget(db_url: str, mini_book: Path, tmp_path: Path) -> None:
    budget_book(mini_book, [[2026, "ART", "1000"]], start=1)
    api.load(db_url, mini_book)
    api.run(db_url, mini_book, tmp_path / "out")  # March: ART 185.00; April: ART -30.00

    def sheet_of(period: str, unit: str) -> openpyxl.worksheet.worksheet.Worksheet:
        return openpyxl.load_workbook(tmp_path / "out" / period / "statements" / f"{unit}.xlsx")["Summary"]

    def facts(period: str, unit: str) -> dict[str, object]:
        return {row[0]: row[1] for row in sheet_of(period, unit).iter_rows(values_only=True) if row[0]}

    april = facts("2026-04", "ART")
    assert april["Budget, fiscal year 2026"] == 1000
    assert Decimal(str(april["Spent, fiscal year 2026 to date"])) == Decimal("155.00")
    assert Decimal(str(april["Remaining"])) == Decimal("845.00")
    # a number with a percent format, which a spreadsheet can compute with
    assert april["Budget used"] == pytest.approx(0.155)
    used = next(r[1] for r in sheet_of("2026-04", "ART").iter_rows() if r[0].value == "Budget used")
    assert used.data_type == "n" and used.number_format == "0.0%"
    assert "Budget warning" not in april
    assert not any(str(label).startswith("Budget") for label in facts("2026-04", "MATH"))
