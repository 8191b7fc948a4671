"""Importing usage (contract section 3): every rule, every error listed with file, line
and column, the file refused whole, duplicates skipped and counted."""

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import USAGE_HEADER, csv_rows, import_rows, usage_file
from openpyxl import Workbook
from reliability import plain_connection
from sqlalchemy import func, select

from chargeback import api
from chargeback.core.errors import InputRefused, Refused
from chargeback.store.schema import Usage

D = Decimal


def stored(url: str) -> int:
    with plain_connection(url) as conn:
        count = conn.execute(select(func.count()).select_from(Usage)).scalar()
    return count


def refused(url: str, path: Path, period: str) -> list[str]:
    with pytest.raises(InputRefused) as caught:
        api.import_file(url, path, period)
    assert str(caught.value).startswith("import refused: ")
    assert str(caught.value).endswith(" errors, nothing imported") or str(caught.value).endswith(
        " error, nothing imported"
    )
    return [str(p) for p in caught.value.problems]


def test_import_counts_and_totals_by_provider(loaded: str) -> None:
    book_usage = Path(__file__).parent / "books" / "mini" / "usage" / "2026-03.csv"
    result = api.import_file(loaded, book_usage, "2026-03")
    assert (result.lines_read, result.imported, result.duplicates, result.late, result.credits) == (5, 5, 0, 0, 0)
    # VAN: 1 x 45.125 = 45.13 (half up) and 2 x 47.5 = 95.00 after the mid-month rate change
    assert result.by_provider == {"FLEET": D("140.13"), "IT": D("285.00")}
    again = api.import_file(loaded, book_usage, "2026-03")
    assert (again.lines_read, again.imported, again.duplicates) == (5, 0, 5)
    assert stored(loaded) == 5


def test_bom_csv_and_codes_with_dots_underscores_and_lower_case(db_url: str, mini_book: Path, tmp_path: Path) -> None:
    with open(mini_book / "units.csv", "a") as handle:
        handle.write(
            "eng.civil,Civil Engineering,internal,COL\nMed_Sch,Medicine,internal,COL\nlab-3,Lab three,internal,COL\n"
        )
    api.load(db_url, mini_book)
    rows = csv_rows("""
        2026-03-02,HELP,eng.civil,0.335,B-1,float trap
        2026-03-03,HELP,Med_Sch,1,B-2,
        2026-03-04,HELP,lab-3,0.000125,B-3,tiny
    """)
    path = usage_file(tmp_path, "bom.csv", rows, bom=True)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    result = api.import_file(db_url, path, "2026-03")
    # 0.335 x 60 = 20.10; 1 x 60 = 60.00; 0.000125 x 60 = 0.0075 -> 0.01
    assert result.by_provider == {"IT": D("80.11")}


