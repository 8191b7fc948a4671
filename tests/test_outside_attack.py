"""Holes an outside attack found against RELIABILITY.md's promises (issue 30), each
closed: the attack is run as the attacker ran it, and the books come through."""

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import full_disk, usage_file

from chargeback import api
from chargeback.cli import main
from chargeback.core.errors import Refused
from chargeback.store.db import redact, without_secrets


def cli(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--db", url, *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("period", ["0000-01", "9999-12", "1899-12", "3000-01"])
def test_a_period_outside_the_calendar_is_refused_up_front(loaded: str, tmp_path: Path, period: str) -> None:
    """Before: `adjust 0000-01` was taken, after which no later period could close and
    `close 0000-01` crashed on year 0. Now every command refuses such a period before it
    writes anything, and the months around it close as usual."""
    outside = f"'{period}' is outside the periods chargeback keeps (1900-01 to 2999-12)"
    code, _, err = cli(
        loaded, "adjust", period, "--service", "HELP", "--consumer", "ART", "--amount", "5", "--reason", "x"
    )
    assert code == 2 and outside in err  # bad usage, like every malformed argument
    line = usage_file(tmp_path, "u.csv", [["2026-03-02", "HELP", "ART", "1", "T-1", ""]])
    code, _, err = cli(loaded, "import", str(line), "--period", period)
    assert code == 2 and outside in err
    for command in (["close", period], ["preview", period], ["reopen", period, "--reason", "x"]):
        code, _, err = cli(loaded, *command)
        assert code == 2 and outside in err
    with pytest.raises(Refused, match="outside the periods"):
        api.adjust(loaded, period, "HELP", "ART", "5", "x")
    with pytest.raises(Refused, match="outside the periods"):
        api.close(loaded, period, tmp_path / "out")
    api.import_file(loaded, line, "2026-03")
    assert api.close(loaded, "2026-03", tmp_path / "out", documents=False).reconciliation.balanced


def test_every_credential_form_of_a_database_url_is_hidden() -> None:
    """Before: a password in the URL's query was printed by `init` and by a connection
    error. Now the password, wherever libpq takes it, never reaches a message."""
    assert redact("postgresql://cbu:TopS3cret@127.0.0.1:55432/cb") == "postgresql://cbu:***@127.0.0.1:55432/cb"
    assert (
        redact("postgresql://cbu@127.0.0.1:55432/cb?password=TopS3cretPW")
        == "postgresql://cbu@127.0.0.1:55432/cb?password=%2A%2A%2A"
    )
    assert "S3cret" not in redact("postgresql://cbu@h/cb?sslpassword=S3cret&sslmode=require")
    assert (
        without_secrets(
            'connection failed: password="TopS3cretPW" rejected', "postgresql://cbu@127.0.0.1/cb?password=TopS3cretPW"
        )
        == 'connection failed: password="***" rejected'
    )


def test_a_connection_error_never_prints_the_password() -> None:
    url = "postgresql://cbu@127.0.0.1:1/cb?password=TopS3cretPW&connect_timeout=2"
    code, out, err = cli(url, "init")
    assert code == 1
    assert "TopS3cretPW" not in out + err
    assert err.startswith("database error (postgresql://cbu@127.0.0.1:1/cb?")


@pytest.mark.slow
def test_a_reader_that_stops_early_is_a_normal_end(loaded: str, tmp_path: Path) -> None:
    """Before: `chargeback audit | head -1` ended now and then in `error: BrokenPipeError`,
    exit 1. Now a closed pipe ends the command quietly, exit 0."""
    import subprocess
    import sys

    for n in range(60):  # an audit log long enough to outgrow the pipe's buffer
        api.adjust(loaded, "2026-03", "HELP", "ART", "1.00", f"reason {n} " + "x" * 2000)
    for _ in range(3):
        reader = subprocess.Popen(
            [sys.executable, "-m", "chargeback", "--db", loaded, "audit"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert reader.stdout is not None and reader.stdout.readline()
        reader.stdout.close()
        _, err = reader.communicate(timeout=60)
        assert (reader.returncode, err) == (0, b"")


def test_a_device_or_pipe_is_refused_not_read_for_ever(loaded: str) -> None:
    """Before: `chargeback import /dev/zero` hung (its audit record hashed the device)."""
    code, _, err = cli(loaded, "import", "/dev/zero", "--period", "2026-03")
    assert code == 1 and err == "refused: /dev/zero: not a regular file: import a CSV or XLSX file\n"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("fiscal_year_start = true", "book.toml:3: fiscal_year_start: Input should be a valid integer"),
        (
            'name = "Evil\\r\\nCollege"',
            "book.toml:1: name: holds a line break or another control character: write it on one line",
        ),
    ],
)
def test_book_settings_take_what_they_say(mini_book: Path, sqlite_url: str, setting: str, message: str) -> None:
    """Before: `fiscal_year_start = true` was taken as 1, and a book's name with CR/LF was
    echoed raw to the terminal by `load`."""
    lines = (mini_book / "book.toml").read_text().splitlines()
    key = setting.split(" =")[0]
    lines = [line for line in lines if not line.startswith(key + " ")]
    lines.insert(0 if key == "name" else 2, setting)
    (mini_book / "book.toml").write_text("\n".join(lines) + "\n")
    code, out, err = cli(sqlite_url, "load", str(mini_book))
    assert code == 1 and "\r" not in out + err
    assert message in err.splitlines()


def test_ten_thousand_problems_are_told_in_a_screenful(loaded: str, tmp_path: Path) -> None:
    """Before: a file with 10,000 unknown columns printed 10,000 error lines."""
    header = "date,service,consumer,quantity,reference," + ",".join(f"x{n}" for n in range(10_000))
    path = tmp_path / "wide.csv"
    path.write_text(header + "\n2026-03-02,HELP,ART,1,T-1" + "," * 10_000 + "\n")
    code, _, err = cli(loaded, "import", str(path), "--period", "2026-03")
    lines = err.splitlines()
    assert code == 1 and len(lines) == 102
    assert (
        lines[0] == "wide.csv:1: x0: unknown column; the columns are: date, service, consumer, quantity, "
        "reference, description"
    )
    assert lines[-2] == "... and 9900 more errors like these (the first 100 are shown)"
    assert lines[-1] == "import refused: 10000 errors, nothing imported"


def test_a_read_only_database_still_answers_the_reading_commands(
    sqlite_url: str, mini_book: Path, tmp_path: Path
) -> None:
    """Before: on a read-only database file even `verify`, `reconcile` and `audit` failed
    with "check that the database server is running". Opened read-only (as a file without
    write permission is), reading commands work and writing ones say what is wrong."""
    api.run(sqlite_url, mini_book, tmp_path / "out")
    read_only = f"sqlite:///file:{sqlite_url.removeprefix('sqlite:///')}?mode=ro&uri=true"
    for command in (["reconcile", "2026-03"], ["audit"], ["export", "2026-03", "--format", "csv"]):
        code, out, err = cli(read_only, *command)
        assert (code, err) == (0, ""), command
    code, _, err = cli(
        read_only, "adjust", "2026-04", "--service", "HELP", "--consumer", "ART", "--amount", "5", "--reason", "x"
    )
    assert code == 1 and "is read-only" in err and "reading commands (verify, reconcile, audit, export) work" in err


def test_usage_that_one_charge_could_not_post_is_refused_at_import(loaded: str, tmp_path: Path) -> None:
    """Before: 95,000 lines of 99999999999.999 at 10.00 imported fine, and the close then
    overflowed a 64-bit column: the period could never close, since usage lines cannot
    be removed. Now the import refuses the line where the period's usage of a service by
    a consumer passes what one charge can post, and the month closes."""
    huge = "10000000000"  # 10^10 at HELP's 60.00: 6 * 10^11 a line, under the limit of one line
    api.import_file(loaded, usage_file(tmp_path, "a.csv", [["2026-03-02", "HELP", "ART", huge, "H-1", ""]]), "2026-03")
    rows = [["2026-03-02", "HELP", "ART", huge, f"H-{n}", ""] for n in range(2, 1_000)]
    code, _, err = cli(loaded, "import", str(usage_file(tmp_path, "b.csv", rows)), "--period", "2026-03")
    lines = err.splitlines()
    assert code == 1 and lines[-1] == "import refused: 1 error, nothing imported"
    assert lines[0] == (
        "b.csv:2: quantity: with this line the usage of HELP by ART in 2026-03 passes what one "
        "charge can post (10^12 in quantity, or 10^12 USD at its rate): check the quantities"
    )
    result = api.close(loaded, "2026-03", tmp_path / "out", documents=False)
    assert result.reconciliation.balanced


WORKERS_SCRIPT = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from chargeback.documents.folder import follow_parent

if __name__ == "__main__":
    initializer = follow_parent if sys.argv[1] == "follow" else None
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), initializer=initializer)
    [f.result() for f in [pool.submit(time.sleep, 0.5) for _ in range(4)]]
    print("ready", flush=True)
    time.sleep(60)
