"""Statements and the auditors' workbook: real numbers and dates, every figure tied to
the engine, and every formula giving the engine's value after LibreOffice recalculates."""

from __future__ import annotations

import csv
import datetime as dt
import re
import shutil
import zipfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from conftest import documents_book_copy
from documents_book import build
from libreoffice import soffice_recalculate
from sqlalchemy import select

from chargeback import api
from chargeback.core.settings import Settings
from chargeback.documents.reconciliation_workbook import JOURNAL_TITLES
from chargeback.documents.statements import DETAIL_TITLES
from chargeback.store import db
from chargeback.store.schema import Entry

CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory, documents_book_state: Path) -> tuple[str, Path]:
    """The documents book's months closed (`documents_book.build`), a copy for this module."""
    return documents_book_copy(documents_book_state, tmp_path_factory.mktemp("workbooks"))


def money(value: object) -> Decimal:
    assert isinstance(value, (int, float)), value
    return Decimal(str(value)).quantize(CENT)


def minor(amount: int) -> Decimal:
    return (Decimal(amount) / 100).quantize(CENT)


def rows(sheet) -> list[tuple]:
    return list(sheet.iter_rows(values_only=True))


def find(sheet, label: str) -> tuple:
    for row in sheet.iter_rows(values_only=True):
        if row and row[0] == label:
            return row
    raise AssertionError(f"no row {label!r}")


def test_statements_only_for_internal_consumers(out: tuple[str, Path]) -> None:
    url, folder = out
    rec = api.reconcile(url, "2026-03")
    assert {p.stem for p in (folder / "2026-03" / "statements").glob("*.xlsx")} == set(rec.consumers)


def test_statement_detail_has_every_line_as_numbers_and_dates(out: tuple[str, Path]) -> None:
    url, folder = out
    rec = api.reconcile(url, "2026-04")
    with db.transaction(db.connect(url)) as conn:
        lines = conn.execute(
            select(Entry.id, Entry.amount_minor).where(Entry.period == "2026-04", Entry.consumer == "ART")
        ).all()
        sources = dict(
            conn.execute(
                select(Entry.id, Entry.rate_source).where(Entry.period == "2026-04", Entry.consumer == "ART")
            ).all()
        )
    book = openpyxl.load_workbook(folder / "2026-04" / "statements" / "ART.xlsx")
    assert book.sheetnames == ["Summary", "Detail"]
    detail = book["Detail"]
    assert detail.freeze_panes == "A3"
    assert detail.auto_filter.ref == f"A2:L{2 + len(lines)}"
    header = [c.value for c in detail[2]]
    assert header == DETAIL_TITLES
    data = list(detail.iter_rows(min_row=3))
    assert {row[10].value: money(row[8].value) for row in data} == {e: minor(a) for e, a in lines}
    assert header[11] == "Priced by"
    assert {row[10].value: row[11].value for row in data} == sources  # which rate row priced it
    assert any(str(source).startswith("HELP/internal/") for source in sources.values())
    for row in data:
        assert isinstance(row[0].value, dt.datetime)
        assert row[8].data_type == "n" and "#,##0.00" in row[8].number_format
    assert detail["I1"].value.startswith("=SUBTOTAL(9,I3:I")
    assert detail.column_dimensions["D"].width >= 30
    assert sum(money(row[8].value) for row in data) == minor(rec.consumers["ART"])
    notes = {row[3].value: row[9].value for row in data}
    assert notes["Credit for T-1"] == "credit" and notes["Fuel surcharge"] == "adjustment"


