"""Undo a mistake before the close: `void import ID` and `void adjustment ID` take back
what no close has posted (the lines stay, marked void), and `adjust --memo` says what
documents show while `--reason` stays internal."""

from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner
from conftest import usage_file
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from chargeback import api
from chargeback.cli import main
from chargeback.core.errors import Refused
from chargeback.store import db


def cli(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--db", url, *args])
    return result.exit_code, result.stdout, result.stderr


def wrong_file(folder: Path, hours: str) -> Path:
    """A help-desk file for Art: 2 tickets of `hours` each (60.00 an hour, internal)."""
    return usage_file(
        folder,
        f"help-{hours}.csv",
        [["2026-03-09", "HELP", "ART", hours, "W-1", "Printer"], ["2026-03-10", "HELP", "ART", hours, "W-2", "Email"]],
    )


def test_a_voided_import_leaves_every_total_and_its_file_can_be_imported_again(imported: str, tmp_path: Path) -> None:
    """The wrong file (10 hours a ticket instead of 1) is voided: its lines stay in the
    database, marked void, and are neither pending nor posted; the corrected file with
    the same references is imported (not skipped as duplicates) and posted."""
    wrong = api.import_file(imported, wrong_file(tmp_path, "10"), "2026-03")
    assert wrong.imported == 2
    assert api.reconcile(imported, "2026-03").pending.usage_lines == 7
    code, out, err = cli(imported, "void", "import", "2", "--reason", "hours keyed as minutes")
    assert (code, err) == (0, "")
    assert out == "void 1: import 2 in 2026-03 voided: 2 usage lines of help-10.csv left out\n"
    assert api.reconcile(imported, "2026-03").pending.usage_lines == 5
    again = api.import_file(imported, wrong_file(tmp_path, "1"), "2026-03")
    assert (again.imported, again.duplicates) == (2, 0)
    api.close(imported, "2026-03", tmp_path / "out")
    rec = api.reconcile(imported, "2026-03")
    # 2026-03.csv: ART 1.5 h help 90.00 + 2 van days 95.00, MATH 1 van day 45.13, FLEET 0.25 h
    # help 15.00, EXT-1 2 h external; the corrected file: ART 2 x 1 h = 120.00
    assert (rec.money(rec.consumers["ART"]), rec.money(rec.internal_revenue)) == ("305.00", "365.13")
    engine = db.connect(imported)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT reference, quantity_micro, void_id FROM usage WHERE reference LIKE 'W-%' ORDER BY id")
        ).all()
    assert rows == [("W-1", 10_000_000, 1), ("W-2", 10_000_000, 1), ("W-1", 1_000_000, None), ("W-2", 1_000_000, None)]
    exceptions = openpyxl.load_workbook(tmp_path / "out" / "2026-03" / "reconciliation.xlsx")["Exceptions"]
    voids = [r for r in exceptions.iter_rows(values_only=True) if r[0] == "import 2"]
    assert [(r[1], r[5], r[8]) for r in voids] == [(1, 2, "hours keyed as minutes")]
    records = [r for r in api.audit_log(imported)[0] if r.command == "void"]
    assert [(r.period, r.outcome) for r in records] == [
        ("2026-03", "done: void 1: import 2 (help-10.csv), 2 usage lines")
    ]
    engine.dispose()


def test_what_is_posted_is_corrected_by_a_new_entry_not_voided(imported: str, tmp_path: Path) -> None:
    api.adjust(imported, "2026-03", "HELP", "ART", "50", "setup")
    api.close(imported, "2026-03", tmp_path / "out", documents=False)
    for kind in ("import", "adjustment"):
        with pytest.raises(Refused, match="is in 2026-03, which is closed: it is posted; a posted charge is corrected"):
            api.void(imported, kind, 1, "too late")
    api.reopen(imported, "2026-03", "one more file")
    with pytest.raises(Refused, match=r"import 1 \(2026-03.csv\): 5 of its usage lines are posted"):
        api.void(imported, "import", 1, "too late")
    with pytest.raises(Refused, match="adjustment 1 is posted"):
        api.void(imported, "adjustment", 1, "too late")
    code, _, err = cli(imported, "void", "import", "7", "--reason", "no such")
    assert (
        code == 1 and err == "refused: import 7: there is no such import (`chargeback status` lists what is pending)\n"
    )
    assert cli(imported, "void", "usage", "1", "--reason", "x")[0] == 2
    assert cli(imported, "void", "import", "1")[0] == 2
    engine = db.connect(imported)
    with pytest.raises(IntegrityError, match="usage lines are append-only"), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO voids (period, kind, target, reason, at, lines) "
                "VALUES ('2026-03', 'import', 1, 'x', '2026-03-31', 5)"
            )
        )
        conn.execute(text("UPDATE usage SET void_id = 1"))  # the database refuses to void a posted line
    engine.dispose()


def test_a_voided_adjustment_is_not_posted_and_cannot_be_voided_twice(loaded: str, tmp_path: Path) -> None:
    api.adjust(loaded, "2026-03", "HELP", "MATH", "50", "credit kiosk time")
    api.adjust(loaded, "2026-03", "HELP", "MATH", "-50", "Reverses adjustment 1, entered in error")
    assert api.reconcile(loaded, "2026-03").pending.adjustments == 2
    code, out, _ = cli(loaded, "void", "adjustment", "1", "--reason", "entered in error")
    assert (code, out) == (0, "void 1: adjustment 1 in 2026-03 voided: HELP -> MATH 50.00 USD left out\n")
    api.void(loaded, "adjustment", 2, "its pair is voided")
    with pytest.raises(Refused, match=r"adjustment 2 was voided already \(void 2, "):
        api.void(loaded, "adjustment", 2, "again")
    rec = api.reconcile(loaded, "2026-03")
    assert (rec.pending.adjustments, rec.pending.adjustments_minor) == (0, 0)
    assert api.close(loaded, "2026-03", tmp_path / "out").posted == 0


def test_an_external_invoice_shows_the_memo_never_the_reason(imported: str, tmp_path: Path) -> None:
    """The +50 / -50 pair on the outside customer's invoice: each line shows its memo
    ("Adjustment" when none is given); the internal reasons appear only in the
    reconciliation workbook."""
    code, out, _ = cli(
        imported, "adjust", "2026-03", "--service", "HELP", "--consumer", "EXT-1", "--amount", "50",
        "--reason", "kiosk hours from the old sheet", "--memo", "Kiosk support, March",
    )  # fmt: skip
    assert code == 0 and out.endswith("HELP -> EXT-1 50.00 USD\n")
    api.adjust(imported, "2026-03", "HELP", "EXT-1", "-50", "Reverses adjustment 1, entered in error")
    assert cli(imported, "adjust", "2026-03", "--service", "HELP", "--consumer", "EXT-1", "--amount", "1",
               "--reason", "x", "--memo", "  ")[0] == 1  # fmt: skip
    api.close(imported, "2026-03", tmp_path / "out")
    invoice = (tmp_path / "out" / "2026-03" / "invoices" / "EXT-1.html").read_text()
    assert "Kiosk support, March" in invoice and "<td>Adjustment <span" in invoice
    assert "Reverses adjustment" not in invoice and "old sheet" not in invoice
    exceptions = openpyxl.load_workbook(tmp_path / "out" / "2026-03" / "reconciliation.xlsx")["Exceptions"]
    memos = [r[8] for r in exceptions.iter_rows(values_only=True) if r[0] in ("adjustment", "credit, adjustment")]
    assert memos == [
        "Kiosk support, March: kiosk hours from the old sheet",
        "Adjustment: Reverses adjustment 1, entered in error",
    ]
