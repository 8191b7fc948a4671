"""Loading a book: every file validated, every problem reported as FILE:LINE: COLUMN,
nothing loaded when any exists, and a reload updating reference data only."""

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import usage_file
from reliability import plain_connection
from sqlalchemy import select

from chargeback import api
from chargeback.book.load import read_book
from chargeback.core.errors import InputRefused
from chargeback.store.schema import Rate, Unit


def refusal(book: Path) -> list[str]:
    with pytest.raises(InputRefused) as caught:
        read_book(book)
    return [str(p) for p in caught.value.problems]


def append(path: Path, lines: str) -> None:
    """Add `lines` (one, or several in a triple-quoted block) to the end of the file."""
    with open(path, "a", encoding="utf-8") as handle:
        for line in lines.splitlines():
            if line.strip():
                handle.write(line.strip() + "\n")


def test_mini_book_reads(mini_book: Path) -> None:
    book = read_book(mini_book)
    assert book.settings.currency == "USD" and book.settings.fiscal_year_start == 7
    assert [u.code for u in book.units][:3] == ["COL", "IT", "FLEET"]
    assert book.units[-1].kind == "external"
    assert len(book.rates) == 4


def test_unknown_column_and_key_are_named(mini_book: Path) -> None:
    (mini_book / "units.csv").write_text("code,name,colour\nIT,Information Technology,blue\n")
    (mini_book / "book.toml").write_text('name = "X"\ncurrency = "USD"\nfiscal_year = 7\n')
    problems = refusal(mini_book)
    assert any(p.startswith("units.csv:1: colour: unknown column") for p in problems)
    assert (
        "book.toml:3: fiscal_year: unknown key; the keys are: name, currency, fiscal_year_start, payment_terms, allocation_method, variance_threshold, invoice_line_limit, sla_missing, cloud"
        in problems
    )


def test_unit_problems(mini_book: Path) -> None:
    # lines 8 to 14
    append(
        mini_book / "units.csv",
        """
        IT,Duplicate,internal,COL
        GHOST,Ghost,internal,NOPE
        A1,Loop A,internal,B1
        B1,Loop B,internal,A1
        bad code,Spaces,internal,
        X2,Bad kind,partner,
        X3,Dates,internal,,,,2026-05-01,2026-04-30
        """,
    )
    problems = refusal(mini_book)
    assert "units.csv:8: code: 'IT' is already used on line 3" in problems
    assert "units.csv:9: parent: 'NOPE' is not a unit code in units.csv" in problems
    assert any(p.startswith("units.csv:10: parent: 'A1' is its own ancestor") for p in problems)
    assert any(p.startswith("units.csv:12: code: 'bad code' is not a valid code") for p in problems)
    assert any(p.startswith("units.csv:13: kind: 'partner' is not allowed") for p in problems)


def test_unit_header_with_all_columns(mini_book: Path) -> None:
    (mini_book / "units.csv").write_text(
        "code,name,kind,parent,manager,email,active_from,active_to,expense_account,revenue_account\n"
        "COL,College,internal,,,,,,,\n"
        "IT,IT,internal,COL,Ann Lee,ann@example.edu,2020-01-01,,6100,4100\n"
        "FLEET,Fleet,internal,COL,,,,,6200,4200\n"
        "ART,Art,internal,COL,,,,2026-03-31,6300,\n"
        "MATH,Math,internal,COL,,,2026-03-01,,,\n"
        "EXT-1,Library,external,,,,,,,\n"
        "eng.civil,Civil Eng,internal,COL,,,,,,\n"
        "Med_Sch,Medicine,internal,COL,,,,,,\n"
        "x2,Lower case,internal,eng.civil,,,2026-13-01,,,\n"
    )
    assert refusal(mini_book) == ["units.csv:10: active_from: '2026-13-01' is not a date: write it as YYYY-MM-DD"]


def test_services_problems(mini_book: Path) -> None:
    # lines 4 to 7
    append(
        mini_book / "services.csv",
        """
        HELP,IT,Again,hour
        SALE,EXT-1,Resale,item
        GONE,NOBODY,Ghost,item
        NOUOM,IT,No unit,
        """,
    )
    problems = refusal(mini_book)
    assert "services.csv:4: code: 'HELP' is already used on line 2" in problems
    assert "services.csv:5: provider: 'EXT-1' is an external unit; a provider must be internal" in problems
    assert "services.csv:6: provider: 'NOBODY' is not a unit code in units.csv" in problems
    assert "services.csv:7: unit_of_measure: is required and is blank" in problems


