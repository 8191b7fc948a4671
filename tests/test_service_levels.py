"""Service levels: SLAs in the book, measurements imported, credits posted at close as
journal entries of kind `sla_credit` (net zero kept), re-close deltas, the documents and
the fiscal-year report; on SQLite and PostgreSQL."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from conftest import csv_rows, usage_file, write_csv
from sqlalchemy import select

from chargeback import api
from chargeback.core.errors import InputRefused, Refused
from chargeback.store import db
from chargeback.store.schema import Entry

SLA_HEADER = ["service", "metric", "unit", "target", "direction", "customer_class", "effective_from", "effective_to"]
SLAS = [
    ["HELP", "availability", "percent", "99.9", "min", "internal", "2026-01-01", ""],
    ["HELP", "availability", "percent", "99.9", "min", "external", "2026-01-01", ""],
    ["HELP", "response_time", "hours", "4", "max", "", "2026-01-01", ""],
]
#: sla_credits.csv: service, metric, breach_from, credit_percent
BANDS = csv_rows("""
    HELP,availability,99.9,10
    HELP,availability,99.0,25
    HELP,availability,95.0,50
    HELP,availability,50,100
    HELP,response_time,4,5
    HELP,response_time,8,20
""")
MEASURED = [
    ["HELP", "availability", "98.7", "", "outage on the 12th"],
    ["HELP", "availability", "99.95", "MATH", "MATH is on the other site"],
    ["HELP", "response_time", "6", "", ""],
    ["HELP", "response_time", "9", "ART", ""],
]


def sla_book(book: Path, missing: str | None = None) -> Path:
    write_csv(book / "slas.csv", SLA_HEADER, SLAS)
    write_csv(book / "sla_credits.csv", ["service", "metric", "breach_from", "credit_percent"], BANDS)
    if missing:
        toml = book / "book.toml"
        toml.write_text(toml.read_text() + f'sla_missing = "{missing}"\n')
    usage_file(
        book / "usage",
        "2026-03.csv",
        [
            ["2026-03-02", "HELP", "ART", "10.5", "H-1", ""],
            ["2026-03-05", "HELP", "MATH", "3.333", "H-2", ""],
            ["2026-03-06", "HELP", "EXT-1", "2", "H-3", ""],
            ["2026-03-07", "VAN", "ART", "2", "V-1", ""],
        ],
    )
    return book


def measurements(folder: Path, rows: list[list[str]], name: str = "sla-2026-03.csv") -> Path:
    return write_csv(folder / name, ["service", "metric", "value", "consumer", "note"], rows)


def credits(url: str, period: str = "2026-03") -> dict[tuple[str, str], int]:
    """Net SLA credit per (consumer, metric) in minor units, as posted (negative)."""
    found: dict[tuple[str, str], int] = {}
    with db.connect(url).connect() as conn:
        for row in conn.execute(select(Entry.__table__).where(Entry.period == period, Entry.kind == "sla_credit")):
            key = (row.consumer, row.source.split(":")[2])
            found[key] = found.get(key, 0) + row.amount_minor
    return {k: v for k, v in found.items() if v}


@pytest.fixture
def sla_loaded(db_url: str, mini_book: Path, tmp_path: Path) -> str:
    sla_book(mini_book)
    api.load(db_url, mini_book)
    api.import_file(db_url, mini_book / "usage" / "2026-03.csv", "2026-03")
    return db_url


def test_a_miss_credits_each_consumer_a_share_of_its_charges(sla_loaded: str, tmp_path: Path) -> None:
    url = sla_loaded
    result = api.sla_import(url, measurements(tmp_path, MEASURED), "2026-03")
    assert (result.lines_read, result.imported) == (4, 4)
    closed = api.close(url, "2026-03", tmp_path / "out")
    # ART: 630.00 of help; availability 98.7 < 99.0: 25% = 157.50; its own response time
    # 9 hours > 8: 20% = 126.00. MATH: 199.98; its own availability 99.95 is met (the
    # unit's measurement wins); 6 hours > 4: 5% = 9.999, rounded once: 10.00. EXT-1
    # (external SLA): 25% of 180.00 = 45.00; the response-time SLA is internal only.
    assert credits(url) == {
        ("ART", "availability"): -15750,
        ("ART", "response_time"): -12600,
        ("MATH", "response_time"): -1000,
        ("EXT-1", "availability"): -4500,
    }
    rec = closed.reconciliation
    assert rec.balanced
    # IT's revenue falls by what its consumers' spend falls: 630 + 199.98 - 283.50 - 10.
    assert rec.providers["IT"] == (63000 + 19998 - 28350 - 1000, 18000 - 4500)
    with db.connect(url).connect() as conn:
        art = conn.execute(
            select(Entry.__table__).where(
                Entry.kind == "sla_credit", Entry.consumer == "ART", Entry.source.like("%availability%")
            )
        ).one()
    assert art.debit_account == "expenses:internal:ART" and art.credit_account == "revenue:internal:IT"
    assert art.rate_source == "HELP availability 98.7% < 99%: 25%"
    assert art.source == "sla:HELP:availability:2026-03:ART"
    assert api.verify(url).ok
    assert any("SLA missed: HELP availability 98.7% < 99%: 25%" in line for line in closed.review.service_levels)


def test_several_metrics_add_up_to_the_charges_at_most(sla_loaded: str, tmp_path: Path) -> None:
    url = sla_loaded
    api.sla_import(url, measurements(tmp_path, [*MEASURED, ["HELP", "availability", "40", "ART", ""]]), "2026-03")
    api.close(url, "2026-03", tmp_path / "out")
    found = credits(url)
    # ART's availability 40 < 50: 100% of 630.00; its response-time credit (20%) would
    # take the credits past the charges, so it is cut to nothing.
    assert found[("ART", "availability")] == -63000
    assert ("ART", "response_time") not in found
    with db.connect(url).connect() as conn:
        text = conn.execute(
            select(Entry.rate_source).where(Entry.kind == "sla_credit", Entry.consumer == "ART")
        ).scalar_one()
    assert text == "HELP availability 40% < 50%: 100%"


def test_a_corrected_measurement_posts_the_difference_at_re_close(sla_loaded: str, tmp_path: Path) -> None:
    url = sla_loaded
    api.sla_import(url, measurements(tmp_path, MEASURED), "2026-03")
    api.close(url, "2026-03", tmp_path / "out")
    api.reopen(url, "2026-03", "availability was measured wrong")
    again = api.close(url, "2026-03", tmp_path / "out")
    assert again.posted == 0  # nothing changed, nothing posted
    api.reopen(url, "2026-03", "availability corrected")
    corrected = [["HELP", "availability", "94.5", "", "corrected"], *MEASURED[1:]]
    result = api.sla_import(url, measurements(tmp_path, corrected, "fixed.csv"), "2026-03")
    assert (result.imported, result.corrected, result.unchanged) == (0, 1, 3)
    revised = api.close(url, "2026-03", tmp_path / "out")
    assert revised.reconciliation.balanced
    # 94.5 < 95: 50% instead of 25%: ART 315.00 (157.50 more), EXT-1 90.00 (45.00 more).
    assert credits(url)[("ART", "availability")] == -31500
    assert credits(url)[("EXT-1", "availability")] == -9000
    with db.connect(url).connect() as conn:
        added = conn.execute(
            select(Entry.source, Entry.amount_minor, Entry.memo)
            .where(Entry.kind == "sla_credit", Entry.source.like("%:2"))
            .order_by(Entry.source)
        ).all()
    assert [(s, a) for s, a, _ in added] == [
        ("sla:HELP:availability:2026-03:ART:2", -15750),
        ("sla:HELP:availability:2026-03:EXT-1:2", -4500),
    ]
    assert all(memo.endswith("(revised)") for _, _, memo in added)
    assert api.verify(url).ok


@pytest.mark.parametrize("setting", ["warn", "refuse"])
def test_a_missing_measurement_warns_or_refuses(db_url: str, mini_book: Path, tmp_path: Path, setting: str) -> None:
    sla_book(mini_book, missing=setting)
    api.load(db_url, mini_book)
    api.import_file(db_url, mini_book / "usage" / "2026-03.csv", "2026-03")
    api.sla_import(db_url, measurements(tmp_path, [MEASURED[0]]), "2026-03")  # no response time
    if setting == "refuse":
        with pytest.raises(Refused, match=r"no measurement of HELP response_time for ART, MATH .*sla import"):
            api.close(db_url, "2026-03", tmp_path / "out")
        assert api.reconcile(db_url, "2026-03").status == "open"
        assert not (tmp_path / "out" / "2026-03").exists()
        return
    closed = api.close(db_url, "2026-03", tmp_path / "out")
    assert any(
        "SLA not measured: HELP response_time (internal) in 2026-03, no value for ART, MATH" in line
        for line in closed.review.service_levels
    )
    # MATH has no availability of its own here: 25% of 199.98 = 49.995, rounded half-up once.
    assert credits(db_url) == {
        ("ART", "availability"): -15750,
        ("MATH", "availability"): -5000,
        ("EXT-1", "availability"): -4500,
    }


def test_measurements_are_refused_whole_with_file_line_column(sla_loaded: str, tmp_path: Path) -> None:
    url = sla_loaded
    bad = measurements(
        tmp_path,
        [
            ["HELP", "availability", "101", "", ""],
            ["HELP", "uptime", "99", "", ""],
            ["NOPE", "availability", "99", "", ""],
            ["HELP", "response_time", "x", "", ""],
            ["HELP", "response_time", "3", "NOBODY", ""],
            ["HELP", "availability", "99.5", "ART", ""],
            ["HELP", "availability", "99.6", "ART", ""],
        ],
    )
    with pytest.raises(InputRefused) as refused:
        api.sla_import(url, bad, "2026-03")
    shown = refused.value.shown()
    assert "sla-2026-03.csv:2: value: 101 is not a percentage between 0 and 100" in shown
    assert any(line.startswith("sla-2026-03.csv:3: metric: HELP has no SLA for 'uptime'") for line in shown)
    assert "sla-2026-03.csv:4: service: 'NOPE' is not a service code in services.csv" in shown
    assert any(line.startswith("sla-2026-03.csv:5: value:") for line in shown)
    assert "sla-2026-03.csv:6: consumer: 'NOBODY' is not a unit code in units.csv" in shown
    assert "sla-2026-03.csv:8: value: HELP availability for ART is already measured on line 7" in shown
    api.close(url, "2026-03", tmp_path / "out")
    assert credits(url) == {}  # nothing of the refused file was stored
    with pytest.raises(Refused, match="period 2026-03 is closed"):
        api.sla_import(url, measurements(tmp_path, MEASURED), "2026-03")


def test_importing_again_changes_nothing_and_xlsx_works(sla_loaded: str, tmp_path: Path) -> None:
    from openpyxl import Workbook

    url = sla_loaded
    book = Workbook()
    sheet = book.active
    sheet.append(["service", "metric", "value", "consumer", "note"])
    for row in MEASURED:
        sheet.append([row[0], row[1], float(row[2]), row[3] or None, row[4] or None])
    book.save(tmp_path / "levels.xlsx")
    first = api.sla_import(url, tmp_path / "levels.xlsx", "2026-03")
    assert (first.imported, first.corrected) == (4, 0)
    again = api.sla_import(url, measurements(tmp_path, MEASURED), "2026-03")
    assert (again.imported, again.corrected, again.unchanged) == (0, 0, 4)


def test_the_book_checks_slas_and_bands(db_url: str, mini_book: Path) -> None:
    write_csv(
        mini_book / "slas.csv",
        SLA_HEADER,
        [
            ["HELP", "availability", "percent", "99.9", "min", "", "2026-01-01", ""],
            ["HELP", "availability", "percent", "99.5", "min", "", "2026-06-01", ""],
            ["HELP", "response_time", "hours", "4", "sideways", "", "2026-01-01", ""],
            ["NOPE", "availability", "percent", "120", "min", "", "2026-01-01", ""],
        ],
    )
    write_csv(
        mini_book / "sla_credits.csv",
        ["service", "metric", "breach_from", "credit_percent"],
        [["HELP", "availability", "99", "150"], ["HELP", "latency", "5", "10"], ["HELP", "availability", "99", "5"]],
    )
    toml = mini_book / "book.toml"
    toml.write_text(toml.read_text() + 'sla_missing = "ignore"\n')
    with pytest.raises(InputRefused) as refused:
        api.load(db_url, mini_book)
    shown = refused.value.shown()
    assert any(line.startswith("book.toml:3: sla_missing:") for line in shown)
    assert any(
        line.startswith("slas.csv:3: effective_from: HELP availability (internal) is also in force on line 2")
        for line in shown
    )
    assert any(line.startswith("slas.csv:4: direction: 'sideways' is not allowed") for line in shown)
    assert "slas.csv:5: service: 'NOPE' is not a service code in services.csv" in shown
    assert "slas.csv:5: target: 120 is not a percentage between 0 and 100" in shown
    assert "sla_credits.csv:2: credit_percent: 150 must be more than 0 and at most 100" in shown
    assert "sla_credits.csv:3: metric: HELP latency has no SLA in slas.csv: add it there first" in shown
    assert "sla_credits.csv:4: breach_from: the band of HELP availability from 99 is already given on line 2" in shown


def test_documents_show_the_service_levels_and_credits(sla_loaded: str, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    url = sla_loaded
    api.sla_import(url, measurements(tmp_path, MEASURED), "2026-03")
    api.close(url, "2026-03", tmp_path / "out")
    folder = tmp_path / "out" / "2026-03"
    sheet = load_workbook(folder / "statements" / "ART.xlsx")["Service levels"]
    rows = [[c.value for c in row] for row in sheet.iter_rows(min_row=4, max_row=6)]
    assert rows[0] == ["HELP", "availability", "percent", "at least 99.9", 98.7, "missed", 25, 157.5]
    assert rows[1] == ["HELP", "response_time", "hours", "at most 4", 9, "missed", 20, 126]
    assert rows[2][6:] == ["Total", "=SUM(H4:H5)"]
    math = load_workbook(folder / "statements" / "MATH.xlsx", data_only=False)["Service levels"]
    assert [c.value for c in math[4]][4:8] == [99.95, "met", 0, 0]
    invoice = (folder / "invoices" / "ART.html").read_text()
    # Each credit is a line under its service (HELP, of IT, after FLEET's van rental).
    help_part = invoice[invoice.index("Help desk") :]
    assert invoice.index("Van rental") < invoice.index("Help desk")
    assert "service level missed: HELP availability 98.7% &lt; 99%: 25%" in help_part
    assert "-157.50" in help_part and "-126.00" in help_part
    external = (folder / "invoices" / "EXT-1.html").read_text()
    assert "-45.00" in external
    book = load_workbook(folder / "reconciliation.xlsx")
    summary = {row[0].value: row for row in book["Summary"].iter_rows() if row[0].value}
    assert summary["SLA credits given"][1].value == 157.5 + 126 + 10 + 45
    assert summary["SLA credits given"][2].value.startswith("=ROUND(-(SUMIFS(")
    values = load_workbook(folder / "reconciliation.xlsx", data_only=True)["Summary"]
    checks = {row[0].value: row[3].value for row in values.iter_rows() if row[0].value}
    assert checks["SLA credits given"] == 0
    exceptions = [row[0].value for row in book["Exceptions"].iter_rows() if row[0].value]
    assert exceptions.count("credit, SLA credit (service level missed)") == 4


def test_the_fiscal_year_report_charts_attainment_against_target(sla_loaded: str, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    url = sla_loaded
    api.sla_import(url, measurements(tmp_path, MEASURED), "2026-03")
    api.close(url, "2026-03", tmp_path / "out")
    report, path = api.sla_report(url, 2026, tmp_path / "out")
    assert path == tmp_path / "out" / "sla-FY2026.xlsx"
    assert any("availability" in line and "missed: 2026-03" in line for line in report.lines())
    book = load_workbook(path)
    sheet = book["Attainment"]
    header = [c.value for c in sheet[3]]
    assert header[:6] == ["Service", "Metric", "Class", "Unit", "Direction", "2025-07"]
    march = header.index("2026-03") + 1
    rows = {(r[0].value, r[1].value, r[2].value): r for r in sheet.iter_rows(min_row=4, max_row=6)}
    assert rows[("HELP", "availability", "internal")][march - 1].value == 98.7
    assert rows[("HELP", "response_time", "internal")][march - 1].value == 6  # the value for all
    assert sum(len(rules.rules) for rules in sheet.conditional_formatting) == 6  # met and missed, per SLA
    credits_sheet = book["Credits"]
    amounts = [r[4].value for r in credits_sheet.iter_rows(min_row=2) if r[4].value is not None]
    assert amounts[-1] == 157.5 + 126 + 10 + 45
    with zipfile.ZipFile(path) as archive:
        charts = [archive.read(n).decode() for n in archive.namelist() if n.startswith("xl/charts/chart")]
    assert len(charts) == 3 and all("<c:lineChart>" in chart for chart in charts)
    assert all("Attainment!$F$" in chart for chart in charts)  # measured and target rows, month by month


@pytest.mark.slow
def test_libreoffice_recalculates_the_sla_figures_to_the_engines(
    sqlite_url: str, mini_book: Path, tmp_path: Path
) -> None:
    import shutil

    from libreoffice import soffice_recalculate
    from openpyxl import load_workbook

    if not shutil.which("soffice"):
        pytest.skip("LibreOffice is not installed")
    sla_book(mini_book)
    api.load(sqlite_url, mini_book)
    api.import_file(sqlite_url, mini_book / "usage" / "2026-03.csv", "2026-03")
    api.sla_import(sqlite_url, measurements(tmp_path, MEASURED), "2026-03")
    api.close(sqlite_url, "2026-03", tmp_path / "out")
    folder = tmp_path / "out" / "2026-03"
    files = [folder / "reconciliation.xlsx", folder / "statements" / "ART.xlsx"]
    again = soffice_recalculate(files, tmp_path / "lo")
    summary = {r[0].value: r for r in load_workbook(again[files[0]], data_only=True)["Summary"].iter_rows()}
    assert round(summary["SLA credits given"][2].value, 2) == 338.5
    assert summary["SLA credits given"][3].value == 0
    assert summary["All checks"][1].value == "OK"
    levels = load_workbook(again[files[1]], data_only=True)["Service levels"]
    assert round(levels["H6"].value, 2) == 283.5


def test_recovery_counts_the_credits_against_the_provider(sla_loaded: str, tmp_path: Path) -> None:
    url = sla_loaded
    api.sla_import(url, measurements(tmp_path, MEASURED), "2026-03")
    api.close(url, "2026-03", tmp_path / "out")
    rec = api.recovery(url, 2026, tmp_path / "recovery.xlsx")
    it = next(p for p in rec.providers if p.provider == "IT")
    assert it.sla_credits == 15750 + 12600 + 1000 + 4500
    assert (it.internal, it.external) == (63000 + 19998 - 15750 - 12600 - 1000, 18000 - 4500)


def test_the_command_line_imports_and_reports(sla_loaded: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from chargeback.cli import main

    url = sla_loaded
    runner = CliRunner()
    done = runner.invoke(
        main, ["--db", url, "sla", "import", str(measurements(tmp_path, MEASURED)), "--period", "2026-03"]
    )
    assert done.exit_code == 0, done.output
    assert "4 measurements read, 4 imported, 0 corrected, 0 unchanged" in done.output
    bad = measurements(tmp_path, [["HELP", "uptime", "1", "", ""]], "bad.csv")
    refused = runner.invoke(main, ["--db", url, "sla", "import", str(bad), "--period", "2026-03"])
    assert refused.exit_code == 1 and "bad.csv:2: metric:" in refused.output
    usage = runner.invoke(main, ["--db", url, "sla", "import", str(bad), "--period", "2026-3"])
    assert usage.exit_code == 2
    closed = runner.invoke(main, ["--db", url, "close", "2026-03", "--out", str(tmp_path / "out")])
    assert (
        closed.exit_code == 0 and "SLA missed: HELP availability 98.7% < 99%: 25%; ART credited 157.50" in closed.output
    )
    report = runner.invoke(main, ["--db", url, "sla", "report", "--fiscal-year", "2026", "--out", str(tmp_path)])
    assert report.exit_code == 0 and (tmp_path / "sla-FY2026.xlsx").exists()
    assert "met 0 of 1 months measured; missed: 2026-03; credits 157.50" in report.output  # availability, internal


def test_preview_prints_the_misses_and_posts_nothing(sla_loaded: str, tmp_path: Path) -> None:
    url = sla_loaded
    api.sla_import(url, measurements(tmp_path, MEASURED), "2026-03")
    preview = api.preview(url, "2026-03", tmp_path / "out")
    assert "  SLA missed: HELP availability 98.7% < 99%: 25%; ART credited 157.50 of 630.00" in (
        preview.review.service_levels
    )
    assert preview.reconciliation.balanced
    assert credits(url) == {}  # rolled back
    from openpyxl import load_workbook

    draft = load_workbook(tmp_path / "out" / "2026-03-draft" / "statements" / "ART.xlsx")["Service levels"]
    assert draft["H4"].value == 157.5
