"""The documents folder as a whole: manifest, reproducibility, safety, parallel writing,
progress, and all-or-nothing closes."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import openpyxl
import polars as pl
import pytest
from click.testing import CliRunner
from conftest import documents_book_copy
from documents_book import HOSTILE, build
from openpyxl.utils.escape import unescape
from sqlalchemy import insert, select

from chargeback import api
from chargeback.cli import main
from chargeback.core.errors import Refused
from chargeback.core.safe import file_in, neutralize
from chargeback.core.settings import Settings
from chargeback.documents import folder as documents
from chargeback.documents.bills import bills, document_context, period_lines, service_totals, write_lines_csv
from chargeback.documents.statements import write_statement
from chargeback.store import db
from chargeback.store.schema import Period, Unit

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory, documents_book_state: Path) -> tuple[str, Path]:
    """The documents book's months closed (`documents_book.build`), a copy for this module."""
    return documents_book_copy(documents_book_state, tmp_path_factory.mktemp("documents"))


def files_of(folder: Path) -> dict[str, bytes]:
    """The files of the version of the documents in `folder` (the earlier ones, under
    `revisions/`, left out: `test_revisions`)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).parts[0] != "revisions"
    }


def cells_of(path: Path) -> dict[str, list[tuple[object, ...]]]:
    book = openpyxl.load_workbook(path)
    return {sheet.title: list(sheet.iter_rows(values_only=True)) for sheet in book.worksheets}


def test_manifest_lists_every_file_with_hash_size_and_totals(out: tuple[str, Path]) -> None:
    url, folder = out
    period = folder / "2026-04"
    manifest = json.loads((period / "manifest.json").read_text())
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {p: data for p, data in files_of(period).items() if p != "manifest.json"}
    assert set(listed) == set(on_disk)
    for name, data in on_disk.items():
        assert listed[name]["sha256"] == hashlib.sha256(data).hexdigest()
        assert listed[name]["bytes"] == len(data)
    totals = api.reconcile(url, "2026-04").as_json()
    assert manifest["totals"]["internal_revenue"] == totals["internal_revenue"]
    assert manifest["totals"]["external_revenue"] == totals["external_revenue"]
    assert {
        "invoices/EXT-1.html",
        "statements/ART.xlsx",
        "statements/rollup/COL.xlsx",
        "reconciliation.xlsx",
        "journal.csv",
    } <= set(listed)


@pytest.fixture
def documents_closed(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> tuple[str, Path]:
    """The documents book closed on each database, documents in the folder returned: on
    SQLite a copy of the one built for this test process."""
    if db_url.startswith("sqlite"):
        return documents_book_copy(request.getfixturevalue("documents_book_state"), tmp_path)
    return db_url, build(db_url, tmp_path)


def test_report_writes_the_same_documents_again(documents_closed: tuple[str, Path], tmp_path: Path) -> None:
    """Byte for byte, workbooks included (their zip entries and properties carry the
    close's timestamp, not the clock), and cell for cell."""
    db_url, first = documents_closed
    again = api.report(db_url, "2026-03", tmp_path / "again")
    before, after = files_of(first / "2026-03"), files_of(again)
    assert before.keys() == after.keys()
    for name in before:
        if name.endswith(".xlsx"):
            assert cells_of(first / "2026-03" / name) == cells_of(again / name), name
        assert before[name] == after[name], name


@pytest.mark.slow  # three process pools; the fast tier compares one pool's files in the test below
def test_parallel_writing_gives_the_same_files(
    out: tuple[str, Path], tmp_path: Path, tuned: Callable[..., Settings]
) -> None:
    url, folder = out
    engine = db.connect(url)
    with db.transaction(engine) as conn:
        tuned(parallel_units=1, workers=1)
        documents.write_documents(conn, "2026-03", tmp_path / "one")
        tuned(parallel_units=1, workers=2)
        documents.write_documents(conn, "2026-03", tmp_path / "two")
        tuned(parallel_units=1, workers=2, batches_per_worker=1)  # each batch waits for a worker's room
        documents.write_documents(conn, "2026-03", tmp_path / "waiting")
    assert files_of(tmp_path / "one") == files_of(tmp_path / "two") == files_of(folder / "2026-03")
    assert files_of(tmp_path / "waiting") == files_of(tmp_path / "one")


@pytest.mark.parametrize("parallel_units, workers", [(2, 2), (10**6, 1)])
def test_many_consumers_are_written_by_workers_even_with_few_lines(
    out: tuple[str, Path], tmp_path: Path, tuned: Callable[..., Settings], parallel_units: int, workers: int
) -> None:
    """Each consumer's documents cost milliseconds whatever their lines: a period of at
    least `parallel_units` consumers is written on every core; the files are the same."""
    url, folder = out
    tuned(parallel_units=parallel_units, workers=2)
    consumers = len(api.reconcile(url, "2026-03").consumers)
    assert consumers >= 2
    assert documents.workers_for(consumers) == workers
    with db.transaction(db.connect(url)) as conn:
        documents.write_documents(conn, "2026-03", tmp_path / "out")
    assert files_of(tmp_path / "out") == files_of(folder / "2026-03")


def test_text_from_input_never_becomes_a_formula(out: tuple[str, Path]) -> None:
    _, folder = out
    seen = set()
    for path in sorted(folder.rglob("*.xlsx")):
        for sheet in openpyxl.load_workbook(path).worksheets:
            for row in sheet.iter_rows():
                for cell in row:
                    value = cell.value
                    if cell.data_type == "f":
                        assert not any(h.strip() in value for h in ("cmd|", "SUM(A1:A9)", "1+2")), (
                            path,
                            cell.coordinate,
                        )
                        continue
                    if isinstance(value, str):
                        assert not value.lstrip(" ").startswith(FORMULA_STARTS), (path, cell.coordinate, value)
                        seen.update(h for h in HOSTILE if value == neutralize(h))
    assert seen >= {"=cmd|' /C calc'!A0", "+1+2", "-2+3", "@SUM(A1:A9)"}
    memos = set()
    for period in ("2026-03", "2026-04"):
        with open(folder / period / "journal.csv", encoding="utf-8", newline="") as handle:
            for line in csv.DictReader(handle):
                for key in ("memo", "reference", "gl_account"):
                    assert not line[key].startswith(FORMULA_STARTS), line
                memos.add(line["memo"])
        with open(folder / period / "lines.csv", encoding="utf-8", newline="") as handle:
            for line in csv.DictReader(handle):
                assert not line["reference"].startswith(FORMULA_STARTS), line
                memos.add(line["reference"])
    assert "'+ref-1" in memos  # a usage line's reference, in lines.csv
    journal = openpyxl.load_workbook(folder / "2026-03" / "reconciliation.xlsx")["Journal"]
    assert "'-6200" in {row[3] for row in journal.iter_rows(values_only=True)}


def test_tabs_and_carriage_returns_are_neutralized_in_every_writer(out: tuple[str, Path], tmp_path: Path) -> None:
    """The importer trims descriptions, so a leading tab or CR reaches the writers only
    from elsewhere (an adjustment's reason, a future importer): check the writers."""
    url, _ = out
    with db.transaction(db.connect(url)) as conn:
        ctx = document_context(conn, "2026-03")
        bill = next(b for b in bills(conn, ctx, service_totals(conn, ctx)) if b.unit.code == "ART")
    hostile = ["\t=1+1", "\r=1+1", "\n@x", " =2+2", "\uff1d1+1"]
    bill.lines = [line._replace(memo=hostile[i % 5], reference=hostile[i % 5]) for i, line in enumerate(bill.lines)]
    texts = [hostile[i % 5] for i in range(bill.usage.height)]
    bill.usage = bill.usage.with_columns(pl.Series("description", texts), pl.Series("reference", texts))
    path = write_statement(tmp_path, ctx, bill)
    detail = openpyxl.load_workbook(path)["Detail"]
    # a control character is written as OOXML's `_xHHHH_`, which openpyxl leaves as it is
    memos = [unescape(row[3]) for row in detail.iter_rows(min_row=3, values_only=True)]
    references = [unescape(row[4]) for row in detail.iter_rows(min_row=3, values_only=True)]
    assert len(memos) >= 2 and memos == references
    assert set(memos) <= {neutralize(t) for t in hostile}
    assert all(m.startswith("'") for m in memos)


def test_names_from_the_book_are_neutralized(out: tuple[str, Path]) -> None:
    _, folder = out
    units = openpyxl.load_workbook(folder / "2026-03" / "statements" / "rollup" / "COL.xlsx")["Units"]
    names = [row[1] for row in units.iter_rows(values_only=True)]
    assert "'=Science Faculty" in names


@pytest.mark.parametrize(
    "code", ["../../escape", "/etc/passwd", "..", ".", "", "a/../../b", "CON", "nul.txt", "x\x00y", "C:\\Windows"]
)
def test_a_unit_code_never_becomes_a_path_outside_the_folder(tmp_path: Path, code: str) -> None:
    path = file_in(tmp_path, code, ".html")
    assert path.parent == tmp_path.resolve()
    assert not path.name.startswith(".") and path.name.split(".")[0].upper() not in ("CON", "NUL")


def test_a_hostile_unit_code_in_the_database_stays_inside(loaded: str, tmp_path: Path) -> None:
    """Codes are checked when the book loads; a database edited by hand still cannot
    write outside the output folder."""
    with db.transaction(db.connect(loaded)) as conn:
        conn.execute(insert(Unit).values(code="../../escape", name="Escape", kind="internal"))
    api.adjust(loaded, "2026-03", "HELP", "../../escape", "10.00", "test")
    out = tmp_path / "deep" / "out"
    api.close(loaded, "2026-03", out)
    written = [p for p in (tmp_path / "deep").rglob("*") if p.is_file()]
    assert written and all(out / "2026-03" in p.parents for p in written)
    assert (out / "2026-03" / "invoices" / "_.._.._escape.html").is_file()
    assert (out / "2026-03" / "statements" / "_.._.._escape.xlsx").is_file()


def test_a_failure_while_writing_leaves_the_period_open(
    loaded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.adjust(loaded, "2026-03", "HELP", "ART", "10.00", "test")

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(documents, "write_statement", broken)
    with pytest.raises(Refused, match="No space left"):
        api.close(loaded, "2026-03", tmp_path / "out")
    assert api.reconcile(loaded, "2026-03").status == "open"
    assert not (tmp_path / "out" / "2026-03").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_no_progress_bar_when_stderr_is_not_a_terminal(
    out: tuple[str, Path], tmp_path: Path, tuned: Callable[..., Settings]
) -> None:
    url, _ = out
    tuned(progress_lines=0)
    result = CliRunner().invoke(main, ["--db", url, "report", "2026-03", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "writing the documents" not in result.output


def test_progress_bar_on_a_terminal_for_a_big_period(
    out: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tuned: Callable[..., Settings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = out
    tuned(progress_lines=0)
    monkeypatch.setattr(documents.sys.stderr, "isatty", lambda: True, raising=False)
    api.report(url, "2026-03", tmp_path, progress=True)
    assert "writing the documents of 2026-03" in capsys.readouterr().err
    api.report(url, "2026-03", tmp_path, progress=False)
    assert capsys.readouterr().err == ""


def test_documents_are_for_closed_periods(loaded: str, tmp_path: Path) -> None:
    api.adjust(loaded, "2026-03", "HELP", "ART", "10.00", "test")
    with pytest.raises(Refused, match="not closed"):
        api.report(loaded, "2026-03", tmp_path)
    with db.transaction(db.connect(loaded)) as conn:
        assert conn.execute(select(Period.status)).scalar() == "open"
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_drafts_of_an_open_period_say_so(loaded: str, tmp_path: Path) -> None:
    """For the preview command to come: it can post the period in a transaction, write
    the documents as drafts and roll back."""
    import datetime as dt

    from chargeback.close.periods import close_period

    api.adjust(loaded, "2026-03", "HELP", "ART", "10.00", "test")
    with db.connect(loaded).connect() as conn, conn.begin() as transaction:
        close_period(conn, "2026-03", dt.datetime(2026, 3, 15, 12, 0))
        documents.write_documents(conn, "2026-03", tmp_path, draft=True, issued=dt.datetime(2026, 3, 15, 12, 0))
        transaction.rollback()
    assert api.reconcile(loaded, "2026-03").status == "open"
    html = (tmp_path / "invoices" / "ART.html").read_text()
    assert 'class="watermark"' in html and "Draft Internal charge notice" in html
    assert "2026-03-15" in html
    for path in (tmp_path / "statements" / "ART.xlsx", tmp_path / "reconciliation.xlsx"):
        title = openpyxl.load_workbook(path)["Summary"]["A1"].value
        assert title.startswith("DRAFT - "), title
    assert openpyxl.load_workbook(tmp_path / "reconciliation.xlsx")["Summary"]["B5"].value == "draft (period open)"


def test_lines_csv_written_a_few_lines_at_a_time_is_the_same_file(out: tuple[str, Path], tmp_path: Path) -> None:
    """`lines.csv` is formatted and written a piece at a time (a big period's in pieces
    of 100,000 lines): in pieces of two lines, the same bytes, one header."""
    url, folder = out
    with db.reading(db.connect(url)) as conn:
        lines = period_lines(conn, "2026-03")
        digits = document_context(conn, "2026-03").digits
    assert lines.height > 4
    write_lines_csv(lines, digits, tmp_path / "lines.csv", rows=2)
    written = (tmp_path / "lines.csv").read_bytes()
    assert written == (folder / "2026-03" / "lines.csv").read_bytes()
    assert written.count(b"entry,usage_id,") == 1


def test_lines_csv_lists_every_priced_line_adding_up_to_its_charges(out: tuple[str, Path]) -> None:
    """`lines.csv`: each charge's lines sum to its amount in `journal.csv`, and all the
    lines to the period's usage total; the manifest lists it with its sha256."""
    from decimal import Decimal

    from chargeback.store.schema import Entry

    url, folder = out
    for period in ("2026-03", "2026-04"):
        with open(folder / period / "lines.csv", encoding="utf-8", newline="") as handle:
            lines = list(csv.DictReader(handle))
        assert list(lines[0]) == [
            "entry",
            "usage_id",
            "date",
            "service",
            "consumer",
            "reference",
            "quantity",
            "rate",
            "amount",
        ]
        with open(folder / period / "journal.csv", encoding="utf-8", newline="") as handle:
            journal: dict[int, Decimal] = {}
            for row in csv.DictReader(handle):  # an entry's debit line comes first: the consumer's
                journal.setdefault(int(row["entry"]), Decimal(row["debit"] or "0") - Decimal(row["credit"] or "0"))
        by_entry: dict[int, Decimal] = {}
        for line in lines:
            by_entry[int(line["entry"])] = by_entry.get(int(line["entry"]), Decimal(0)) + Decimal(line["amount"])
        assert by_entry and all(journal[entry] == total for entry, total in by_entry.items())
        with db.connect(url).connect() as conn:
            usage = (
                conn.execute(select(Entry.amount_minor).where(Entry.period == period, Entry.kind == "usage"))
                .scalars()
                .all()
            )
        assert sum(Decimal(line["amount"]) for line in lines) * 100 == sum(usage)
        assert len(lines) == len({line["usage_id"] for line in lines})
        assert all(not line["reference"].startswith(("=", "+", "-", "@")) for line in lines)
        manifest = json.loads((folder / period / "manifest.json").read_text())
        listed = {f["path"]: f["sha256"] for f in manifest["files"]}
        assert listed["lines.csv"] == hashlib.sha256((folder / period / "lines.csv").read_bytes()).hexdigest()


def test_past_the_invoice_line_limit_the_detail_csv_is_written_and_listed(
    documents_book_state: Path, tmp_path: Path
) -> None:
    """With `invoice_line_limit` below a consumer's lines, its invoice points to the
    detail: an external customer's `detail/<UNIT>.csv` has every line and the manifest
    lists it; an internal unit's points to its statement."""
    from sqlalchemy import update

    from chargeback.store.schema import Book

    url, _ = documents_book_copy(documents_book_state, tmp_path)
    engine = db.connect(url)
    with db.transaction(engine) as conn:
        conn.execute(update(Book).values(invoice_line_limit=2))
        conn.execute(update(Unit).where(Unit.code == "CHEM").values(kind="external"))
        documents.write_documents(conn, "2026-03", tmp_path / "docs")
    folder = tmp_path / "docs"
    with open(folder / "detail" / "CHEM.csv", encoding="utf-8", newline="") as handle:
        detail = list(csv.DictReader(handle))
    with open(folder / "lines.csv", encoding="utf-8", newline="") as handle:
        chem = [line for line in csv.DictReader(handle) if line["consumer"] == "CHEM"]
    assert len(detail) == len(chem) > 2
    assert sorted(r["usage_id"] for r in detail) == sorted(r["usage_id"] for r in chem)
    html = (folder / "invoices" / "CHEM.html").read_text(encoding="utf-8")
    assert 'id="line-limit"' in html and "detail/CHEM.csv" in html
    assert html.count('class="usage-line"') == 2
    listed = {f["path"] for f in json.loads((folder / "manifest.json").read_text())["files"]}
    assert {"detail/CHEM.csv", "lines.csv"} <= listed
    assert not any(name.startswith("detail/") and name != "detail/CHEM.csv" for name in listed)