def test_rate_problems(mini_book: Path) -> None:
    # lines 6 to 12; line 6 overlaps line 2
    append(
        mini_book / "rates.csv",
        """
        HELP,internal,2026-06-01,,55
        VAN,external,2026-01-01,,-1
        VAN,external,2026-02-30,,1
        NOPE,internal,2026-01-01,,1
        HELP,partner,2026-01-01,,1
        HELP,external,2027-01-01,,1.1234567
        HELP,external,2028-01-01,2027-12-01,1
        """,
    )
    problems = refusal(mini_book)
    assert (
        "rates.csv:6: effective_from: overlaps the rate on line 2 for HELP internal: end the earlier range before this one starts"
        in problems
    )
    assert "rates.csv:7: rate: must not be negative" in problems
    assert "rates.csv:8: effective_from: '2026-02-30' is not a date: write it as YYYY-MM-DD" in problems
    assert "rates.csv:9: service: 'NOPE' is not a service code in services.csv" in problems
    assert any(p.startswith("rates.csv:10: customer_class: 'partner' is not allowed") for p in problems)
    assert "rates.csv:11: rate: rate '1.1234567' has more than 6 decimal places" in problems
    assert "rates.csv:12: effective_to: is before effective_from" in problems


def test_recurring_problems(mini_book: Path) -> None:
    (mini_book / "recurring.csv").write_text(
        "service,consumer,quantity,from_period,to_period,description\n"
        "HELP,ART,2,2026-03,,Support seat\n"
        "HELP,IT,1,2026-03,,Self\n"
        "HELP,NOBODY,1,2026-3,,Bad\n"
        "VAN,MATH,0,2026-04,2026-03,Zero\n"
    )
    problems = refusal(mini_book)
    assert problems == [
        "recurring.csv:3: consumer: 'IT' provides HELP: a unit cannot charge itself",
        "recurring.csv:4: from_period: '2026-3' is not a period: write it as YYYY-MM, e.g. 2026-10",
        "recurring.csv:5: quantity: must not be zero",
        "recurring.csv:5: to_period: is before from_period",
    ]


def test_missing_file_and_bad_currency(mini_book: Path) -> None:
    (mini_book / "services.csv").unlink()
    (mini_book / "book.toml").write_text('name = "X"\ncurrency = "XYZ"\n')
    problems = refusal(mini_book)
    assert problems[0] == "book.toml:2: currency: 'XYZ' is not an ISO 4217 currency code (USD, EUR, JPY...)"
    assert any(p.startswith("services.csv:0: -: file is missing") for p in problems)


def test_a_refused_book_loads_nothing(db_url: str, mini_book: Path) -> None:
    append(mini_book / "rates.csv", "HELP,internal,2026-06-01,,55")
    with pytest.raises(InputRefused):
        api.load(db_url, mini_book)
    with plain_connection(db_url) as conn:
        assert conn.execute(select(Unit.code)).all() == []


def test_reload_updates_reference_data_without_touching_posted_entries(
    db_url: str, mini_book: Path, tmp_path: Path
) -> None:
    api.run(db_url, mini_book, tmp_path / "out", through="2026-03")
    before = api.reconcile(db_url, "2026-03").as_json()
    units = (mini_book / "units.csv").read_text()
    units = units.replace("ART,Art Department,internal,COL", "ART,Department of Art,internal,COL")
    (mini_book / "units.csv").write_text(units.replace("code,name,kind,parent", "code,name,kind,parent", 1))
    rates = (
        (mini_book / "rates.csv")
        .read_text()
        .replace("HELP,internal,2026-01-01,,60.00", "HELP,internal,2026-01-01,2026-03-31,60.00")
    )
    (mini_book / "rates.csv").write_text(rates + "HELP,internal,2026-04-01,,65.00\n")
    result = api.load(db_url, mini_book)
    assert (result.units_added, result.units_updated, len(result.book.rates)) == (0, 6, 5)
    with plain_connection(db_url) as conn:
        assert conn.execute(select(Unit.name).where(Unit.code == "ART")).scalar() == "Department of Art"
        assert (
            conn.execute(select(Rate.rate_micro).where(Rate.effective_from == dt.date(2026, 4, 1))).scalar()
            == 65_000_000
        )
    assert api.reconcile(db_url, "2026-03").as_json() == before
    assert api.verify(db_url).ok
    usage_file(tmp_path, "apr.csv", [["2026-04-02", "HELP", "ART", "1", "T-9", "New rate"]])
    assert api.import_file(db_url, tmp_path / "apr.csv", "2026-04").by_provider == {"IT": Decimal("65.00")}


def test_a_unit_with_charges_cannot_disappear(db_url: str, mini_book: Path, tmp_path: Path) -> None:
    api.run(db_url, mini_book, tmp_path / "out", through="2026-03")
    lines = (mini_book / "units.csv").read_text().splitlines()
    (mini_book / "units.csv").write_text("\n".join(line for line in lines if not line.startswith("MATH")) + "\n")
    with pytest.raises(InputRefused) as caught:
        api.load(db_url, mini_book)
    assert [str(p) for p in caught.value.problems] == [
        "units.csv:0: code: 'MATH' has charges but is missing from units.csv: keep it and set active_to instead"
    ]
