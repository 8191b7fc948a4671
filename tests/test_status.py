"""See where things stand: `status` (every period: state, what waits, last close and seal,
documents), `imports PERIOD` (each file: sha256, lines, amount, when, who) and `charges
--unit` (one unit's posted charges, as text, JSON or a workbook)."""

import json
from decimal import Decimal
from pathlib import Path

import openpyxl
from click.testing import CliRunner
from conftest import usage_file

from chargeback import api
from chargeback.cli import main
from chargeback.core.digests import sha256_of


def cli(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--db", url, *args])
    return result.exit_code, result.stdout, result.stderr


def test_status_of_a_closed_a_reopened_and_an_open_period(imported: str, mini_book: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    api.close(imported, "2026-03", out)
    api.import_file(imported, mini_book / "usage" / "2026-04.csv", "2026-04")
    api.adjust(imported, "2026-04", "HELP", "ART", "12.50", "setup fee")
    api.adjust(imported, "2026-04", "HELP", "MATH", "99", "wrong")
    api.void(imported, "adjustment", 2, "typed for the wrong unit")
    extra = usage_file(tmp_path, "extra.csv", [["2026-03-25", "HELP", "MATH", "2", "T-9", ""]])
    api.reopen(imported, "2026-03", "a late file")
    api.import_file(imported, extra, "2026-03")
    code, text, _ = cli(imported, "status", "--out", str(out), "--json")
    assert code == 0
    march, april = json.loads(text)["periods"]
    assert march["state"] == "reopened" and march["closes"] == 1
    # waiting: T-9, 2 h of help at 60.00; posted at the first close: 425.13 in 5 entries
    assert march["pending"] == {
        "usage_lines": 1,
        "usage_amount": "120.00",
        "usage_problem": None,
        "adjustments": 0,
        "adjustments_amount": "0.00",
    }
    assert march["posted"] == {"entries": 5, "amount": "425.13"}
    seal = api.seals(imported)[0]
    assert march["last_close"]["seal"] == {"entry": seal.entry, "journal_hash": seal.hash, "signed": False}
    assert march["documents"]["written"] and march["documents"]["current"] is None  # open again
    # April: 60.00 - 30.00 + 142.50 of usage; the voided 99 is not waiting
    assert april["state"] == "open" and april["last_close"] is None
    assert april["pending"]["usage_lines"] == 3 and april["pending"]["usage_amount"] == "172.50"
    assert (april["pending"]["adjustments"], april["pending"]["adjustments_amount"]) == (1, "12.50")
    assert (april["voids"], april["documents"]["written"]) == (1, False)
    api.close(imported, "2026-03", out)
    (march_again,) = api.status(imported, "2026-03", out)
    assert (march_again.state, march_again.pending.usage_lines, march_again.posted_minor) == ("closed", 0, 54513)
    assert march_again.documents is not None and march_again.documents.current is True
    code, text, _ = cli(imported, "status", "2026-04", "--out", str(out))
    assert text.splitlines()[:2] == [
        "2026-04  open",
        "  waiting: 3 usage lines (172.50 USD), 1 adjustments (12.50 USD)",
    ]
    assert cli(imported, "status", "2026-07")[:2] == (1, "")
    assert cli(imported, "status", "2026-7")[0] == 2


def test_imports_list_each_file_with_its_amount_and_who(loaded: str, mini_book: Path, tmp_path: Path) -> None:
    march = mini_book / "usage" / "2026-03.csv"
    api.import_file(loaded, march, "2026-03")
    api.import_file(loaded, march, "2026-03")  # every line a duplicate
    wrong = usage_file(tmp_path, "wrong.csv", [["2026-03-25", "HELP", "MATH", "20", "T-9", ""]])
    api.import_file(loaded, wrong, "2026-03")
    api.void(loaded, "import", 3, "20 hours should be 2")
    listed = api.imports(loaded, "2026-03")
    assert [(i.id, i.imported, i.duplicates, i.state, i.amount_minor) for i in listed.imports] == [
        (1, 5, 0, "pending", 42513),
        (2, 0, 5, "nothing imported", 0),
        (3, 1, 0, "voided", None),
    ]
    api.close(loaded, "2026-03", tmp_path / "out", documents=False)
    code, text, _ = cli(loaded, "imports", "2026-03", "--json")
    found = json.loads(text)
    first = found["imports"][0]
    assert (first["file"], first["sha256"], first["lines_read"]) == (str(march), sha256_of(march), 5)
    assert (first["state"], first["amount"], first["user"]) == ("posted", "425.13", api.audit_log(loaded)[0][0].user)
    assert found["imports"][2]["void"] == {"id": 1, "reason": "20 hours should be 2"}
    code, text, _ = cli(loaded, "imports", "2026-03")
    assert code == 0 and "2026-03.csv  5/5 lines (0 duplicates)  425.13 USD  posted" in text


def test_one_units_charges_over_a_fiscal_year(loaded: str, mini_book: Path, tmp_path: Path) -> None:
    api.run(loaded, mini_book, tmp_path / "out")
    code, text, _ = cli(loaded, "charges", "--unit", "ART", "--fiscal-year", "2026", "--json")
    found = json.loads(text)
    # March: 1.5 h help at 60.00 and 2 van days at 47.50; April: the credit of 0.5 h
    assert [(c["period"], c["service"], c["quantity"], c["rate"], c["amount"]) for c in found["charges"]] == [
        ("2026-03", "HELP", "1.5", "60", "90.00"),
        ("2026-03", "VAN", "2", "47.5", "95.00"),
        ("2026-04", "HELP", "-0.5", "60", "-30.00"),
    ]
    assert (found["from"], found["through"], found["total"]) == ("2025-07", "2026-06", "155.00")
    path = tmp_path / "art.xlsx"
    assert cli(loaded, "charges", "--unit", "ART", "--fiscal-year", "2026", "--xlsx", str(path))[0] == 0
    sheet = openpyxl.load_workbook(path)["Charges"]
    rows = [r for r in sheet.iter_rows(min_row=4, values_only=True) if r[1] is not None]
    assert [(r[0], r[8], r[10], r[11]) for r in rows] == [
        ("2026-03", 1.5, 60, 90),
        ("2026-03", 2, 47.5, 95),
        ("2026-04", -0.5, 60, -30),
    ]
    amount = sheet.cell(4, 12)
    assert amount.data_type == "n" and "$" in amount.number_format
    assert sheet.print_title_rows == "$3:$3"
    total = sheet.cell(7, 12)
    assert total.value == "=SUM(L4:L6)"
    assert Decimal(str(openpyxl.load_workbook(path, data_only=True)["Charges"].cell(7, 12).value)) == Decimal(155)
    _, text, _ = cli(loaded, "charges", "--unit", "ART", "--period", "2026-04")
    assert text.splitlines()[-1] == "total 1 charges to ART: -30.00 USD"
    assert cli(loaded, "charges", "--unit", "ART")[0] == 2
    assert cli(loaded, "charges", "--unit", "ART", "--period", "2026-04", "--fiscal-year", "2026")[0] == 2
    assert cli(loaded, "charges", "--unit", "NOPE", "--period", "2026-04")[:3:2] == (
        1,
        "refused: --unit: 'NOPE' is not a unit of the book\n",
    )
