"""Hostile and broken input: one case per refusal, each with its exact message (the way
TigerBeetle documents one result code per refusal), then fuzzing of the CSV and XLSX
readers and the book loader: no input ever produces a traceback, and every refusal
names FILE:LINE: COLUMN."""

from __future__ import annotations

import csv
import io
import re
import shutil
import time
import tracemalloc
import zipfile
from pathlib import Path

import hostile_files as h
import openpyxl.xml
import pytest
from conftest import BOOKS, PG_URL, reset_postgres
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability import count, rounds, rows

from chargeback import api
from chargeback.book.load import read_book
from chargeback.core.errors import InputRefused, Refused
from chargeback.ingest.tabular import read_rows
from chargeback.ingest.usage import USAGE

FORMULA = '<c r="REF"><f>1+1</f></c>'
ROW = ["2026-03-02", "HELP", "ART", 1, "R-1", "fine"]
NOT_PLAIN = "is not a plain decimal number (digits with '.' as the separator)"
SAVE_AGAIN = "open it in a spreadsheet program and save it again"


def _zip_without_workbook() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("hello.txt", "not a workbook")
    return buffer.getvalue()


#: (case, file name, file bytes, the exact problems printed, one per line)
CASES = [
    (
        "semicolons",
        "u.csv",
        h.csv_bytes(h.HEADER.replace(",", ";"), h.GOOD.replace(",", ";")),
        ["u.csv:1: -: the file is separated by ';': save it as comma-separated CSV"],
    ),
    (
        "tabs",
        "u.csv",
        h.csv_bytes(h.HEADER.replace(",", "\t"), h.GOOD.replace(",", "\t")),
        ["u.csv:1: -: the file is separated by tabs: save it as comma-separated CSV"],
    ),
    (
        "NUL byte in a cell",
        "u.csv",
        h.usage_csv(h.GOOD, "2026-03-03,HELP,ART,1,R-2,a\x00b"),
        ["u.csv:3: description: contains a NUL byte: the file is not plain CSV text; save it as CSV UTF-8"],
    ),
    (
        "invalid UTF-8",
        "u.csv",
        h.usage_csv(h.GOOD, "2026-03-03,HELP,ART,1,R-2,Caf\xe9").replace(b"\xc3\xa9", b"\xe9"),
        ["u.csv:3: description: not UTF-8 text: save the file as CSV UTF-8"],
    ),
    (
        "invalid UTF-8 far down the file",
        "u.csv",
        h.usage_csv(*[f"2026-03-02,HELP,ART,1,R-{i},x" for i in range(3000)], "2026-03-02,HELP,ART,1,\xff,x").replace(
            b"\xc3\xbf", b"\xff"
        ),
        ["u.csv:3002: reference: not UTF-8 text: save the file as CSV UTF-8"],
    ),
    (
        "UTF-16",
        "u.csv",
        h.usage_csv(h.GOOD, encoding="utf-16"),
        ['u.csv:1: -: is UTF-16 text (Excel\'s "Unicode Text"): save the file as CSV UTF-8'],
    ),
    (
        "a workbook named .csv",
        "u.csv",
        h.usage_workbook(ROW),
        ["u.csv:1: -: is a workbook (XLSX), not CSV text: name it .xlsx, or save it as CSV UTF-8"],
    ),
    (
        "a quote never closed",
        "u.csv",
        h.usage_csv(h.GOOD, '2026-03-03,HELP,ART,1,"R-2,x'),
        ["u.csv:3: -: not readable as CSV: a quoted cell is never closed (a '\"' is missing)"],
    ),
    (
        "a cell over 1 MB",
        "u.csv",
        h.usage_csv("2026-03-03,HELP,ART,1,R-2," + "x" * ((1 << 20) + 1)),
        ["u.csv:2: -: not readable as CSV: a cell is longer than 1048576 characters"],
    ),
    ("empty file", "u.csv", b"", ["u.csv:1: -: the file is empty; it needs a header row"]),
    ("too many cells", "u.csv", h.usage_csv(h.GOOD + ",extra"), ["u.csv:2: -: 7 cells but the header has 6 columns"]),
    (
        "1e30 quantity",
        "u.csv",
        h.usage_csv("2026-03-02,HELP,ART,1e30,R-1,x"),
        [f"u.csv:2: quantity: quantity '1e30' {NOT_PLAIN}"],
    ),
    (
        "a 31-digit quantity",
        "u.csv",
        h.usage_csv("2026-03-02,HELP,ART," + "9" * 31 + ",R-1,x"),
        [f"u.csv:2: quantity: quantity '{'9' * 31}' is too large (the limit is 10^12)"],
    ),
    (
        "quantity x rate over the limit",
        "u.csv",
        h.usage_csv("2026-03-02,HELP,ART,999999999999,R-1,x"),
        ["u.csv:2: quantity: 999999999999 x the rate 60 is too large for one charge line (the limit is 10^12)"],
    ),
    (
        "20 decimal places",
        "u.csv",
        h.usage_csv("2026-03-02,HELP,ART,1.00000000000000000001,R-1,x"),
        ["u.csv:2: quantity: quantity '1.00000000000000000001' has more than 6 decimal places"],
    ),
    ("NaN", "u.csv", h.usage_csv("2026-03-02,HELP,ART,NaN,R-1,x"), [f"u.csv:2: quantity: quantity 'NaN' {NOT_PLAIN}"]),
    (
        "Infinity",
        "u.csv",
        h.usage_csv("2026-03-02,HELP,ART,-Infinity,R-1,x"),
        [f"u.csv:2: quantity: quantity '-Infinity' {NOT_PLAIN}"],
    ),
    (
        "unknown and missing columns",
        "u.csv",
        h.csv_bytes("date,service,customer,quantity,reference", h.GOOD),
        [
            "u.csv:1: consumer: required column is missing from the header",
            "u.csv:1: customer: unknown column; the columns are: date, service, consumer, quantity, reference, description",
        ],
    ),
    (
        "a column twice",
        "u.csv",
        h.csv_bytes(h.HEADER + ",date", h.GOOD + ",2026-03-02"),
        ["u.csv:1: date: column appears twice in the header"],
    ),
    (
        "XLSX: password-protected (OLE2)",
        "u.xlsx",
        h.OLE2 + bytes(504),
        [
            "u.xlsx:0: -: is password-protected (encrypted) or an old .xls workbook: remove the password, "
            "or save it as .xlsx, and import it again"
        ],
    ),
    (
        "XLSX: truncated",
        "u.xlsx",
        h.usage_workbook(ROW)[:400],
        ["u.xlsx:0: -: is damaged (not a complete XLSX archive): save it again from the spreadsheet program"],
    ),
    (
        "XLSX: not a zip at all",
        "u.xlsx",
        h.usage_csv(h.GOOD),
        ["u.xlsx:0: -: is not an XLSX workbook: save it as .xlsx (or as CSV UTF-8 with a .csv name)"],
    ),
    (
        "XLSX: a zip that is no workbook",
        "u.xlsx",
        _zip_without_workbook(),
        [f"u.xlsx:0: -: is not a readable XLSX workbook (KeyError): {SAVE_AGAIN}"],
    ),
    (
        "XLSX: formula without a saved value",
        "u.xlsx",
        h.usage_workbook(ROW[:3] + [FORMULA] + ROW[4:]),
        [
            "u.xlsx:2: quantity: is a formula with no saved value: open the file in a spreadsheet program, "
            "let it calculate and save it (or paste the values)"
        ],
    ),
    (
        "XLSX: an error cell",
        "u.xlsx",
        h.usage_workbook(ROW[:3] + ['<c r="REF" t="e"><v>#DIV/0!</v></c>'] + ROW[4:]),
        ["u.xlsx:2: quantity: is a spreadsheet error (#DIV/0!): fix the formula"],
    ),
    (
        "XLSX: merged cells",
        "u.xlsx",
        h.usage_workbook(ROW, ["2026-03-03", "HELP", "ART", 1, "R-2", None], merged=["F2:F3"]),
        ["u.xlsx:2: description: merged cells F2:F3: unmerge them and fill in every cell"],
    ),
    (
        "XLSX: a number cell of 1e30",
        "u.xlsx",
        h.usage_workbook(ROW[:3] + [1e30] + ROW[4:]),
        [f"u.xlsx:2: quantity: quantity '1{'0' * 30}' is too large (the limit is 10^12)"],
    ),
    (
        "XLSX: cells beyond the header",
        "u.xlsx",
        h.workbook(h.sheet_xml([h.USAGE_HEADER, ROW], extra_rows='<row r="9"><c r="Z9"><v>1</v></c></row>')),
        ["u.xlsx:9: -: cells beyond the 6 columns of the header"],
    ),
    (
        "XLSX: no header on row 1",
        "u.xlsx",
        h.workbook(h.sheet_xml([], extra_rows='<row r="3"><c r="A3"><v>1</v></c></row>')),
        ["u.xlsx:1: -: the first sheet has no header on row 1; it needs a header row"],
    ),
    (
        "XLSX: billion laughs",
        "u.xlsx",
        h.billion_laughs(),
        ["u.xlsx:0: -: declares XML entities or a DTD, which spreadsheet programs never write: refused as unsafe"],
    ),
    (
        "XLSX: external entity",
        "u.xlsx",
        h.external_entity(),
        ["u.xlsx:0: -: declares XML entities or a DTD, which spreadsheet programs never write: refused as unsafe"],
    ),
    (
        "XLSX: zip bomb",
        "u.xlsx",
        h.usage_workbook(ROW, pad=40 << 20),
        ["u.xlsx:0: -: xl/worksheets/sheet1.xml expands more than 100-fold (to 40 MB): refused as a zip bomb"],
    ),
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def book_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One database with the mini book for the whole table (refusals change nothing)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'db.sqlite'}"
    else:
        if not PG_URL:
            pytest.skip("no PostgreSQL server: set CHARGEBACK_TEST_PG")
        reset_postgres(PG_URL)
        url = PG_URL
    api.load(url, BOOKS / "mini")
    return url


