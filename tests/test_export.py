"""Exports read by the auditors' own tools: hledger and beancount's bean-check."""

import csv
import io
import os
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from chargeback import api
from chargeback.cli import main
from chargeback.core.errors import Refused
from chargeback.ledger.export import CONTRACT_HEADER, CSV_HEADER, beancount_account


def test_csv_export_has_a_debit_and_a_credit_line_per_entry(closed: str) -> None:
    rows = list(csv.reader(io.StringIO(api.export(closed, "2026-04", "csv"))))
    assert rows[0] == CSV_HEADER
    # the contract's columns first, exactly as docs/CONTRACT.md gives them; the rate's
    # provenance after them
    contract = (Path(__file__).resolve().parent.parent / "docs" / "CONTRACT.md").read_text(encoding="utf-8")
    documented = re.search(r"`export --format csv` has the header\s+`([^`]+)`", contract)
    assert documented is not None
    assert CSV_HEADER[: len(CONTRACT_HEADER)] == documented[1].split(",")
    assert CSV_HEADER[len(CONTRACT_HEADER) :] == ["rate_source"]
    help_rate = "HELP/internal/2026-01-01"
    # a usage charge: one entry for a consumer, a service and a price, dated the period's
    # last day, its lines in lines.csv; here a credit, which credits the consumer's
    # expense and debits the provider's revenue
    assert rows[1:3] == [
        [
            "6",
            "2026-04-30",
            "2026-04",
            "expenses:internal:ART",
            "",
            "ART",
            "",
            "30.00",
            "HELP",
            "",
            "1 usage line",
            help_rate,
        ],
        [
            "6",
            "2026-04-30",
            "2026-04",
            "revenue:internal:IT",
            "",
            "IT",
            "30.00",
            "",
            "HELP",
            "",
            "1 usage line",
            help_rate,
        ],
    ]
    assert rows[3:5] == [
        [
            "7",
            "2026-04-30",
            "2026-04",
            "expenses:internal:MATH",
            "",
            "MATH",
            "60.00",
            "",
            "HELP",
            "",
            "1 usage line",
            help_rate,
        ],
        [
            "7",
            "2026-04-30",
            "2026-04",
            "revenue:internal:IT",
            "",
            "IT",
            "",
            "60.00",
            "HELP",
            "",
            "1 usage line",
            help_rate,
        ],
    ]
    # a van rented after the rate change names the newer rate row
    assert rows[5][8] == "VAN" and rows[5][11] == "VAN/internal/2026-03-16"


def test_rate_provenance_in_every_export(db_url: str, mini_book: Path, tmp_path: Path) -> None:
    """A department can see which rate row priced each line, and that an adjustment was
    entered by hand, in the GL's CSV and in the plain-text journals."""
    (mini_book / "recurring.csv").write_text(
        "service,consumer,quantity,from_period,to_period,description\nHELP,ART,1,2026-03,2026-03,Retainer\n"
    )
    api.run(db_url, mini_book, tmp_path / "out", through="2026-03")
    api.reopen(db_url, "2026-03", "goodwill credit")
    api.adjust(db_url, "2026-03", "HELP", "MATH", "-1.00", "Goodwill")
    api.close(db_url, "2026-03", tmp_path / "out")
    rows = list(csv.DictReader(io.StringIO(api.export(db_url, "2026-03", "csv"))))
    by_reference = {(r["reference"], r["unit"]): r["rate_source"] for r in rows}
    usage = {
        (r["service"], r["unit"]): r["rate_source"] for r in rows if r["memo"].endswith(("usage line", "usage lines"))
    }
    assert usage[("VAN", "MATH")] == "VAN/internal/2026-01-01"
    assert usage[("VAN", "ART")] == "VAN/internal/2026-03-16"
    assert usage[("HELP", "EXT-1")] == "HELP/external/2026-01-01"
    assert by_reference[("REC-2026-03", "ART")] == "HELP/internal/2026-01-01"
    assert [source for (ref, unit), source in by_reference.items() if ref.startswith("ADJ-")] == [
        "manual adjustment"
    ] * 2
    hledger_text = api.export(db_url, "2026-03", "hledger")
    assert "rate-source:VAN/internal/2026-03-16" in hledger_text
    assert 'rate_source: "manual adjustment"' in api.export(db_url, "2026-03", "beancount")