def test_statement_summary_previous_period_and_year_to_date(out: tuple[str, Path]) -> None:
    url, folder = out
    march, april = api.reconcile(url, "2026-03"), api.reconcile(url, "2026-04")
    path = folder / "2026-04" / "statements" / "MATH.xlsx"
    summary = openpyxl.load_workbook(path)["Summary"]
    cached = openpyxl.load_workbook(path, data_only=True)["Summary"]
    header = next(r for r in rows(summary) if r[0] == "Provider" and r[1] == "Service")
    assert header[4:8] == ("This period", "Previous period (2026-03)", "Change", "Year to date (from 2025-07)")
    total = find(summary, "Total")
    assert all(str(v).startswith("=SUM(") for v in total[4:8])
    figures = find(cached, "Total")
    assert money(figures[4]) == minor(april.consumers["MATH"])
    assert money(figures[5]) == minor(march.consumers["MATH"])
    assert money(figures[6]) == minor(april.consumers["MATH"] - march.consumers["MATH"])
    assert money(figures[7]) == minor(april.consumers["MATH"] + march.consumers["MATH"])
    with zipfile.ZipFile(path) as archive:
        chart = archive.read("xl/charts/chart1.xml").decode()
    assert "<c:barChart>" in chart and "Summary!$B$" in chart
    # The chart's cached figures (what a viewer that never recalculates draws) are the
    # table's: every service's label, this period's and the previous period's amounts.
    first = rows(cached).index(header) + 1
    table = rows(cached)[first : first + [r[0] for r in rows(cached)[first:]].index("Total")]
    series = re.findall(r"<c:ser>(.*?)</c:ser>", chart, re.S)
    assert len(series) == 2

    def cache(xml: str, tag: str) -> list[str]:
        return re.findall(r"<c:v>(.*?)</c:v>", re.search(rf"<c:{tag}>.*?</c:{tag}>", xml, re.S).group())

    for one, column in zip(series, (4, 5), strict=False):
        categories = re.search(r"<c:cat>.*?</c:cat>", one, re.S).group()
        assert cache(categories, "strCache") == [r[1] for r in table]
        values = re.search(r"<c:val>.*?</c:val>", one, re.S).group()
        assert [Decimal(v) for v in cache(values, "numCache")] == [money(r[column]) for r in table]


def test_rollup_covers_the_subtree(out: tuple[str, Path]) -> None:
    url, folder = out
    rec = api.reconcile(url, "2026-03")
    path = folder / "2026-03" / "statements" / "rollup" / "COL.xlsx"
    book = openpyxl.load_workbook(path, data_only=True)
    assert book.sheetnames == ["Summary", "Units"]
    units = rows(book["Units"])
    codes = [r[0] for r in units[1:] if r[0] and r[0] != "Total"]
    assert codes == ["COL", "ART", "FLEET", "IT", "MATH", "SCI", "CHEM"]
    total = find(book["Units"], "Total")
    assert money(total[4]) == minor(rec.internal_spend)
    summary = rows(book["Summary"])
    header = next(r for r in summary if r[0] == "Provider" and r[1] == "Service")
    assert "COL (own)" in header and "SCI and below" in header
    grand = find(book["Summary"], "Total")
    assert money(grand[header.index("This period")]) == minor(rec.internal_spend)
    sci = openpyxl.load_workbook(folder / "2026-03" / "statements" / "rollup" / "SCI.xlsx", data_only=True)
    assert money(find(sci["Units"], "Total")[4]) == minor(rec.consumers["SCI"] + rec.consumers["CHEM"])