@pytest.mark.parametrize("case, name, data, expected", CASES, ids=[c[0] for c in CASES])
def test_each_refusal_has_its_message(
    book_db: str, tmp_path: Path, case: str, name: str, data: bytes, expected: list[str]
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputRefused) as refused:
        api.import_file(book_db, path, "2026-03")
    assert [str(p) for p in refused.value.problems] == expected
    assert str(refused.value) == f"import refused: {len(expected)} error{'s' * (len(expected) > 1)}, nothing imported"
    assert rows(book_db, "usage") == 0


def test_what_is_accepted_stays_accepted(loaded: str, tmp_path: Path) -> None:
    """The other side of the table: a formula with a saved value, 20 decimal places that
    are zeros, a declared size of A1:XFD1048576 and CR line ends are fine."""
    files = {
        "cached.xlsx": h.usage_workbook(ROW[:3] + ['<c r="REF"><f>1+1</f><v>2</v></c>', "C-1", "x"]),
        "zeros.csv": h.usage_csv("2026-03-02,HELP,ART,1.00000000000000000000,Z-1,x"),
        "declared.xlsx": h.usage_workbook(["2026-03-02", "HELP", "ART", 0.5, "D-1", "x"], dimension="A1:XFD1048576"),
        "cr.csv": h.usage_csv("2026-03-02,HELP,ART,3,CR-1,x").replace(b"\n", b"\r"),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        assert api.import_file(loaded, tmp_path / name, "2026-03").imported == 1, name
    assert rows(loaded, "usage") == 4


def test_openpyxl_parses_with_defusedxml() -> None:
    assert openpyxl.xml.DEFUSEDXML is True
    from openpyxl.xml import functions

    assert functions.iterparse.__module__.startswith("defusedxml")


def test_an_xlsx_bomb_costs_neither_memory_nor_time(tmp_path: Path) -> None:
    """A declared size of A1:XFD1048576 with a cell at its far corner: openpyxl's own
    row iterator would pad a million rows to 16,384 cells each."""
    path = tmp_path / "bomb.xlsx"
    path.write_bytes(
        h.workbook(
            h.sheet_xml(
                [h.USAGE_HEADER, ROW],
                dimension="A1:XFD1048576",
                extra_rows='<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>',
            )
        )
    )
    problems: list = []
    tracemalloc.start()
    started = time.perf_counter()
    found = list(read_rows(path, USAGE, problems))
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [str(p) for p in problems] == ["bomb.xlsx:1048576: -: cells beyond the 6 columns of the header"]
    assert len(found) == 1 and elapsed < 2 and peak < 20 << 20


def test_the_book_loader_names_file_line_and_column(tmp_path: Path) -> None:
    book = tmp_path / "book"
    shutil.copytree(BOOKS / "mini", book)
    (book / "book.toml").write_text('name = "X"\ncurrency = "USD"\ncolour = "blue"\n')
    (book / "units.csv").write_bytes(b"code;name\nA;B\n")
    (book / "rates.csv").write_text("service,effective_from,rate\nHELP,2026-01-01,1e30\nHELP,2027-01-01,NaN\n")
    with pytest.raises(InputRefused) as refused:
        read_book(book)
    problems = [str(p) for p in refused.value.problems]
    assert (
        "book.toml:3: colour: unknown key; the keys are: name, currency, fiscal_year_start, payment_terms, "
        "allocation_method, variance_threshold, invoice_line_limit, sla_missing, cloud" in problems
    )
    assert "units.csv:1: -: the file is separated by ';': save it as comma-separated CSV" in problems
    assert f"rates.csv:2: rate: rate '1e30' {NOT_PLAIN}" in problems
    assert f"rates.csv:3: rate: rate 'NaN' {NOT_PLAIN}" in problems
    (book / "book.toml").write_text('name = "X"\ncurrency = \n')
    with pytest.raises(InputRefused) as refused:
        read_book(book)
    assert str(refused.value.problems[0]).startswith("book.toml:2: -: not valid TOML: ")


# ---- fuzzing -------------------------------------------------------------------------

PROBLEM = re.compile(r"^[^:\n]+:\d+: [^:\n]+: .+", re.S)
FUZZ = settings(
    max_examples=rounds(60, 1500),
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

cells = st.one_of(
    st.sampled_from(
        [
            "2026-03-02",
            "HELP",
            "VAN",
            "ART",
            "EXT-1",
            "1",
            "-0.5",
            "1e30",
            "NaN",
            "",
            " ",
            "=1+1",
            "1,5",
            "0",
            "1.0000001",
            "9" * 20,
            "\x00",
            "\ufeff",
            '"',
            "\r\n",
            "2026-02-30",
        ]
    ),
    st.text(max_size=12),
)
csv_text = st.lists(st.lists(cells, min_size=0, max_size=8), min_size=0, max_size=8).map(
    lambda table: _to_csv([h.USAGE_HEADER] + table)
)


def _to_csv(table: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(table)
    return out.getvalue()


def _check(problems: list, name: str) -> None:
    for problem in problems:
        assert PROBLEM.match(str(problem)), problem
        assert problem.file == name


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    buffer = bytearray(data)
    for position, value in edits:
        if buffer:
            buffer[position % len(buffer)] = value
    return bytes(buffer)


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_csv_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(h.HEADER.encode() + b"\n" + data)
    problems: list = []
    list(read_rows(path, USAGE, problems))
    _check(problems, "f.csv")
    count("fuzzed inputs")


@FUZZ
@given(csv_text)
def test_fuzz_import_of_csv_tables(book_db: str, tmp_path: Path, text: str) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode("utf-8", "replace"))
    try:
        api.import_file(book_db, path, "2026-03")
    except InputRefused as refused:
        _check(refused.problems, "t.csv")
    except Refused:
        pass
    count("fuzzed inputs")


_VALID_XLSX = h.usage_workbook(ROW, ["2026-03-03", "VAN", "MATH", 2.5, "R-2", None])


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzz_xlsx_bytes(tmp_path: Path, edits: list[tuple[int, int]]) -> None:
    path = tmp_path / "f.xlsx"
    path.write_bytes(_mutate(_VALID_XLSX, edits))
    problems: list = []
    list(read_rows(path, USAGE, problems))
    _check(problems, "f.xlsx")
    count("fuzzed inputs")


xml_cells = st.one_of(
    cells,
    st.sampled_from(
        [
            FORMULA,
            '<c r="REF" t="e"><v>#N/A</v></c>',
            '<c r="REF" t="s"><v>7</v></c>',
            '<c r="REF" t="b"><v>1</v></c>',
            '<c r="REF" t="d"><v>2026-03-02T00:00:00</v></c>',
            '<c r="REF"><v>1e400</v></c>',
            '<c r="REF"><v>nan</v></c>',
            '<c r="REF"><v>x</v></c>',
            '<c r="REF" s="99"><v>45000</v></c>',
            '<c r="XFD1"><v>1</v></c>',
            "<c/>",
            "<broken",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20),
)


@FUZZ
@given(
    st.lists(st.lists(xml_cells, max_size=8), max_size=6),
    st.sampled_from([None, "A1:XFD1048576", "A1", "junk"]),
    st.lists(st.sampled_from(["A2:A3", "B1:Z9", "ZZ"]), max_size=2),
)
def test_fuzz_xlsx_sheets(tmp_path: Path, table: list[list[object]], dimension: str | None, merged: list[str]) -> None:
    path = tmp_path / "s.xlsx"
    path.write_bytes(h.workbook(h.sheet_xml([h.USAGE_HEADER, *table], dimension=dimension, merged=merged)))
    problems: list = []
    list(read_rows(path, USAGE, problems))
    _check(problems, "s.xlsx")
    count("fuzzed inputs")


book_cells = st.one_of(
    st.sampled_from(
        [
            "HELP",
            "IT",
            "ART",
            "COL",
            "internal",
            "external",
            "2026-01-01",
            "2025-12-31",
            "",
            "60.00",
            "-1",
            "1e30",
            "NaN",
            "x" * 40,
            "a/b",
            "..",
            "2026-13",
            "0",
        ]
    ),
    st.text(max_size=8),
)
book_files = st.fixed_dictionaries(
    {
        name: st.lists(st.lists(book_cells, max_size=7), max_size=5).map(
            lambda t, n=name: _to_csv([(BOOKS / "mini" / n).read_text().splitlines()[0].split(",")] + t)
        )
        for name in ("units.csv", "services.csv", "rates.csv")
    }
)
tomls = st.one_of(
    st.sampled_from(
        [
            'name = "X"\ncurrency = "USD"\n',
            'name = "X"\ncurrency = "XXX"\n',
            'name = 5\ncurrency = ["USD"]\n',
            'name = "X"\ncurrency = "USD"\nfiscal_year_start = 13\n',
            'name = "X"\ncurrency = "USD"\nvariance_threshold = -1.5\n',
            "= =\n",
            "\xff",
        ]
    ),
    st.text(max_size=40),
)


@FUZZ
@given(book_files, tomls)
def test_fuzz_the_book_loader(tmp_path: Path, files: dict[str, str], toml: str) -> None:
    book = tmp_path / "book"
    shutil.rmtree(book, ignore_errors=True)
    book.mkdir()
    (book / "book.toml").write_bytes(toml.encode("utf-8", "replace"))
    for name, text in files.items():
        (book / name).write_bytes(text.encode("utf-8", "replace"))
    try:
        read_book(book)
    except InputRefused as refused:
        for problem in refused.problems:
            assert PROBLEM.match(str(problem)), problem
    count("fuzzed inputs")
