"""Which XLSX writer for the big sheets (the auditors' Journal, statements' Detail)?

    python benchmarks/writers.py [--rows 200000] [--only NAME]

Writes the same journal-like sheet (entry id, date, account, GL account, unit, debit,
credit, service, reference, memo, kind, 64-hex hash; amounts as numeric cells with a
currency format, dates as date cells) with each candidate, each in a process of its own,
and prints wall seconds, rows per second, peak memory and file size. Every file is read
back with openpyxl: its first and last data rows must hold the values written (amounts
exactly, through `str()`). A candidate that is not installed is skipped and said so.

Candidates: openpyxl (write-only mode), XlsxWriter (constant_memory, a cell at a time),
chargeback's own path (`workbooks.Workbook`: XlsxWriter's public calls, input text
neutralized), rustpy-xlsxwriter (Rust's rust_xlsxwriter behind Python, given
Decimal and date values and per-column formats) and, as an extra, pyexcelerate (pure
Python). Peak memory is the writing process's own maximum RSS (`os.wait4`), read back in
another process so that the measuring one stays small.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

#: The Journal sheet's column titles (`reconciliation_workbook.JOURNAL_TITLES`), handed to
#: each writer's process by `main`, which reads them in a process of their own: importing
#: the documents' module costs some 70 MB, and a measured process must hold only its writer.
TITLES: list[str] = []
MONEY = '"$"#,##0.00;[Red]-"$"#,##0.00'
CANDIDATES = ("openpyxl", "xlsxwriter", "chargeback", "rust", "pyexcelerate")


def rows(count: int) -> Iterator[tuple]:
    """Journal lines: a debit line then a credit line per entry, seeded and plain."""
    day = dt.date(2026, 3, 1)
    for n in range(count):
        entry = n // 2 + 1
        amount = Decimal(f"{(entry * 7919) % 100000}.{entry % 100:02d}")
        debit = n % 2 == 0
        yield (
            entry,
            day + dt.timedelta(days=entry % 28),
            f"expense:internal:D{entry % 2000:04d}" if debit else f"revenue:internal:P{entry % 40:03d}",
            "6100" if debit else "4100",
            f"D{entry % 2000:04d}" if debit else f"P{entry % 40:03d}",
            amount if debit else None,
            None if debit else amount,
            f"SVC-{entry % 400:03d}",
            f"REF-{entry:07d}",
            f"usage line {entry} of the month",
            "usage",
            f"{entry * 2654435761 % 2**64:016x}" * 4,
        )


def write_openpyxl(path: Path, count: int) -> None:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Journal")
    sheet.append(TITLES)
    for row in rows(count):
        cells = list(row)
        for col in (1,):
            cell = WriteOnlyCell(sheet, row[col])
            cell.number_format = "yyyy-mm-dd"
            cells[col] = cell
        for col in (5, 6):
            if row[col] is not None:
                cell = WriteOnlyCell(sheet, row[col])
                cell.number_format = MONEY
                cells[col] = cell
        sheet.append(cells)
    book.save(path)


def write_xlsxwriter(path: Path, count: int) -> None:
    import xlsxwriter

    book = xlsxwriter.Workbook(
        str(path),
        {"constant_memory": True, "strings_to_formulas": False, "strings_to_numbers": False, "strings_to_urls": False},
    )
    sheet = book.add_worksheet("Journal")
    money = book.add_format({"num_format": MONEY})
    date = book.add_format({"num_format": "yyyy-mm-dd"})
    sheet.write_row(0, 0, TITLES)
    for r, row in enumerate(rows(count), start=1):
        sheet.write_number(r, 0, row[0])
        sheet.write_datetime(r, 1, row[1], date)
        for col in (2, 3, 4, 7, 8, 9, 10, 11):
            sheet.write_string(r, col, row[col])
        for col in (5, 6):
            if row[col] is not None:
                sheet.write_number(r, col, row[col], money)
    book.close()


def write_chargeback(path: Path, count: int) -> None:
    """As the auditors' Journal sheet is written: `workbooks.Workbook` (XlsxWriter's
    constant_memory mode), a public `write_*` call a cell, input text neutralized."""
    from chargeback.core.safe import neutralize
    from chargeback.documents.bills import DocumentContext
    from chargeback.documents.workbooks import EXCEL_EPOCH, Workbook

    ctx = DocumentContext("Benchmark", "USD", 2, "2026-03", dt.datetime(2026, 4, 1), None, 7, None, {}, {})
    wb = Workbook(path, ctx, "Writers")
    sheet = wb.sheet("Journal")
    wb.header(sheet, 0, TITLES, numeric=(0, 5, 6))
    date, money = wb.formats.date, wb.formats.money
    for r, row in enumerate(rows(count), start=1):
        sheet.write_number(r, 0, row[0])
        sheet.write_number(r, 1, (row[1] - EXCEL_EPOCH).days, date)
        for col, value in enumerate(row[2:5], 2):
            sheet.write_string(r, col, neutralize(value) or "")
        for col in (5, 6):
            if row[col] is not None:
                sheet.write_number(r, col, row[col], money)
        for col, value in enumerate(row[7:], 7):
            sheet.write_string(r, col, neutralize(value) or "")
    wb.close()


def write_rust(path: Path, count: int) -> None:
    from rustpy_xlsxwriter import FastExcel, Format

    def records() -> Iterator[dict[str, object]]:
        for row in rows(count):
            yield dict(zip(TITLES, row, strict=False))  # it takes Decimal and date as they are

    money, date = Format().set_num_format(MONEY), Format().set_num_format("yyyy-mm-dd")
    (
        FastExcel(str(path))
        .sheet("Journal", records(), column_formats={"Date": date, "Debit": money, "Credit": money})
        .save()
    )


def write_pyexcelerate(path: Path, count: int) -> None:
    """Pure Python, not Rust: listed as an extra. It takes the whole sheet as a list."""
    from pyexcelerate import Format, Style
    from pyexcelerate import Workbook as PyexWorkbook

    book = PyexWorkbook()
    sheet = book.new_sheet("Journal", data=[TITLES, *(list(row) for row in rows(count))])
    sheet.set_col_style(2, Style(format=Format("yyyy-mm-dd")))
    for col in (6, 7):
        sheet.set_col_style(col, Style(format=Format(MONEY)))
    book.save(str(path))


WRITERS = {
    "openpyxl": write_openpyxl,
    "xlsxwriter": write_xlsxwriter,
    "chargeback": write_chargeback,
    "rust": write_rust,
    "pyexcelerate": write_pyexcelerate,
}
MODULES = {
    "openpyxl": "openpyxl",
    "xlsxwriter": "xlsxwriter",
    "chargeback": "xlsxwriter",
    "rust": "rustpy_xlsxwriter",
    "pyexcelerate": "pyexcelerate",
}


def check(path: Path, count: int) -> None:
    """The first and last data rows read back with openpyxl hold what was written."""
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True)
    sheet = book["Journal"]
    read = list(sheet.iter_rows(min_row=2, max_row=2, values_only=True))
    read += list(sheet.iter_rows(min_row=count + 1, max_row=count + 1, values_only=True))
    expected = [next(rows(1))]
    *_, last = rows(count)
    expected.append(last)
    assert len(read) == 2, read
    for got, want in zip(read, expected, strict=False):
        got = (*got, *[None] * (len(want) - len(got)))  # trailing empty cells may be cut
        assert got[0] == want[0], (got, want)
        assert isinstance(got[1], dt.datetime) and got[1].date() == want[1], (got, want)
        for col in (5, 6):
            assert (got[col] is None) == (want[col] is None), (got, want)
            if want[col] is not None:
                assert Decimal(str(got[col])) == want[col], (got[col], want[col])
        for col in (2, 3, 4, 7, 8, 9, 10, 11):
            assert got[col] == want[col], (col, got[col], want[col])
    assert book["Journal"].max_row in (count + 1, None)


def journal_titles() -> list[str]:
    """The Journal sheet's titles, read in a process of their own (see `TITLES`)."""
    read = (
        "import json; from chargeback.documents.reconciliation_workbook import JOURNAL_TITLES; "
        "print(json.dumps(JOURNAL_TITLES))"
    )
    found = subprocess.run([sys.executable, "-c", read], check=True, capture_output=True, text=True, cwd=HERE.parent)
    return json.loads(found.stdout)