def test_reconciliation_workbook_ties_to_the_engine(out: tuple[str, Path]) -> None:
    url, folder = out
    rec = api.reconcile(url, "2026-03")
    path = folder / "2026-03" / "reconciliation.xlsx"
    book = openpyxl.load_workbook(path, data_only=True)
    assert book.sheetnames == ["Summary", "Matrix", "Journal", "Exceptions"]
    summary = book["Summary"]
    for label, figure in (
        ("Internal revenue", rec.internal_revenue),
        ("Internal spend", rec.internal_spend),
        ("Difference", 0),
        ("External revenue", rec.external_revenue),
    ):
        row = find(summary, label)
        assert money(row[1]) == money(row[2]) == minor(figure)
        assert row[3] == 0
    assert find(summary, "Status")[1] == "closed"
    assert isinstance(find(summary, "Closed at (UTC)")[1], dt.datetime)
    assert len(find(summary, "Journal hash at close")[1]) == 64
    assert find(summary, "All checks")[1] == "OK"
    formulas = openpyxl.load_workbook(path)["Summary"]
    assert "SUMIFS('Journal'!" in find(formulas, "Internal revenue")[2]
    matrix = rows(book["Matrix"])
    header = matrix[3]
    total = next(r for r in matrix if r[0] == "Total")
    assert money(total[header.index("Internal total")]) == minor(rec.internal_revenue)
    assert money(total[header.index("External total")]) == minor(rec.external_revenue)
    # each cell: what its provider charged its consumer, summed from the entries
    with db.transaction(db.connect(url)) as conn:
        pairs = conn.execute(
            select(Entry.provider, Entry.consumer, Entry.amount_minor).where(Entry.period == "2026-03")
        ).all()
    expected: dict[tuple[str, str], int] = {}
    for provider, consumer, amount in pairs:
        expected[(provider, consumer)] = expected.get((provider, consumer), 0) + amount
    cells = {}
    for r in matrix[5:]:
        if r[0] == "Total":
            break
        provider = str(r[0]).rsplit("(", 1)[1].rstrip(")")
        for code, value in zip(header[1:], r[1:], strict=False):
            if value is not None and "total" not in str(code).lower():
                cells[(provider, code)] = money(value)
    assert cells == {pair: minor(amount) for pair, amount in expected.items()}


def test_journal_sheet_matches_journal_csv_with_hashes(out: tuple[str, Path]) -> None:
    url, folder = out
    journal = rows(openpyxl.load_workbook(folder / "2026-03" / "reconciliation.xlsx")["Journal"])
    assert journal[0] == tuple(JOURNAL_TITLES)
    with open(folder / "2026-03" / "journal.csv", encoding="utf-8") as handle:
        exported = list(csv.DictReader(handle))
    assert len(journal) - 1 == len(exported)
    for row, line in zip(journal[1:], exported, strict=False):
        assert str(row[0]) == line["entry"] and row[2] == line["account"] and row[4] == line["unit"]
        assert (money(row[5]) if row[5] is not None else "") == (Decimal(line["debit"]) if line["debit"] else "")
        assert (money(row[6]) if row[6] is not None else "") == (Decimal(line["credit"]) if line["credit"] else "")
        assert (row[9] or "") == line["memo"] and (row[8] or "") == line["reference"]
    with db.transaction(db.connect(url)) as conn:
        hashes = dict(conn.execute(select(Entry.id, Entry.hash).where(Entry.period == "2026-03")).all())
    assert {row[0]: row[11] for row in journal[1:]} == hashes


def test_exceptions_list_what_needs_a_second_look(out: tuple[str, Path]) -> None:
    _, folder = out
    march = rows(openpyxl.load_workbook(folder / "2026-03" / "reconciliation.xlsx")["Exceptions"])
    text = [r for r in march if r[0]]
    kinds = [r[0] for r in text]
    assert "credit, adjustment" in kinds
    imports = [r for r in text if str(r[0]).endswith("2026-03.csv")]
    assert [r[6] for r in imports] == [0, 13]  # the second import skipped every line
    assert any(r[0] == "reopen" and r[8] == "Late <invoice> from IT & fleet" for r in text)
    at_audit = next(i for i, r in enumerate(text) if str(r[0]).startswith("Audit log"))
    history, audit = text[:at_audit], text[at_audit + 2 :]
    assert [r[0] for r in history if r[0] in ("close", "reopen")] == ["close", "reopen", "close"]
    assert [r[0] for r in audit] == [  # the last close's own record comes after it
        "import",
        "import",
        "adjust",
        "close",
        "reopen",
        "import",
    ]
    assert all(str(r[8]).startswith("done: ") for r in audit)
    assert any("sha256:" in str(r[10]) for r in audit if r[0] == "import")
    april = rows(openpyxl.load_workbook(folder / "2026-04" / "reconciliation.xlsx")["Exceptions"])
    kinds = [r[0] for r in april if r[0]]
    assert "late charge" in kinds and "credit" in kinds and "adjustment" in kinds