def hledger(*args: str) -> str:
    if not shutil.which("hledger"):
        pytest.skip("hledger is not installed (Debian package hledger)")
    return subprocess.run(["hledger", *args], check=True, capture_output=True, text=True).stdout


def test_hledger_reads_the_export_and_internal_accounts_net_to_zero(closed: str, tmp_path: Path) -> None:
    for period in ("2026-03", "2026-04"):
        path = tmp_path / f"{period}.journal"
        api.export(closed, period, "hledger", path)
        hledger("-f", str(path), "check")
        total = hledger("-f", str(path), "bal", "expenses:internal", "revenue:internal", "-O", "csv")
        last = list(csv.reader(io.StringIO(total)))[-1]
        assert last[0].lower().rstrip(":") == "total" and last[1] in ("0", "0 USD", "0.00 USD")
    revenue = hledger("-f", str(tmp_path / "2026-03.journal"), "bal", "revenue:external", "-O", "csv", "--invert")
    assert list(csv.reader(io.StringIO(revenue)))[-1][1] == "180.00 USD"


def test_bean_check_accepts_the_export(closed: str, tmp_path: Path) -> None:
    path = tmp_path / "2026-03.beancount"
    api.export(closed, "2026-03", "beancount", path)
    _bean_check(path)


def test_beancount_account_names() -> None:
    assert beancount_account("expenses:internal:eng.civil") == "Expenses:Internal:ENG-CIVIL"
    assert beancount_account("revenue:external:Med_Sch") == "Income:External:MED-SCH"
    assert beancount_account("assets:receivable:EXT-1") == "Assets:Receivable:EXT-1"


def test_formula_text_in_the_csv_is_neutralised(loaded: str, tmp_path: Path) -> None:
    from conftest import import_rows

    import_rows(loaded, tmp_path, [["2026-03-02", "HELP", "ART", "1", "=1+1", '=HYPERLINK("http://x")']])
    api.adjust(loaded, "2026-03", "HELP", "ART", "1.00", "typo", "R-1", memo='=HYPERLINK("http://x")')
    api.close(loaded, "2026-03", tmp_path / "out")
    rows = list(csv.reader(io.StringIO(api.export(loaded, "2026-03", "csv"))))
    assert [row[9:11] for row in rows[1:] if row[9]] == [["R-1", '\'=HYPERLINK("http://x")']] * 2
    with open(tmp_path / "out" / "2026-03" / "lines.csv", encoding="utf-8", newline="") as handle:
        assert [line["reference"] for line in csv.DictReader(handle)] == ["'=1+1"]


