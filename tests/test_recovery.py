"""Cost recovery (service-center break-even) over a fiscal year."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from click.testing import CliRunner
from conftest import write_csv
from openpyxl import load_workbook
from test_allocation_close import campus

from chargeback import api
from chargeback.cli import main
from chargeback.core.calendar import fiscal_periods


def test_fiscal_periods() -> None:
    assert fiscal_periods(2026, 7)[0] == "2025-07" and fiscal_periods(2026, 7)[-1] == "2026-06"
    assert list(fiscal_periods(2026, 1)) == [f"2026-{m:02d}" for m in range(1, 13)]
    assert fiscal_periods(2026, 10)[:4] == ("2025-10", "2025-11", "2025-12", "2026-01")


def _book(tmp_path: Path) -> Path:
    book = campus(tmp_path / "campus")
    write_csv(
        book / "provider_costs.csv",
        ["period", "provider", "amount"],
        [
            ["2026-03", "IT", "6000.00"],
            ["2026-04", "IT", "500.00"],
            ["2026-03", "FAC", "10000.00"],
            ["2026-04", "FAC", "10000.00"],
            ["2026-07", "IT", "999.00"],
        ],
    )  # fiscal year 2027: not counted
    return book


def test_recovery_per_provider_period_and_service(db_url: str, tmp_path: Path) -> None:
    api.run(db_url, _book(tmp_path), tmp_path / "out")
    rec = api.recovery(db_url, 2026, tmp_path / "recovery.xlsx")
    assert rec.periods_of_year[0] == "2025-07" and rec.periods_of_year[-1] == "2026-06"
    providers = {p.provider: p for p in rec.providers}
    it = providers["IT"]
    # HELP in March: ART 90 h (5,400.00) + 30 h crossing 100 (1,600.00), BIO 5 h (300.00),
    # the Town Library 2 h at 90.00; April: ART 1 h (60.00).
    assert (it.cost, it.internal, it.external, it.surplus) == (650000, 736000, 18000, 104000)
    assert it.ratio == Fraction(754000, 650000) and it.flag == "over-recovery"
    assert (providers["FAC"].ratio, providers["FAC"].flag) == (1, "")
    assert (providers["HR"].cost, providers["HR"].flag) == (None, "no cost data")
    assert providers["HR"].internal == 900000  # 5,000.00 + 4,000.00, all periods
    assert (it.months_costed, it.uncosted_revenue) == (2, 0)
    it_periods = [(p.period, p.cost, p.surplus, p.balance) for p in rec.periods if p.provider == "IT"]
    assert it_periods == [("2026-03", 600000, 148000, 148000), ("2026-04", 50000, -44000, 104000)]
    help_desk = next(s for s in rec.services if s.service == "HELP")
    assert help_desk.quantity_micro == 128 * 10**6 and help_desk.cost_share == 650000
    assert help_desk.break_even_rate == Decimal("50.781250")  # 6,500.00 / 128 h
    assert help_desk.current_rate == Decimal("60")
    assert help_desk.average_rate == Decimal("58.906250")  # 7,540.00 / 128 h
    space = next(s for s in rec.services if s.service == "SPACE")
    assert (space.cost_share, space.break_even_rate) == (2000000, None)  # allocated, not billed by quantity

    book = load_workbook(tmp_path / "recovery.xlsx")
    assert book.sheetnames == ["Summary", "Periods", "Services"]
    summary = {row[0]: row for row in book["Summary"].iter_rows(min_row=2, values_only=True)}
    assert summary["IT"][2:10] == (6500, 7360, 180, 1040, 1.16, "over-recovery", 2, 0)
    assert book["Summary"]["C2"].number_format.endswith('"USD"')
    periods = list(book["Periods"].iter_rows(min_row=2, values_only=True))
    assert ("IT", "2026-04", "closed", 500, 60, 0, -440, 1040, 0.12) in periods


def test_cli_recovery_prints_a_summary(db_url: str, tmp_path: Path) -> None:
    api.run(db_url, _book(tmp_path), tmp_path / "out")
    out_file = tmp_path / "reports" / "recovery.xlsx"
    result = CliRunner().invoke(main, ["--db", db_url, "recovery", "--fiscal-year", "2026", "--out", str(out_file)])
    assert result.exit_code == 0, result.output
    assert "cost recovery FY2026 (2025-07 to 2026-06), USD" in result.output
    assert "recovery  116.0%  [over-recovery]" in result.output
    assert (
        "HELP         break-even rate 50.781250 per hour, current rate 60, billed on average 58.906250"
    ) in result.output
    assert out_file.is_file()
    bad = CliRunner().invoke(main, ["--db", db_url, "recovery", "--fiscal-year", "26"])
    assert bad.exit_code == 2


def test_months_without_a_cost_are_kept_out_of_the_surplus(db_url: str, tmp_path: Path) -> None:
    book = _book(tmp_path)
    write_csv(book / "provider_costs.csv", ["period", "provider", "amount"], [["2026-04", "IT", "100.00"]])
    api.run(db_url, book, tmp_path / "out")
    rec = api.recovery(db_url, 2026, None)
    it = next(p for p in rec.providers if p.provider == "IT")
    assert (it.cost, it.revenue, it.surplus, it.months_costed) == (10000, 6000, -4000, 1)
    assert it.uncosted_revenue == 748000 and it.flag == "under-recovery"
    lines = [(p.period, p.cost, p.surplus, p.balance) for p in rec.periods if p.provider == "IT"]
    assert lines == [("2026-03", None, None, None), ("2026-04", 10000, -4000, -4000)]