@pytest.mark.slow
def test_libreoffice_recalculates_every_formula_to_the_engines_value(out: tuple[str, Path], tmp_path: Path) -> None:
    if not shutil.which("soffice"):
        pytest.skip("LibreOffice is not installed (Debian package `libreoffice-calc-nogui`)")
    url, folder = out
    files = [
        folder / "2026-03" / "reconciliation.xlsx",
        folder / "2026-04" / "reconciliation.xlsx",
        folder / "2026-04" / "statements" / "MATH.xlsx",
        folder / "2026-04" / "statements" / "ART.xlsx",
        folder / "2026-03" / "statements" / "rollup" / "COL.xlsx",
    ]
    recalculated = soffice_recalculate(files, tmp_path)
    checked = 0
    for path in files:
        formulas = openpyxl.load_workbook(path)
        engine = openpyxl.load_workbook(path, data_only=True)  # values stored by the engine
        again = openpyxl.load_workbook(recalculated[path], data_only=True)
        for sheet in formulas.worksheets:
            for row in sheet.iter_rows():
                for cell in row:
                    if cell.data_type != "f":
                        continue
                    want = engine[sheet.title][cell.coordinate].value
                    got = again[sheet.title][cell.coordinate].value
                    if isinstance(want, str):
                        assert got == want, (path.name, sheet.title, cell.coordinate)
                    else:
                        assert money(got) == money(want), (path.name, sheet.title, cell.coordinate, cell.value)
                    checked += 1
    assert checked > 50
    for period in ("2026-03", "2026-04"):
        rec = api.reconcile(url, period)
        summary = openpyxl.load_workbook(recalculated[folder / period / "reconciliation.xlsx"], data_only=True)[
            "Summary"
        ]
        assert money(find(summary, "Internal revenue")[2]) == minor(rec.internal_revenue)
        assert money(find(summary, "Internal spend")[2]) == minor(rec.internal_spend)
        assert money(find(summary, "External revenue")[2]) == minor(rec.external_revenue)
        assert find(summary, "All checks")[1] == "OK"