def test_journal_csv_is_what_csv_writer_writes(loaded: str, tmp_path: Path) -> None:
    """`write_csv` formats lines itself, for speed: byte for byte what `csv.writer` makes
    of the entries' lines, with commas, quotes, line breaks and formula text in the memos
    and references, and credits."""
    from conftest import import_rows
    from sqlalchemy import select

    from chargeback.core.money import from_minor
    from chargeback.core.safe import neutralize
    from chargeback.ledger.export import write_csv
    from chargeback.store import db
    from chargeback.store.schema import Entry

    def journal_lines(conn, period):
        """The lines, plainly: two per entry, the debit line then the credit line."""
        for e in conn.execute(select(Entry.__table__).where(Entry.period == period).order_by(Entry.id)):
            amount = f"{from_minor(abs(e.amount_minor), 2):.2f}"
            debit, credit = ((amount, ""), ("", amount)) if e.amount_minor >= 0 else (("", amount), (amount, ""))
            tail = [e.service, neutralize(e.reference) or "", neutralize(e.memo) or "", neutralize(e.rate_source) or ""]
            for account, gl, unit, amounts in (
                (e.debit_account, e.debit_gl, e.consumer, debit),
                (e.credit_account, e.credit_gl, e.provider, credit),
            ):
                yield [str(e.id), e.date.isoformat(), e.period, account, neutralize(gl) or "", unit, *amounts, *tail]

    import_rows(loaded, tmp_path, "2026-03-02,HELP,ART,1,T5,\n2026-03-04,HELP,EXT-1,3,=T3,@at")
    # the journal's texts from input are adjustments' references and memos
    for amount, memo, reference in (
        ("60.00", 'a "quoted", memo', "T,1"),
        ("-150.00", "line one\nline two", 'T"2'),
        ("1.00", "@at", "T3"),
        ("2.00", "+plus", "T4"),
    ):
        api.adjust(loaded, "2026-03", "HELP", "ART", amount, "entered by hand", reference, memo=memo)
    api.close(loaded, "2026-03", tmp_path / "out", documents=False)
    engine = db.connect(loaded)
    with engine.connect() as conn:
        fast = io.StringIO()
        write_csv(conn, "2026-03", fast)
        plain = io.StringIO()
        writer = csv.writer(plain, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        writer.writerows(journal_lines(conn, "2026-03"))
    assert fast.getvalue() == plain.getvalue()
    rows = list(csv.reader(io.StringIO(fast.getvalue(), newline="")))
    credit = [row for row in rows if row[9] == 'T"2']
    assert [row[3] for row in credit] == ["expenses:internal:ART", "revenue:internal:IT"]
    assert [row[6:8] for row in credit] == [["", "150.00"], ["150.00", ""]]
    assert [row[10] for row in rows if row[9] == "T,1"] == ['a "quoted", memo'] * 2
    assert [row[9:11] for row in rows if row[9] == "T3"] == [["T3", "'@at"]] * 2


@given(
    st.lists(
        st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12), min_size=2, max_size=6
    )
)
def test_a_csv_field_is_quoted_as_csv_writer_quotes_it(fields: list[str]) -> None:
    """The same text as `csv.writer`, except that a carriage return is quoted too (this
    Python's writer leaves it bare, and every reader then splits the line there)."""
    from chargeback.ledger.export import csv_field

    line = ",".join(csv_field(f) for f in fields) + "\n"
    assert next(csv.reader(io.StringIO(line, newline=""))) == fields
    if not any("\r" in f for f in fields):
        plain = io.StringIO()
        csv.writer(plain, lineterminator="\n").writerow(fields)
        assert line == plain.getvalue()


# Multi-period exports: one file for a range of closed periods or a fiscal year.


