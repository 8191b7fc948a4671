"""The audit log: every command that writes is recorded (when, who, what, the sha256 of
its input files, the outcome); refused attempts too, after their rollback; the database
refuses to change or delete a record, and `verify` finds whoever gets around that."""

import getpass
import hashlib
from pathlib import Path

import pytest
from alembic import command
from click.testing import CliRunner
from conftest import built_state, usage_file
from reliability import engine_for, fingerprint, sql
from sqlalchemy.exc import DatabaseError

from chargeback import api
from chargeback.cli import main
from chargeback.core.errors import Refused
from chargeback.ledger import audit
from chargeback.store import db


def records(url: str, period: str | None = None) -> list[audit.Record]:
    return api.audit_log(url, period)[0]


def month(url: str, book: Path, tmp_path: Path) -> Path:
    api.load(url, book)
    path = usage_file(tmp_path, "march.csv", [["2026-03-02", "HELP", "ART", "1.5", "T-1", "Laptop"]])
    api.import_file(url, path, "2026-03")
    api.adjust(url, "2026-03", "HELP", "MATH", "-5.00", "Goodwill")
    api.close(url, "2026-03", tmp_path / "out")
    api.report(url, "2026-03", tmp_path / "again")
    api.reopen(url, "2026-03", "late ticket")
    return path


