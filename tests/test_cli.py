"""The command line: exit codes 0 / 1 / 2, one clear line on stderr, never a traceback."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from conftest import usage_file

from chargeback.cli import main


def cli(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--db", url, *args])
    return result.exit_code, result.stdout, result.stderr


def test_a_month_from_the_command_line(db_url: str, mini_book: Path, tmp_path: Path) -> None:
    assert cli(db_url, "init")[0] == 0
    assert cli(db_url, "init")[0] == 0  # safe to repeat
    code, out, _ = cli(db_url, "load", str(mini_book))
    assert code == 0 and out.startswith("loaded Mini College: 6 units (6 new), 2 services, 4 rates")
    code, out, _ = cli(db_url, "import", str(mini_book / "usage" / "2026-03.csv"), "--period", "2026-03")
    assert code == 0
    assert (
        out.splitlines()[0]
        == "2026-03.csv -> 2026-03: 5 lines read, 5 imported, 0 duplicates skipped, 0 late, 0 credits"
    )
    assert "FLEET" in out.splitlines()[1] and "140.13 USD" in out.splitlines()[1]
    code, out, _ = cli(
        db_url,
        "adjust",
        "2026-03",
        "--service",
        "HELP",
        "--consumer",
        "ART",
        "--amount",
        "-5.00",
        "--reason",
        "Goodwill",
    )
    assert code == 0 and "-5.00 USD" in out
    code, out, _ = cli(db_url, "close", "2026-03", "--out", str(tmp_path / "out"))
    assert code == 0 and out.startswith("closed 2026-03: 6 entries posted")
    code, out, _ = cli(db_url, "reconcile", "2026-03", "--json")
    data = json.loads(out)
    assert code == 0 and data["internal_spend"] == "240.13" and data["status"] == "closed"
    code, out, _ = cli(db_url, "export", "2026-03", "--format", "hledger")
    assert code == 0 and "expenses:internal:ART" in out
    code, out, _ = cli(db_url, "verify")
    assert code == 0 and out.startswith("journal verified: 6 entries")
    code, out, _ = cli(db_url, "report", "2026-03", "--out", str(tmp_path / "again"))
    assert code == 0 and (tmp_path / "again" / "2026-03" / "manifest.json").exists()
    code, out, err = cli(db_url, "reopen", "2026-03", "--reason", "late tickets")
    assert code == 0


def test_refusals_exit_1_with_one_line(loaded: str, tmp_path: Path) -> None:
    bad = usage_file(
        tmp_path,
        "bad.csv",
        [["2026-03-02", "HELP", "NOBODY", "1", "R-1", ""], ["2026-03-40", "HELP", "ART", "1", "R-2", ""]],
    )
    code, out, err = cli(loaded, "import", str(bad), "--period", "2026-03")
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "bad.csv:2: consumer: 'NOBODY' is not a unit of the book",
        "bad.csv:3: date: '2026-03-40' is not a date: write it as YYYY-MM-DD",
        "import refused: 2 errors, nothing imported",
    ]
    code, _, err = cli(loaded, "close", "2026-13")  # a malformed argument is bad usage
    assert code == 2 and "'2026-13' is not a period: write it as YYYY-MM, e.g. 2026-10" in err
    code, _, err = cli(loaded, "reopen", "2026-03", "--reason", "x")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    code, _, err = cli(loaded, "import", str(tmp_path / "missing.csv"), "--period", "2026-03")
    assert code == 1 and "no such file" in err


def test_bad_usage_exits_2(loaded: str) -> None:
    assert cli(loaded, "close")[0] == 2
    for command in (
        ["close", "2026-5"],
        ["import", "x.csv", "--period", "2026-5"],
        ["audit", "--period", "26-05"],
        ["reopen", "2026-13", "--reason", "x"],
        ["adjust", "0000-01", "--service", "HELP"],
    ):
        code, _, err = cli(loaded, *command)
        assert code == 2 and "Invalid value for" in err, command
    assert cli(loaded, "export", "2026-03", "--format", "xml")[0] == 2
    assert cli(loaded, "frobnicate")[0] == 2


def test_an_uninitialised_database_says_what_to_do(tmp_path: Path) -> None:
    code, _, err = cli(f"sqlite:///{tmp_path / 'empty.db'}", "reconcile", "2026-03")
    assert code == 1 and err == "refused: the database has no chargeback schema or an old one: run `chargeback init`\n"


def test_the_run_summary_counts_one_file_and_one_period_in_the_singular(
    db_url: str, mini_book: Path, tmp_path: Path
) -> None:
    (mini_book / "usage" / "2026-04.csv").unlink()
    code, out, _ = cli(db_url, "run", str(mini_book), "--out", str(tmp_path / "out"))
    assert code == 0
    assert re.fullmatch(
        r"5 usage lines read in 1 file, 1 period closed; time: load [\d.]+ s, "
        r"import [\d.]+ s, close [\d.]+ s, documents [\d.]+ s",
        out.splitlines()[-1],
    )


def test_a_database_password_never_appears(tmp_path: Path) -> None:
    url = "postgresql://auditor:s3cret-pw@127.0.0.1:1/nowhere"
    code, out, err = cli(url, "verify")
    assert code == 1 and "s3cret-pw" not in out + err
    assert err.startswith("database error")


def test_the_installed_command_runs_the_mini_book(mini_book: Path, tmp_path: Path) -> None:
    env = dict(os.environ, CHARGEBACK_DB=f"sqlite:///{tmp_path / 'db.sqlite'}")
    done = subprocess.run(
        [sys.executable, "-m", "chargeback", "run", str(mini_book), "--out", str(tmp_path / "out")],
        check=False,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    summary = done.stdout.splitlines()[-1]  # one line with the time of each phase
    assert re.fullmatch(
        r"\d+ usage lines read in 2 files, 2 periods closed; time: load [\d.]+ s, "
        r"import [\d.]+ s, close [\d.]+ s, documents [\d.]+ s",
        summary,
    ), summary
    done = subprocess.run(
        [sys.executable, "-m", "chargeback", "reconcile", "2026-03", "--json"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
    )
    assert json.loads(done.stdout)["internal_revenue"] == "245.13"


def test_an_adjustment_is_echoed_and_recorded_with_the_currency_digits(loaded: str) -> None:
    code, out, _ = cli(
        loaded, "adjust", "2026-03", "--service", "HELP", "--consumer", "ART", "--amount", "50", "--reason", "Setup"
    )
    assert code == 0 and "50.00 USD" in out and " 50 USD" not in out
    code, out, _ = cli(loaded, "audit")
    assert "-> done: adjustment 1: 50.00 USD" in out


def test_an_open_period_says_what_is_pending_and_is_not_exported(loaded: str, tmp_path: Path) -> None:
    """`reconcile` of an open month with usage imported printed "balanced, 0.00" as if
    nothing were there, and `export` wrote a header and exited 0."""
    usage = usage_file(
        tmp_path,
        "u.csv",
        [["2026-03-02", "HELP", "ART", "2", "T-1", ""], ["2026-03-03", "HELP", "MATH", "1", "T-2", ""]],
    )
    assert cli(loaded, "import", str(usage), "--period", "2026-03")[0] == 0
    assert (
        cli(loaded, "adjust", "2026-03", "--service", "HELP", "--consumer", "ART", "--amount", "-5", "--reason", "x")[0]
        == 0
    )
    code, out, _ = cli(loaded, "reconcile", "2026-03")
    assert code == 0 and out.splitlines()[-1] == (
        "  2 usage lines and 1 adjustment (-5.00 USD) are pending, not posted: close 2026-03 to post them"
    )
    code, out, _ = cli(loaded, "reconcile", "2026-03", "--json")
    assert json.loads(out)["pending"] == {"usage_lines": 2, "adjustments": 1, "adjustments_amount": "-5.00"}
    code, out, err = cli(loaded, "export", "2026-03", "--format", "csv")
    assert (code, out) == (1, "") and err == (
        "refused: period 2026-03 is open: 2 usage lines and 1 adjustment (-5.00 USD) are pending, not posted; "
        "its journal is exported once it is closed (`chargeback close 2026-03`)\n"
    )
    assert cli(loaded, "close", "2026-03", "--out", str(tmp_path / "out"))[0] == 0
    code, out, _ = cli(loaded, "reconcile", "2026-03", "--json")
    assert json.loads(out)["pending"] == {"usage_lines": 0, "adjustments": 0, "adjustments_amount": "0.00"}
    assert cli(loaded, "export", "2026-03", "--format", "csv")[0] == 0
