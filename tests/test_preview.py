"""Preview: everything a close does, in a transaction that is rolled back; drafts in
`DIR/YYYY-MM-draft/`; and a later close gives the same figures as the last preview."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner
from conftest import usage_file
from sqlalchemy import select
from test_close import entries

from chargeback import api
from chargeback.cli import main
from chargeback.core.errors import Refused
from chargeback.ledger.journal import head
from chargeback.store import db
from chargeback.store.schema import Period


def setup_march(url: str, mini_book: Path, tmp_path: Path) -> None:
    """Usage, a recurring fee and an adjustment: everything a close posts."""
    (mini_book / "recurring.csv").write_text(
        "service,consumer,quantity,from_period,to_period,description\nVAN,MATH,1,2026-03,,Reserved van\n"
    )
    api.load(url, mini_book)
    api.import_file(url, mini_book / "usage" / "2026-03.csv", "2026-03")
    api.adjust(url, "2026-03", "HELP", "ART", "-5.00", "Goodwill")


def state(url: str) -> tuple[object, ...]:
    engine = db.connect(url)
    with engine.connect() as conn:
        periods = [tuple(r) for r in conn.execute(select(Period.period, Period.status, Period.closed_at))]
        result = (head(conn), periods, entries(url))
    engine.dispose()
    return result


def rows_of(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def cells(path: Path) -> dict[str, list[tuple[object, ...]]]:
    book = openpyxl.load_workbook(path)
    return {
        s.title: [
            tuple(str(v).removeprefix("DRAFT - ") if isinstance(v, str) else v for v in row)
            for row in s.iter_rows(values_only=True)
        ]
        for s in book.worksheets
    }


def test_preview_posts_nothing_and_writes_drafts(db_url: str, mini_book: Path, tmp_path: Path) -> None:
    setup_march(db_url, mini_book, tmp_path)
    before = state(db_url)
    result = api.preview(db_url, "2026-03", tmp_path / "out")
    assert result.posted == 7 and result.reconciliation.balanced
    assert result.reconciliation.internal_spend == 24513 + 4513 - 500
    assert state(db_url) == before  # nothing posted, nothing locked, the journal head unmoved
    assert api.verify(db_url).ok
    folder = tmp_path / "out" / "2026-03-draft"
    assert result.folder == folder
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["2026-03-draft"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["draft"] is True and manifest["status"] == "open" and manifest["closed_at"] is None
    assert {f["path"] for f in manifest["files"]} >= {"journal.csv", "variance.xlsx"}
    assert len(rows_of(folder / "journal.csv")) == 1 + 2 * 7
    # any number of times: the same drafts again, and still nothing kept
    again = api.preview(db_url, "2026-03", tmp_path / "out")
    assert again.reconciliation.as_json() == result.reconciliation.as_json()
    assert state(db_url) == before
    assert api.reconcile(db_url, "2026-03").status == "open"


def test_a_close_after_a_preview_gives_the_same_figures(db_url: str, mini_book: Path, tmp_path: Path) -> None:
    setup_march(db_url, mini_book, tmp_path)
    api.close(db_url, "2026-03", tmp_path / "out")
    api.import_file(db_url, mini_book / "usage" / "2026-04.csv", "2026-04")
    api.adjust(db_url, "2026-04", "VAN", "EXT-1", "12.50", "Parking", "P-1")
    api.preview(db_url, "2026-04", tmp_path / "out")  # a first look...
    api.adjust(db_url, "2026-04", "HELP", "MATH", "-10.00", "Duplicate ticket")  # ...a fix...
    preview = api.preview(db_url, "2026-04", tmp_path / "out")  # ...and the last preview
    draft = shutil.copytree(tmp_path / "out" / "2026-04-draft", tmp_path / "kept-draft")
    closed = api.close(db_url, "2026-04", tmp_path / "out")
    final = tmp_path / "out" / "2026-04"
    # the close removes the period's drafts, out of date once it is closed
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["2026-03", "2026-04"]

    assert closed.posted == preview.posted == 6
    expected = preview.reconciliation.as_json() | {"status": "closed"}
    assert closed.reconciliation.as_json() == expected == api.reconcile(db_url, "2026-04").as_json()
    assert closed.review == preview.review
    draft_manifest = json.loads((draft / "manifest.json").read_text())
    final_manifest = json.loads((final / "manifest.json").read_text())
    assert draft_manifest["totals"] == final_manifest["totals"]
    # the journal as the GL gets it: the same rows, entry numbers included
    assert rows_of(draft / "journal.csv") == rows_of(final / "journal.csv")
    assert len(rows_of(final / "journal.csv")) == 1 + 2 * 6
    assert cells(draft / "variance.xlsx") == cells(final / "variance.xlsx")


def test_preview_is_refused_where_a_close_would_be(loaded: str, tmp_path: Path) -> None:
    api.import_file(loaded, usage_file(tmp_path, "m.csv", [["2026-03-02", "HELP", "ART", "1", "T-1", ""]]), "2026-03")
    api.import_file(loaded, usage_file(tmp_path, "a.csv", [["2026-04-02", "HELP", "ART", "1", "T-2", ""]]), "2026-04")
    with pytest.raises(Refused, match="period 2026-03 is still open and has activity: close it before 2026-04"):
        api.preview(loaded, "2026-04", tmp_path / "out")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    api.close(loaded, "2026-03", tmp_path / "out")
    with pytest.raises(
        Refused, match=r"period 2026-03 is closed: its documents are final; `chargeback report 2026-03`"
    ):
        api.preview(loaded, "2026-03", tmp_path / "out")
    with pytest.raises(Refused, match="not a period"):
        api.preview(loaded, "2026-4", tmp_path / "out")


def test_preview_and_close_print_the_review(loaded: str, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    api.import_file(
        loaded,
        usage_file(
            tmp_path,
            "m.csv",
            [["2026-03-02", "HELP", "ART", "1", "T-1", ""], ["2026-03-03", "HELP", "MATH", "1", "T-2", ""]],
        ),
        "2026-03",
    )
    api.close(loaded, "2026-03", tmp_path / "out")
    api.import_file(
        loaded,
        usage_file(
            tmp_path,
            "a.csv",
            [["2026-04-02", "HELP", "ART", "2", "T-3", ""], ["2026-04-03", "HELP", "MATH", "1", "T-4", ""]],
        ),
        "2026-04",
    )
    result = CliRunner().invoke(main, ["--db", loaded, "preview", "2026-04", "--out", out])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("preview of 2026-04: 2 charges priced; internal revenue 180.00 USD")
    assert lines[0].endswith(f"nothing was posted; draft documents in {Path(out) / '2026-04-draft'}")
    assert lines[1] == (
        "variance review of 2026-04 against 2026-03 and the average of 2026-03; "
        "flagged (!): a change of more than 25% of the previous amount and at least 1.00 USD"
    )
    art = next(line for line in lines if line.startswith("! ART"))
    assert art.split() == ["!", "ART", "120.00", "60.00", "+60.00", "100.0%", "60.00", "HELP", "+60.00"]
    math = next(line for line in lines if " MATH " in line)
    assert math.startswith("  MATH") and math.split()[1:] == ["60.00", "60.00", "+0.00", "0.0%", "60.00"]
    result = CliRunner().invoke(main, ["--db", loaded, "close", "2026-04", "--out", out])
    assert result.exit_code == 0 and result.stdout.splitlines()[1:] == lines[1:]
    result = CliRunner().invoke(main, ["--db", loaded, "preview", "2026-04", "--out", out])
    assert result.exit_code == 1 and result.stderr.startswith("refused: period 2026-04 is closed")


def test_a_preview_that_fails_leaves_nothing(loaded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chargeback.close import variance

    api.import_file(loaded, usage_file(tmp_path, "m.csv", [["2026-03-02", "HELP", "ART", "1", "T-1", ""]]), "2026-03")
    api.preview(loaded, "2026-03", tmp_path / "out")
    before = state(loaded)
    first = (tmp_path / "out" / "2026-03-draft" / "journal.csv").read_bytes()

    def full_disk(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(variance, "write_workbook", full_disk)
    with pytest.raises(Refused, match="cannot write the drafts to .*: No space left on device"):
        api.preview(loaded, "2026-03", tmp_path / "out")
    assert state(loaded) == before
    # the last good drafts are left as they were, and no half-written folder appears
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["2026-03-draft"]
    assert (tmp_path / "out" / "2026-03-draft" / "journal.csv").read_bytes() == first