def test_every_writing_command_is_recorded(db_url: str, mini_book: Path, tmp_path: Path) -> None:
    path = month(db_url, mini_book, tmp_path)
    log = records(db_url)
    assert [(r.id, r.command) for r in log] == [
        (1, "load"),
        (2, "import"),
        (3, "adjust"),
        (4, "close"),
        (5, "report"),
        (6, "reopen"),
    ]
    assert all(r.user == getpass.getuser() for r in log)
    load, imported, adjusted, closed, reported, reopened = log
    assert {i["file"] for i in load.inputs} == {
        str(mini_book / n) for n in ("book.toml", "units.csv", "services.csv", "rates.csv")
    }
    assert imported.arguments == {"file": str(path), "period": "2026-03"}
    assert imported.inputs == [{"file": str(path.absolute()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}]
    assert imported.outcome == "done: 1 lines read, 1 imported, 0 duplicates skipped"
    assert adjusted.arguments["amount"] == "-5.00" and adjusted.arguments["reason"] == "Goodwill"
    assert closed.outcome.startswith("done: 2 entries posted")
    assert reported.outcome.startswith("done: ") and reopened.outcome == "done: reopened"
    assert [r.period for r in log] == [None] + ["2026-03"] * 5
    assert api.verify(db_url).audit_records == 6


def test_a_refused_command_is_recorded_and_changes_nothing_else(loaded: str, tmp_path: Path) -> None:
    before = fingerprint(loaded)
    bad = usage_file(
        tmp_path,
        "bad.csv",
        [["2026-03-02", "HELP", "NOBODY", "1", "R-1", ""], ["2026-03-02", "HELP", "ART", "0", "R-2", ""]],
    )
    with pytest.raises(Refused):
        api.import_file(loaded, bad, "2026-03")
    with pytest.raises(Refused):
        api.close(loaded, "2026-13", tmp_path / "out")
    with pytest.raises(Refused):
        api.reopen(loaded, "2026-03", "nothing to reopen")
    assert fingerprint(loaded) == before
    *_, imported, closed, reopened = records(loaded)
    assert imported.outcome == (
        "refused: import refused: 2 errors, nothing imported "
        "(bad.csv:2: consumer: 'NOBODY' is not a unit of the book; and 1 more)"
    )
    assert imported.inputs[0]["sha256"] == hashlib.sha256(bad.read_bytes()).hexdigest()
    assert closed.outcome == "refused: '2026-13' is not a period: write it as YYYY-MM, e.g. 2026-10"
    assert closed.period is None and closed.arguments["period"] == "2026-13"
    assert reopened.outcome == "refused: period 2026-03 has no activity: there is nothing to reopen"
    assert api.verify(loaded).ok


def test_a_failed_command_is_recorded_by_its_kind(loaded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chargeback.documents import folder as documents

    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(documents, "write_reconciliation_workbook", broken)
    with pytest.raises(RuntimeError):
        api.close(loaded, "2026-03", tmp_path / "out")
    assert records(loaded)[-1].outcome == "failed: RuntimeError"
    assert api.reconcile(loaded, "2026-03").status == "open"


def test_records_of_a_period_for_the_reconciliation_workbook(db_url: str, mini_book: Path, tmp_path: Path) -> None:
    month(db_url, mini_book, tmp_path)
    api.import_file(db_url, usage_file(tmp_path, "a.csv", [["2026-04-02", "HELP", "ART", "1", "A-1", ""]]), "2026-04")
    engine = db.connect(db_url)
    with engine.connect() as conn:
        march = audit.entries_for_period(conn, "2026-03")
        april = audit.entries_for_period(conn, "2026-04")
    engine.dispose()
    assert [r.command for r in march] == ["import", "adjust", "close", "report", "reopen"]
    assert [r.command for r in april] == ["import"]
    assert all(len(r.hash) == 64 for r in march)


def test_the_database_refuses_to_change_or_delete_a_record(loaded: str) -> None:
    engine = engine_for(loaded)
    for statement in ("UPDATE audit_log SET outcome = 'done: nothing'", "DELETE FROM audit_log"):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql(statement)
    engine.dispose()
    assert api.verify(loaded).ok


def without_triggers(url: str, *statements: str) -> None:
    """Tamper as an administrator would: switch the append-only triggers off first."""
    if url.startswith("sqlite"):
        sql(url, "DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete", *statements)
    else:
        sql(url, "ALTER TABLE audit_log DISABLE TRIGGER USER", *statements, "ALTER TABLE audit_log ENABLE TRIGGER USER")


def verified_month(url: str, book: Path, folder: Path) -> None:
    month(url, book, folder)
    assert api.verify(url).ok


@pytest.fixture
def audited(request: pytest.FixtureRequest, db_url: str) -> str:
    """`month`'s six records; the paths in them are those of the folder it ran in."""
    return built_state(request, db_url, "audited", verified_month)


def test_verify_finds_a_changed_record(audited: str) -> None:
    without_triggers(audited, "UPDATE audit_log SET outcome = 'done: 0 entries posted' WHERE id = 4")
    assert api.verify(audited).problems == [
        "audit record 4: its contents do not match its hash: the record was altered"
    ]


def test_verify_finds_a_deleted_record(audited: str) -> None:
    without_triggers(audited, "DELETE FROM audit_log WHERE id = 2")
    assert api.verify(audited).problems == [
        "audit record 3: expected record 2 here: audit records were deleted, inserted or renumbered",
        "audit record 3: does not follow the record before it (hash chain broken): "
        "a record before it was changed, deleted or inserted",
    ]


def test_verify_finds_the_last_record_deleted(audited: str) -> None:
    without_triggers(audited, "DELETE FROM audit_log WHERE id = 6")
    assert api.verify(audited).problems == [
        "audit head names record 6 but the audit log ends at record 5: "
        "records were deleted or added behind the engine's back",
        # the deleted record was the reopen's, which the period's chained events still hold
        "period 2026-03: its closes and reopens (close, reopen) are not those the audit log records "
        "(close): one or the other was changed behind the engine's back",
    ]


def test_verify_finds_an_inserted_record(audited: str) -> None:
    without_triggers(
        audited,
        "INSERT INTO audit_log SELECT id + 1, at, os_user, command, arguments, inputs, "
        "period, outcome, prev_hash, '" + "b" * 64 + "' FROM audit_log WHERE id = 6",
    )
    problems = api.verify(audited).problems
    assert problems[0].startswith("audit record 7: does not follow the record before it")


def test_chargeback_audit_prints_the_log(audited: str) -> None:
    result = CliRunner().invoke(main, ["--db", audited, "audit", "--period", "2026-03"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 6 and " import file=" in lines[0] and "sha256:" in lines[0]
    assert lines[-1].startswith("audit log: 5 of 6 records shown, hash chain intact, head ")
    without_triggers(audited, "UPDATE audit_log SET os_user = 'someone-else' WHERE id = 1")
    result = CliRunner().invoke(main, ["--db", audited, "audit"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "audit log damaged: audit record 1: its contents do not match its hash: the record was altered"
    )


def test_the_audit_migration_goes_down_and_up(loaded: str) -> None:
    engine = db.connect(loaded)
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "0001")
    with engine.begin() as conn:
        command.upgrade(db.alembic_config(conn), "head")
    engine.dispose()
    api.adjust(loaded, "2026-03", "HELP", "ART", "1", "after the round trip")
    assert [r.id for r in records(loaded)] == [1]
    assert api.verify(loaded).ok


def test_an_input_file_is_recorded_by_its_absolute_path(loaded: str, tmp_path: Path, monkeypatch) -> None:
    """An auditor reading the log later does not know which folder `../county/x.csv` meant."""
    (tmp_path / "county").mkdir()
    (tmp_path / "work").mkdir()
    usage_file(tmp_path / "county", "x.csv", [["2026-03-02", "HELP", "ART", "1", "T-1", ""]])
    monkeypatch.chdir(tmp_path / "work")
    api.import_file(loaded, Path("../county/x.csv"), "2026-03")
    [record] = [r for r in api.audit_log(loaded)[0] if r.command == "import"]
    assert record.inputs[0]["file"] == str(tmp_path / "work" / ".." / "county" / "x.csv")
    assert len(record.inputs[0]["sha256"]) == 64