@pytest.mark.slow
def test_a_journal_past_one_sheet_continues_on_the_next_and_the_summary_still_ties(
    db_url: str, tmp_path: Path, tuned: Callable[..., Settings]
) -> None:
    """Excel's row limit, made small: 6 journal lines a sheet (3 entries)."""
    tuned(journal_lines_per_sheet=6)
    folder = build(db_url, tmp_path)
    path = folder / "2026-03" / "reconciliation.xlsx"
    rec = api.reconcile(db_url, "2026-03")
    book = openpyxl.load_workbook(path)
    journals = [name for name in book.sheetnames if name.startswith("Journal")]
    assert journals == ["Journal"] + [f"Journal ({n})" for n in range(2, len(journals) + 1)]
    assert len(journals) == -(-rec.entries // 3) > 1
    lines = [row for name in journals for row in rows(book[name])[1:]]
    with open(folder / "2026-03" / "journal.csv", newline="", encoding="utf-8") as handle:
        csv_lines = list(csv.reader(handle))[1:]
    assert [int(row[0]) for row in lines] == [int(row[0]) for row in csv_lines]
    assert all(len(rows(book[name])) - 1 <= 6 for name in journals)
    # journal.csv, written as the Journal sheets read the entries, is the export's file
    written = (folder / "2026-03" / "journal.csv").read_text(encoding="utf-8")
    assert written == api.export(db_url, "2026-03", "csv")
    if not shutil.which("soffice"):
        pytest.skip("LibreOffice is not installed (Debian package `libreoffice-calc-nogui`)")
    summary = openpyxl.load_workbook(soffice_recalculate([path], tmp_path / "lo")[path], data_only=True)["Summary"]
    assert money(find(summary, "Internal revenue")[2]) == minor(rec.internal_revenue)
    assert money(find(summary, "Internal spend")[2]) == minor(rec.internal_spend)
    assert money(find(summary, "External revenue")[2]) == minor(rec.external_revenue)
    assert find(summary, "Entries (journal lines / 2)")[2] == rec.entries
    assert find(summary, "All checks")[1] == "OK"


@pytest.mark.slow
def test_a_statement_with_many_services_charts_its_largest(tmp_path: Path, tuned: Callable[..., Settings]) -> None:
    """Past `chart_services` (settings) services, the chart shows a table of the largest ones, each
    figure a formula on its row of the service table that LibreOffice recalculates to
    the engine's value; the chart's cached figures are that table's."""
    tuned(chart_services=1)
    folder = build(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path)
    path = folder / "2026-04" / "statements" / "ART.xlsx"
    formulas, cached = (
        rows(openpyxl.load_workbook(path)["Summary"]),
        rows(openpyxl.load_workbook(path, data_only=True)["Summary"]),
    )
    header = next(i for i, r in enumerate(cached) if r[0] == "Provider" and r[1] == "Service")
    end = header + 1 + [r[0] for r in cached[header + 1 :]].index("Total")
    services = cached[header + 1 : end]
    assert len(services) >= 2
    largest = max(services, key=lambda r: r[4])
    at = next(i for i, r in enumerate(cached) if r[0] == "The 1 largest services this period")
    assert cached[at + 1][:2] == ("Provider", "Service") and cached[at + 1][4:6] == ("This period", "Previous period")
    block = cached[at + 2]
    assert block[:2] == largest[:2] and (block[4], block[5]) == (largest[4], largest[5])
    source = header + 1 + services.index(largest) + 1  # its row number in the sheet
    assert formulas[at + 2][4:6] == (f"=E{source}", f"=F{source}")
    with zipfile.ZipFile(path) as archive:
        chart = archive.read("xl/charts/chart1.xml").decode()
    assert (
        f"Summary!$B${at + 3}" in re.findall(r"<c:f>(.*?)</c:f>", chart) and "Spend on the 1 largest services" in chart
    )
    assert re.findall(r"<c:strCache>.*?<c:v>(.*?)</c:v>", chart, re.S)[-1] == largest[1]
    if shutil.which("soffice"):
        again = openpyxl.load_workbook(soffice_recalculate([path], tmp_path / "lo")[path], data_only=True)["Summary"]
        assert [money(again.cell(at + 3, c).value) for c in (5, 6)] == [money(largest[4]), money(largest[5])]


def test_the_documents_touch_no_private_member_of_another_package() -> None:
    """Every workbook is written through XlsxWriter's public API: ruff's SLF001 finds no
    private attribute used in the document modules."""
    import subprocess
    import sys

    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed")
    root = Path(__file__).resolve().parents[1] / "chargeback"
    modules = [
        "documents",
        "workbooks",
        "statements",
        "invoices",
        "bills",
        "reconciliation_workbook",
        "xlsx",
        "export",
        "variance",
        "recovery",
    ]
    found = subprocess.run(
        [str(ruff), "check", "--no-cache", "--select", "SLF001", *(str(root / f"{name}.py") for name in modules)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, found.stdout


def test_a_line_priced_over_several_tiers_shows_its_pieces_in_the_detail(db_url: str, tmp_path: Path) -> None:
    """The statement's Detail has no single rate for a line crossing a tier: it says its
    pieces; `lines.csv` leaves its rate empty."""
    from test_allocation_close import campus

    march = [
        ["2026-03-02", "HELP", "ART", "90", "H-1", "Laptops"],
        ["2026-03-20", "HELP", "ART", "30", "H-3", "Crosses 100"],
    ]
    book = campus(tmp_path / "campus", costs=[], usage={"2026-03": march})
    api.run(db_url, book, tmp_path / "out")
    detail = rows(openpyxl.load_workbook(tmp_path / "out" / "2026-03" / "statements" / "ART.xlsx")["Detail"])
    crossing = next(row for row in detail if row[4] == "H-3")
    assert crossing[7] is None and crossing[9] == "tiers: 10 from 0 at 60; 20 from 100 at 50"
    assert money(crossing[8]) == Decimal("1600.00")
    with open(tmp_path / "out" / "2026-03" / "lines.csv", encoding="utf-8") as handle:
        lines = {line["reference"]: line for line in csv.DictReader(handle)}
    assert lines["H-3"]["rate"] == "" and lines["H-1"]["rate"] == "60" and lines["H-3"]["amount"] == "1600.00"