"""


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("follow", [True, False])
def test_a_killed_command_leaves_no_worker_running(tmp_path: Path, follow: bool) -> None:
    """Before: after `kill -9` of a close mid-way its pool workers (and multiprocessing's
    resource tracker) stayed alive for good. A worker now ends once its parent is gone;
    the case without `follow_parent` shows what the test would find otherwise."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "workers.py"
    script.write_text(WORKERS_SCRIPT)
    command = subprocess.Popen(
        [sys.executable, str(script), "follow" if follow else "stay"], stdout=subprocess.PIPE, text=True
    )
    assert command.stdout is not None and command.stdout.readline() == "ready\n"
    children = _children(command.pid)
    assert len(children) >= 2  # the workers, and the resource tracker
    os.kill(command.pid, signal.SIGKILL)
    command.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.1)
    left = {pid for pid in children if _alive(pid)}
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert (left == set()) is follow


def test_a_full_disk_while_a_workbook_is_written_gets_the_proper_message(loaded: str, tmp_path: Path) -> None:
    """Before: a disk that filled up while XlsxWriter wrote a workbook gave `error:
    FileCreateError: [Errno 28] ...`; every other document got the proper message."""
    api.import_file(loaded, usage_file(tmp_path, "u.csv", [["2026-03-02", "HELP", "ART", "1", "T-1", ""]]), "2026-03")
    with full_disk(lambda path: path.endswith(".xlsx")), pytest.raises(Refused) as refused:
        api.close(loaded, "2026-03", tmp_path / "out")
    assert str(refused.value) == (
        f"cannot write the documents to {tmp_path / 'out'}: No space left on device; the period stays open: "
        "free some space, make the folder writable or choose another --out folder"
    )
    assert api.reconcile(loaded, "2026-03").status == "open"


def test_a_period_folder_replaced_by_a_link_leaves_nothing_behind(loaded: str, tmp_path: Path) -> None:
    """Before: a `.2026-03.old-PID` link stayed in the output folder once the documents
    were published over a period folder that was a symbolic link."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not chargeback's")
    out = tmp_path / "out"
    out.mkdir()
    (out / "2026-03").symlink_to(elsewhere, target_is_directory=True)
    api.import_file(loaded, usage_file(tmp_path, "u.csv", [["2026-03-02", "HELP", "ART", "1", "T-1", ""]]), "2026-03")
    api.close(loaded, "2026-03", out)
    assert sorted(p.name for p in out.iterdir()) == ["2026-03"]
    assert not (out / "2026-03").is_symlink() and (out / "2026-03" / "manifest.json").is_file()
    assert (elsewhere / "keep.txt").read_text() == "not chargeback's"