def measure(name: str, count: int, folder: Path) -> dict[str, object] | str:
    path = folder / f"{name}.xlsx"
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, __file__, "--only", name, "--rows", str(count), "--path", str(path)]
        + ["--titles", json.dumps(TITLES)],
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    assert process.stderr is not None
    error = process.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        return error.strip().splitlines()[-1] if error.strip() else "failed"
    # read back in another process: Linux counts the RSS a child had when it was forked
    # into its peak, so this (parent) process stays small and loads no writer or reader
    checked = subprocess.run(
        [sys.executable, __file__, "--check", "--rows", str(count), "--path", str(path)],
        check=False,
        capture_output=True,
        text=True,
    )
    lines = checked.stderr.strip().splitlines()
    verdict = "ok" if checked.returncode == 0 else f"FAILED: {lines[-1][:100] if lines else '?'}"
    return {
        "seconds": round(seconds, 2),
        "rows_per_second": round(count / seconds),
        "peak_mb": usage.ru_maxrss // 1024,
        "mb": round(path.stat().st_size / 2**20, 1),
        "read_back": verdict,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--only", choices=CANDIDATES)
    parser.add_argument("--path", type=Path)
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--titles", type=json.loads, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.check:
        check(args.path, args.rows)
        return
    TITLES[:] = args.titles or journal_titles()
    if args.only and args.path:
        WRITERS[args.only](args.path, args.rows)
        return
    print(
        f"| writer | {args.rows:,} rows: seconds | rows/s | peak MB | file MB | read back |\n"
        "|---|---:|---:|---:|---:|---|",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as folder:
        for name in [args.only] if args.only else CANDIDATES:
            if importlib.util.find_spec(MODULES[name]) is None:
                print(f"| {name} | not installed ({MODULES[name]}) | | | | |", flush=True)
                continue
            result = measure(name, args.rows, Path(folder))
            if isinstance(result, str):
                print(f"| {name} | failed: {result} | | | | |", flush=True)
            else:
                print(
                    f"| {name} | {result['seconds']} | {result['rows_per_second']:,} "
                    f"| {result['peak_mb']} | {result['mb']} | {result['read_back']} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
