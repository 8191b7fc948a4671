"""Races on PostgreSQL, between real processes started at the same instant: importing
the same file, different files into one period, the same file into different periods,
closing the same period, closing two periods, importing while closing. Every usage line
is stored at most once, a close sees all or none of a concurrent import, and the loser
gets a clear message (see `chargeback.db` for the locks that make it so)."""

from __future__ import annotations

import csv
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import USAGE_HEADER
from reliability import cli_env, count, rounds, rows, scalar

from chargeback import api

ROUNDS = rounds(1, 12)
STARTER = (
    "import sys, time; from chargeback.cli import main; start = float(sys.argv[1]); "
    "time.sleep(max(0.0, start - time.time())); main(sys.argv[2:], prog_name='chargeback')"
)


def together(*commands: list[str], delays: list[float] | None = None) -> list[tuple[int, str, str]]:
    """Run the commands in separate processes, each starting at the same instant (plus
    its delay); (exit code, stdout, stderr) of each."""
    start = time.time() + 1.5 + 0.4 * len(commands)
    delays = delays or [0.0] * len(commands)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, str(start + delay), *args],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args, delay in zip(commands, delays, strict=False)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=180)
        results.append((process.returncode, out, err))
    count("races", 1)
    return results


def usage(folder: Path, name: str, tag: str, day: str, lines: int) -> Path:
    path = folder / name
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(USAGE_HEADER)
        for i in range(lines):
            writer.writerow([day, "HELP", "MATH" if i % 2 else "ART", "1", f"{tag}-{i}", "race"])
    return path


@pytest.fixture
def book(pg_url: str, mini_book: Path) -> str:
    api.load(pg_url, mini_book)
    return pg_url


def imported(out: str) -> int:
    return int(out.split(" imported,")[0].rsplit(", ", 1)[1])


def test_the_same_file_imported_by_four_processes(book: str, tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        path = usage(tmp_path, f"same{round_}.csv", f"S{round_}", "2026-03-05", 3000)
        results = together(*[["--db", book, "import", str(path), "--period", "2026-03"]] * 4)
        assert [code for code, _, _ in results] == [0] * 4, results
        # one stored the file; the others waited for the period's lock, then found duplicates
        assert sorted(imported(out) for _, out, _ in results) == [0, 0, 0, 3000]
        assert rows(book, "usage") == 3000 * (round_ + 1)
    assert api.verify(book).ok


def test_the_same_file_imported_into_different_periods(book: str, tmp_path: Path) -> None:
    """Different periods take different locks: the unique (service, reference) index
    decides, and the losers are refused whole, never half stored."""
    for round_ in range(ROUNDS):
        path = usage(tmp_path, f"cross{round_}.csv", f"X{round_}", "2026-03-05", 3000)
        periods = ["2026-03", "2026-04", "2026-05"]
        results = together(*[["--db", book, "import", str(path), "--period", p] for p in periods])
        winners = [r for r in results if r[0] == 0 and imported(r[1]) == 3000]
        print(f"same file, three periods: exit codes {[r[0] for r in results]}")
        assert len(winners) == 1, results
        for code, out, err in results:
            if (code, out, err) in winners:
                continue
            if code == 0:
                assert imported(out) == 0  # it started after the winner had committed
            else:
                assert err == (
                    "refused: another import stored some of these usage lines at the same time; "
                    f"nothing from cross{round_}.csv was imported: import it again (lines already "
                    "stored are skipped as duplicates)\n"
                )
        assert scalar(book, f"SELECT count(*) FROM usage WHERE reference LIKE 'X{round_}-%%'") == 3000
        assert scalar(book, f"SELECT count(DISTINCT period) FROM usage WHERE reference LIKE 'X{round_}-%%'") == 1
    assert api.verify(book).ok


def test_different_files_into_one_period(book: str, tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        paths = [usage(tmp_path, f"d{round_}-{n}.csv", f"D{round_}-{n}", "2026-03-07", 1500) for n in range(4)]
        results = together(*[["--db", book, "import", str(p), "--period", "2026-03"] for p in paths])
        assert [code for code, _, _ in results] == [0] * 4 and all(imported(out) == 1500 for _, out, _ in results)
        assert rows(book, "usage") == 6000 * (round_ + 1)


def test_closing_the_same_period_three_times_at_once(book: str, tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        period = f"{2026 + round_}-03"
        api.import_file(book, usage(tmp_path, f"c{round_}.csv", f"C{round_}", f"{period}-09", 3000), period)
        results = together(*[["--db", book, "close", period, "--out", str(tmp_path / f"out{n}")] for n in range(3)])
        assert sorted(code for code, _, _ in results) == [0, 1, 1], results
        assert sorted(err for code, _, err in results if code) == [f"refused: period {period} is already closed\n"] * 2
        assert (
            scalar(
                book,
                f"SELECT count(*) FROM charge_lines c JOIN usage u ON u.id = c.usage_id WHERE u.period = '{period}'",
            )
            == 3000
        )
    assert api.verify(book).ok


def test_closing_two_periods_at_once_keeps_one_chain(book: str, tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        first, second = f"{2030 + round_}-01", f"{2030 + round_}-02"
        for period in (first, second):
            api.import_file(book, usage(tmp_path, f"t{period}.csv", f"T{period}", f"{period}-03", 2000), period)
        results = together(
            ["--db", book, "close", first, "--out", str(tmp_path / "o1")],
            ["--db", book, "close", second, "--out", str(tmp_path / "o2")],
        )
        assert results[0][0] == 0, results
        # the later period closes only if the earlier one was closed before it looked
        assert results[1][0] == 0 or results[1][2] == (
            f"refused: period {first} is still open and has activity: close it before {second}\n"
        )
        if results[1][0]:
            api.close(book, second, tmp_path / "o2")
        assert api.verify(book).ok


def test_importing_while_closing_is_all_or_nothing(book: str, tmp_path: Path) -> None:
    rng = random.Random(7)
    orders = set()
    for round_ in range(rounds(2, 24)):
        period = f"{2040 + round_ // 12}-{round_ % 12 + 1:02d}"
        api.import_file(book, usage(tmp_path, f"w{period}.csv", f"W{period}", f"{period}-02", 2000), period)
        late = usage(tmp_path, f"l{period}.csv", f"L{period}", f"{period}-03", 500)
        results = together(
            ["--db", book, "close", period, "--out", str(tmp_path / "out")],
            ["--db", book, "import", str(late), "--period", period],
            delays=[0.0, rng.uniform(-0.6, 0.6)],
        )
        (close_code, _, close_err), (import_code, _, import_err) = results
        assert close_code == 0, close_err
        entries = scalar(
            book, f"SELECT count(*) FROM charge_lines c JOIN usage u ON u.id = c.usage_id WHERE u.period = '{period}'"
        )
        if import_code == 0:  # the import committed first: the close posted all of it
            assert entries == 2500
            orders.add("import first")
        else:  # the close committed first: the import was refused whole
            assert import_err == (
                f"refused: period {period} is closed: nothing can be added to it; "
                f"reopen it with `chargeback reopen {period} --reason ...` if you must\n"
            )
            assert entries == 2000
            orders.add("close first")
        unposted = scalar(
            book,
            "SELECT count(*) FROM usage u JOIN periods p ON p.period = u.period "
            "LEFT JOIN charge_lines c ON c.usage_id = u.id WHERE p.status = 'closed' "
            "AND c.usage_id IS NULL",
        )
        assert unposted == 0, "a closed period holds usage that its close did not see"
    assert api.verify(book).ok
    print(f"importing while closing: {sorted(orders)}")