def test_xlsx_with_date_cells_and_decimal_quantities(loaded: str, tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    sheet.append(USAGE_HEADER)
    sheet.append([dt.date(2026, 3, 20), "VAN", "ART", 10.1, "X-1", "Exhibit"])
    sheet.append([dt.datetime(2026, 3, 21), "HELP", "MATH", 3, "X-2", None])
    sheet.append(["2026-03-22", "HELP", "EXT-1", "0.25", "X-3", "text cells too"])
    book.save(tmp_path / "march.xlsx")
    result = api.import_file(loaded, tmp_path / "march.xlsx", "2026-03")
    # 10.1 x 47.5 = 479.75; 3 x 60 = 180.00; 0.25 x 90 (external) = 22.50
    assert result.by_provider == {"FLEET": D("479.75"), "IT": D("202.50")}
    assert result.imported == 3


@pytest.mark.parametrize("suffix", ["csv", "xlsx"])
def test_columns_in_any_order_and_without_descriptions_are_stored_by_their_names(
    loaded: str, tmp_path: Path, suffix: str
) -> None:
    """A file's columns are read by their names in the header, in whatever order, and a
    file without the optional description column stores its lines without one; a bad
    cell is still named by its column."""
    header = ["reference", "quantity", "consumer", "date", "service"]
    rows = [["R-1", " 2.5 ", "MATH", "2026-03-05", "HELP"], ["R-2", "1", "ART", "2026-03-06", "VAN"]]
    path = tmp_path / f"reordered.{suffix}"
    if suffix == "csv":
        path.write_text("\n".join(",".join(row) for row in [header, *rows]) + "\n")
    else:
        book = Workbook()
        for row in [header, *rows]:
            book.active.append(row)
        book.save(path)
    result = api.import_file(loaded, path, "2026-03")
    assert result.by_provider == {"FLEET": D("45.13"), "IT": D("150.00")}  # 1 x 45.125; 2.5 x 60
    with plain_connection(loaded) as conn:
        lines = conn.execute(
            select(
                Usage.line,
                Usage.date,
                Usage.service,
                Usage.consumer,
                Usage.quantity_micro,
                Usage.reference,
                Usage.description,
            ).order_by(Usage.line)
        ).all()
    assert [tuple(line) for line in lines] == [
        (2, dt.date(2026, 3, 5), "HELP", "MATH", 2_500_000, "R-1", None),
        (3, dt.date(2026, 3, 6), "VAN", "ART", 1_000_000, "R-2", None),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("reference,quantity,consumer,date,service\nR-3,lots,MATH,2026-03-07,HELP\n")
    assert refused(loaded, bad, "2026-03") == ["bad.csv:2: quantity: " + refused_quantity_message(loaded, tmp_path)]


def refused_quantity_message(loaded: str, tmp_path: Path) -> str:
    """What a non-numeric quantity is refused with, from a file in the usual order."""
    path = usage_file(tmp_path, "usual.csv", [["2026-03-07", "HELP", "MATH", "lots", "R-4", ""]])
    [problem] = refused(loaded, path, "2026-03")
    prefix = "usual.csv:2: quantity: "
    assert problem.startswith(prefix)
    return problem[len(prefix) :]


def test_every_rule_is_checked_and_the_file_is_refused_whole(loaded: str, tmp_path: Path) -> None:
    # the file's line 2 is fine; each line after it breaks one rule
    rows = csv_rows("""
        2026-03-02,HELP,ART,1,OK-1,fine
        2026-04-01,HELP,ART,1,F-1,after period
        2026-03-32,HELP,ART,1,F-2,
        2026-03-02,NOPE,ART,1,F-3,
        2026-03-02,HELP,NOBODY,1,F-4,
        2026-03-02,HELP,IT,1,F-5,self
        2026-03-02,HELP,ART,0,F-6,
        2026-03-02,HELP,ART,"1,5",F-7,
        2026-03-02,HELP,ART,1,,
        2026-03-02,VAN,EXT-1,1,F-9,no external rate
        2025-12-31,HELP,ART,1,F-10,no rate yet
        2026-03-02,HELP,ART,1.0000001,F-11,
        2026-03-02,HELP,ART,NaN,F-12,
        2026-03-02,HELP,ART,1e30,F-13,
    """)
    path = usage_file(tmp_path, "bad.csv", rows)
    problems = refused(loaded, path, "2026-03")
    assert problems == [
        "bad.csv:3: date: 2026-04-01 is after the end of period 2026-03: import it into its own period",
        "bad.csv:4: date: '2026-03-32' is not a date: write it as YYYY-MM-DD",
        "bad.csv:5: service: 'NOPE' is not a service of the book",
        "bad.csv:6: consumer: 'NOBODY' is not a unit of the book",
        "bad.csv:7: consumer: 'IT' provides HELP: a unit cannot charge itself",
        "bad.csv:8: quantity: must not be zero",
        "bad.csv:9: quantity: quantity '1,5' is not a plain decimal number (digits with '.' as the separator)",
        "bad.csv:10: reference: is required and is blank",
        "bad.csv:11: service: no external rate of VAN is in force on 2026-03-02: add one to rates.csv",
        "bad.csv:12: service: no internal rate of HELP is in force on 2025-12-31: add one to rates.csv",
        "bad.csv:13: quantity: quantity '1.0000001' has more than 6 decimal places",
        "bad.csv:14: quantity: quantity 'NaN' is not a plain decimal number (digits with '.' as the separator)",
        "bad.csv:15: quantity: quantity '1e30' is not a plain decimal number (digits with '.' as the separator)",
    ]
    assert stored(loaded) == 0


def test_header_problems(loaded: str, tmp_path: Path) -> None:
    path = tmp_path / "cols.csv"
    path.write_text("date,service,customer,quantity,reference,notes\n2026-03-02,HELP,ART,1,R-1,x\n")
    assert refused(loaded, path, "2026-03") == [
        "cols.csv:1: consumer: required column is missing from the header",
        "cols.csv:1: customer: unknown column; the columns are: date, service, consumer, quantity, reference, description",
        "cols.csv:1: notes: unknown column; the columns are: date, service, consumer, quantity, reference, description",
    ]
    semi = tmp_path / "semi.csv"
    semi.write_text("date;service;consumer;quantity;reference\n2026-03-02;HELP;ART;1;R-1\n")
    assert refused(loaded, semi, "2026-03") == [
        "semi.csv:1: -: the file is separated by ';': save it as comma-separated CSV"
    ]
    latin = tmp_path / "latin.csv"
    latin.write_bytes(
        "date,service,consumer,quantity,reference,description\n2026-03-02,HELP,ART,1,R-1,Caf\xe9\n".encode("latin-1")
    )
    assert refused(loaded, latin, "2026-03") == ["latin.csv:2: description: not UTF-8 text: save the file as CSV UTF-8"]


def test_duplicates_and_conflicting_duplicates(loaded: str, tmp_path: Path) -> None:
    import_rows(loaded, tmp_path, "2026-03-02,HELP,ART,1,T-1,x", name="a.csv")
    result = import_rows(
        loaded,
        tmp_path,
        """
        2026-03-02,HELP,ART,1.000,T-1,"same line, other description"
        2026-03-03,HELP,ART,2,T-2,new
        2026-03-03,HELP,ART,2,T-2,repeated in the file
        2026-03-03,VAN,ART,2,T-1,"same reference, other service"
        """,
        name="b.csv",
    )
    assert (result.imported, result.duplicates) == (2, 2)
    rows = csv_rows("""
        2026-03-05,HELP,ART,1,T-1,other date
        2026-03-06,HELP,MATH,1,T-3,
        2026-03-06,HELP,ART,1,T-3,"other consumer, same file"
    """)
    conflict = usage_file(tmp_path, "c.csv", rows)
    assert refused(loaded, conflict, "2026-03") == [
        "c.csv:2: reference: 'T-1' of HELP was imported before with another date, consumer or quantity: give the correction a new reference",
        "c.csv:4: reference: 'T-3' of HELP is also on line 3 with other values",
    ]
    assert stored(loaded) == 3


def test_late_charge_and_credit_are_accepted_and_priced_at_their_own_date(loaded: str, tmp_path: Path) -> None:
    rows = """
        2026-03-10,VAN,MATH,1,L-1,"late, old rate"
        2026-04-02,VAN,MATH,-1,C-1,credit
    """
    result = import_rows(loaded, tmp_path, rows, "2026-04", name="apr.csv")
    assert (result.late, result.credits) == (1, 1)
    assert result.by_provider == {"FLEET": D("-2.37")}  # 45.13 - 47.50


def test_inactive_consumer_is_refused(db_url: str, mini_book: Path, tmp_path: Path) -> None:
    units = (
        (mini_book / "units.csv")
        .read_text()
        .replace("code,name,kind,parent", "code,name,kind,parent,active_from,active_to")
    )
    units = (
        "\n".join(
            line
            + (
                ",2026-03-10,2026-03-20"
                if line.startswith("MATH")
                else ",,"
                if line and not line.startswith("code")
                else ""
            )
            for line in units.splitlines()
        )
        + "\n"
    )
    (mini_book / "units.csv").write_text(units)
    api.load(db_url, mini_book)
    path = usage_file(tmp_path, "m.csv", csv_rows("2026-03-21,HELP,MATH,1,I-1,\n2026-03-20,HELP,MATH,1,I-2,"))
    assert refused(db_url, path, "2026-03") == [
        "m.csv:2: date: 2026-03-21 is outside the active dates of MATH (2026-03-10 to 2026-03-20)"
    ]


def test_import_into_a_closed_period_is_refused(loaded: str, tmp_path: Path) -> None:
    import_rows(loaded, tmp_path, "2026-03-02,HELP,ART,1,T-1,", name="a.csv")
    api.close(loaded, "2026-03", tmp_path / "out")
    late = usage_file(tmp_path, "b.csv", csv_rows("2026-03-03,HELP,ART,1,T-2,"))
    with pytest.raises(Refused, match="period 2026-03 is closed"):
        api.import_file(loaded, late, "2026-03")
    assert stored(loaded) == 1


def test_broken_xlsx_is_refused_with_its_name(loaded: str, tmp_path: Path) -> None:
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"PK\x03\x04 not really a workbook")
    assert refused(loaded, path, "2026-03") == [
        "broken.xlsx:0: -: is damaged (not a complete XLSX archive): save it again from the spreadsheet program"
    ]


def imports_of(url: str) -> list[tuple[int, int, int]]:
    from chargeback.store.schema import Import

    with plain_connection(url) as conn:
        found = [
            tuple(r)
            for r in conn.execute(select(Import.lines_read, Import.imported, Import.duplicates).order_by(Import.id))
        ]
    return found


def test_a_file_of_new_lines_with_repeated_references_is_counted_once(loaded: str, tmp_path: Path) -> None:
    """Lines imported before and lines repeated in the file, after new ones: the new
    lines are stored once, the others counted as duplicates."""
    assert import_rows(loaded, tmp_path, "2026-03-02,HELP,ART,1,R-9,earlier", name="first.csv").imported == 1
    rows = [["2026-03-03", "HELP", "MATH", str(n), f"N-{n}", "new"] for n in range(1, 6)]
    repeated = csv_rows("2026-03-02,HELP,ART,1,R-9,earlier\n2026-03-03,HELP,MATH,2,N-2,new")
    result = import_rows(loaded, tmp_path, rows + repeated, name="again.csv")
    assert (result.lines_read, result.imported, result.duplicates) == (7, 5, 2)  # R-9 stored, N-2 twice
    assert stored(loaded) == 6
    assert imports_of(loaded) == [(1, 1, 0), (7, 5, 2)]
    # HELP is 60.00 a unit for MATH: 1+2+3+4+5 units
    assert result.by_provider == {"IT": D("900.00")}


def test_a_problem_after_many_valid_lines_refuses_the_file_and_keeps_nothing(loaded: str, tmp_path: Path) -> None:
    rows = [["2026-03-03", "HELP", "MATH", "1", f"N-{n}", "new"] for n in range(1, 6)]
    path = usage_file(tmp_path, "late-problem.csv", rows + [["2026-03-04", "NOPE", "MATH", "1", "N-6", ""]])
    assert refused(loaded, path, "2026-03") == ["late-problem.csv:7: service: 'NOPE' is not a service of the book"]
    assert stored(loaded) == 0
    assert imports_of(loaded) == []


def plain_summary(url: str, rows: list[list[str]], period: str) -> dict[str, object]:
    """An import's figures worked out a line at a time in plain Python: each line priced
    at the base rate in force on its date (`RateTable.find`), rounded half up to the
    cent with Decimal, added up by provider."""
    from chargeback.book.snapshot import load_reference
    from chargeback.core.money import quantize
    from chargeback.store.db import connect

    engine = connect(url)
    with engine.connect() as conn:
        reference = load_reference(conn)
    engine.dispose()
    first_day = dt.date.fromisoformat(period + "-01")
    totals: dict[str, Decimal] = {}
    late = credits = 0
    for day_text, service, consumer, quantity_text, _, _ in rows:
        day, quantity = dt.date.fromisoformat(day_text), Decimal(quantity_text)
        rate = reference.rates.find(service, reference.units[consumer].kind, day)
        provider = reference.services[service].provider
        totals[provider] = totals.get(provider, Decimal(0)) + quantize(quantity * rate.rate, reference.digits)
        late += day < first_day
        credits += quantity < 0
    return {"imported": len(rows), "late": late, "credits": credits, "by_provider": dict(sorted(totals.items()))}


def test_the_summary_is_the_plain_computation_to_the_cent(loaded: str, tmp_path: Path) -> None:
    """A late line, a credit, an external consumer and a rate that changes mid-month."""
    rows = [
        ["2026-02-27", "HELP", "MATH", "1.5", "S-1", "late"],
        ["2026-03-03", "VAN", "ART", "-2", "S-2", "credit"],
        ["2026-03-09", "HELP", "EXT-1", "3", "S-3", "external"],
        ["2026-03-20", "VAN", "ART", "0.000333", "S-4", ""],
    ]
    result = import_rows(loaded, tmp_path, rows, name="s.csv")
    assert {k: getattr(result, k) for k in ("imported", "late", "credits", "by_provider")} == plain_summary(
        loaded, rows, "2026-03"
    )
    assert (result.late, result.credits, result.imported) == (1, 1, 4)


@pytest.mark.slow
def test_200000_generated_lines_add_up_to_the_plain_computation(loaded: str, tmp_path: Path) -> None:
    """Every figure of the summary of a big file, late lines, credits, six-digit
    fractions and both rates of VAN among them, equals the line-by-line computation."""
    services = [("HELP", "MATH"), ("HELP", "EXT-1"), ("VAN", "ART"), ("VAN", "MATH")]
    rows = []
    for n in range(1, 200_001):
        service, consumer = services[n % 4]
        day = f"2026-02-{20 + n % 9:02d}" if n % 11 == 0 else f"2026-03-{1 + n % 31:02d}"
        quantity = f"{'-' if n % 97 == 0 else ''}{n % 1000}.{(n * 7919) % 1_000_000:06d}"
        rows.append([day, service, consumer, quantity, f"G-{n}", f"line {n}"])
    result = import_rows(loaded, tmp_path, rows, name="big.csv")
    assert {k: getattr(result, k) for k in ("imported", "late", "credits", "by_provider")} == plain_summary(
        loaded, rows, "2026-03"
    )
    assert result.late > 0 and result.credits > 0
    assert stored(loaded) == 200_000


def test_a_big_file_is_imported_to_the_cent(loaded: str, tmp_path: Path) -> None:
    """25,000 lines, late lines and credits among them: every line stored once."""
    rows = [
        [
            "2026-03-02" if n % 7 else "2026-02-27",
            "HELP",
            "MATH" if n % 3 else "EXT-1",
            "-0.5" if n % 1000 == 0 else "1.25",
            f"B-{n}",
            f"line {n}",
        ]
        for n in range(1, 25_001)
    ]
    result = import_rows(loaded, tmp_path, rows, name="big.csv")
    assert (result.lines_read, result.imported, result.late, result.credits) == (25_000, 25_000, 3571, 25)
    # HELP: 60.00 internal, 90.00 external a unit; 1.25 x 60 = 75.00 and 1.25 x 90 = 112.50 a line
    internal = [r for n, r in enumerate(rows, 1) if n % 3]
    external = [r for n, r in enumerate(rows, 1) if not n % 3]
    expected = sum(D(r[3]) * 60 for r in internal) + sum(D(r[3]) * 90 for r in external)
    assert result.by_provider == {"IT": expected}
    assert stored(loaded) == 25_000
    again = import_rows(loaded, tmp_path, rows[:10], name="again.csv")
    assert (again.imported, again.duplicates) == (0, 10)


def test_problems_far_down_a_big_file_name_their_lines(loaded: str, tmp_path: Path) -> None:
    rows = [["2026-03-02", "HELP", "MATH", "1", f"C-{n}", ""] for n in range(1, 12_001)]
    rows[10_003][1] = "NOPE"  # line 10,005 of the file, counting the header
    rows[10_007][2] = "IT"  # IT provides HELP
    assert refused(loaded, usage_file(tmp_path, "second.csv", rows), "2026-03") == [
        "second.csv:10005: service: 'NOPE' is not a service of the book",
        "second.csv:10009: consumer: 'IT' provides HELP: a unit cannot charge itself",
    ]
    assert stored(loaded) == 0


def test_six_fractional_digits_are_kept_and_a_seventh_is_refused(loaded: str, tmp_path: Path) -> None:
    rows = """
        2026-03-02,HELP,MATH,2.123456,Q-1,
        2026-03-02,HELP,MATH,-0.000001,Q-2,
        2026-03-02,HELP,MATH,1.0000000,Q-3,zeros are fine
    """
    result = import_rows(loaded, tmp_path, rows, name="six.csv")
    assert result.by_provider == {"IT": D("127.41") + D("-0.00") + D("60.00")}  # 2.123456 x 60 = 127.40736
    with plain_connection(loaded) as conn:
        quantities = conn.execute(select(Usage.quantity_micro).order_by(Usage.line)).scalars().all()
    assert quantities == [2_123_456, -1, 1_000_000]
    seven = usage_file(tmp_path, "seven.csv", csv_rows("2026-03-02,HELP,MATH,2.1234567,Q-4,"))
    assert refused(loaded, seven, "2026-03") == [
        "seven.csv:2: quantity: quantity '2.1234567' has more than 6 decimal places"
    ]


def test_digits_other_than_ascii_are_refused(loaded: str, tmp_path: Path) -> None:
    """The contract's digits are ASCII: Arabic-Indic digits are not a quantity, nor a date."""
    path = usage_file(
        tmp_path,
        "arabic.csv",
        [
            ["2026-03-02", "HELP", "MATH", "\u0661\u0662", "A-1", ""],
            ["\u0662\u0660\u0662\u0666-03-02", "HELP", "MATH", "1", "A-2", ""],
        ],
    )
    assert refused(loaded, path, "2026-03") == [
        "arabic.csv:2: quantity: quantity '\u0661\u0662' is not a plain decimal number (digits with '.' as the separator)",
        "arabic.csv:3: date: '\u0662\u0660\u0662\u0666-03-02' is not a date: write it as YYYY-MM-DD",
    ]


def test_lines_are_counted_across_quoted_line_breaks(loaded: str, tmp_path: Path) -> None:
    """A quoted description over two lines: a problem after it names the file's line,
    as a spreadsheet program shows it, not the row's number."""
    path = tmp_path / "breaks.csv"
    path.write_text(
        f"{','.join(USAGE_HEADER)}\n"
        '2026-03-02,HELP,MATH,1,Q-1,"two\nlines"\n'
        '2026-03-02,HELP,MATH,1,Q-2,"three\r\nlines\nhere"\n'
        "2026-03-02,NOPE,MATH,1,Q-3,\n",
        newline="",
    )
    assert refused(loaded, path, "2026-03") == ["breaks.csv:7: service: 'NOPE' is not a service of the book"]


def test_rows_out_of_order_in_a_sheet_are_refused(loaded: str, tmp_path: Path) -> None:
    """openpyxl's public reader skips a row numbered below the one before it: the sheet's
    XML is looked at so that it is refused rather than lost."""
    import hostile_files as h

    row = '<row r="{n}"><c r="A{n}" t="inlineStr"><is><t>2026-03-02</t></is></c></row>'
    path = tmp_path / "order.xlsx"
    path.write_bytes(h.workbook(h.sheet_xml([h.USAGE_HEADER], extra_rows=row.format(n=3) + row.format(n=2))))
    assert refused(loaded, path, "2026-03") == [
        "order.xlsx:2: -: the sheet's rows are out of order: save the file again from a spreadsheet program"
    ]