def _bean_check(path: Path) -> None:
    # beancount is a test dependency: its bean-check sits beside this Python, on PATH or not
    beside = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    checker = shutil.which("bean-check", path=beside) or pytest.skip(
        "bean-check is not installed (pip install beancount)"
    )
    done = subprocess.run([checker, str(path)], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _beancount_balances(path: Path) -> dict[str, Decimal]:
    """Each account's balance, as beancount's own loader reads the file."""
    from beancount import loader
    from beancount.core import data

    entries, errors, _ = loader.load_file(str(path))
    assert errors == []
    balances: dict[str, Decimal] = {}
    for entry in entries:
        if isinstance(entry, data.Transaction):
            for posting in entry.postings:
                balances[posting.account] = balances.get(posting.account, Decimal(0)) + posting.units.number
    return balances


def _hledger_balances(path: Path) -> dict[str, str]:
    rows = csv.reader(io.StringIO(hledger("-f", str(path), "bal", "--flat", "--no-total", "-O", "csv")))
    return dict(list(rows)[1:])


def _summed(balances: list[dict[str, Decimal]]) -> dict[str, Decimal]:
    total: dict[str, Decimal] = {}
    for each in balances:
        for account, amount in each.items():
            total[account] = total.get(account, Decimal(0)) + amount
    return total


def test_a_fiscal_years_beancount_file_passes_bean_check_and_sums_its_months(closed: str, tmp_path: Path) -> None:
    year = tmp_path / "FY2026.beancount"
    api.export(closed, None, "beancount", year, fiscal_year=2026)  # July 2025 to June 2026: March and April
    _bean_check(year)
    text = year.read_text()
    assert text.count("open Expenses:Internal:ART USD") == 1
    months = []
    for period in ("2026-03", "2026-04"):
        api.export(closed, period, "beancount", tmp_path / f"{period}.beancount")
        months.append(_beancount_balances(tmp_path / f"{period}.beancount"))
    # the months' files cannot be joined (each opens its accounts); the year's can, and
    # its balances are the months' added up
    assert _beancount_balances(year) == _summed(months)
    assert _beancount_balances(year)["Income:External:IT"] == Decimal("-180.00")  # nothing external in April


def test_a_ranges_hledger_file_passes_hledger_check_and_sums_its_months(closed: str, tmp_path: Path) -> None:
    both = tmp_path / "range.journal"
    api.export(closed, None, "hledger", both, first="2026-01", through="2026-12")
    hledger("-f", str(both), "check")
    months = []
    for period in ("2026-03", "2026-04"):
        api.export(closed, period, "hledger", tmp_path / f"{period}.journal")
        months.append({a: Decimal(v.split()[0]) for a, v in _hledger_balances(tmp_path / f"{period}.journal").items()})
    year = {a: Decimal(v.split()[0]) for a, v in _hledger_balances(both).items()}
    assert year == {a: v for a, v in _summed(months).items() if v != 0}
    assert "; chargeback journal, periods 2026-03 to 2026-04 (2 closed periods)" in both.read_text()


def test_a_ranges_csv_has_one_header_and_every_periods_entries_in_order(closed: str) -> None:
    rows = list(csv.reader(io.StringIO(api.export(closed, None, "csv", first="2026-03", through="2026-04"))))
    march = list(csv.reader(io.StringIO(api.export(closed, "2026-03", "csv"))))
    april = list(csv.reader(io.StringIO(api.export(closed, "2026-04", "csv"))))
    assert rows == march + april[1:]
    assert [row[2] for row in rows[1:]] == sorted(row[2] for row in rows[1:])


def test_a_range_with_an_open_period_is_refused_with_what_is_pending(
    imported: str, mini_book: Path, tmp_path: Path
) -> None:
    api.close(imported, "2026-03", tmp_path / "out")
    api.import_file(imported, mini_book / "usage" / "2026-04.csv", "2026-04")
    with pytest.raises(Refused, match=r"period 2026-04 is open: .*pending.*`chargeback close 2026-04`"):
        api.export(imported, None, "beancount", first="2026-03", through="2026-04")
    with pytest.raises(Refused, match="period 2026-04 is open"):
        api.export(imported, None, "csv", fiscal_year=2026)
    with pytest.raises(Refused, match="no period of fiscal year 2027 .* has any activity"):
        api.export(imported, None, "csv", fiscal_year=2027)
    with pytest.raises(Refused, match="--from 2026-04 is after --through 2026-03"):
        api.export(imported, None, "csv", first="2026-04", through="2026-03")


def test_export_arguments_are_one_period_a_range_or_a_fiscal_year(closed: str) -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["--db", closed, "export", "--fiscal-year", "2026", "--format", "csv"])
    assert done.exit_code == 0, done.output
    assert done.output.count("entry,date,period") == 1 and ",2026-04," in done.output and ",2026-03," in done.output
    for bad in (
        ["export", "2026-03", "--fiscal-year", "2026", "--format", "csv"],
        ["export", "--from", "2026-03", "--format", "csv"],
        ["export", "--format", "csv"],
        ["export", "--from", "2026-3", "--through", "2026-04", "--format", "csv"],
    ):
        assert runner.invoke(main, ["--db", closed, *bad]).exit_code == 2, bad
