"""Faults: the process killed (SIGKILL) at random points of `import`, `close` and `report`
on both databases; a full disk or unwritable output folder during `close`; the database
going away in the middle of a command. After each: the database is as before the command
or as after it, never between; `verify` passes; no half-written output folder is
presented as complete."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import USAGE_HEADER, free_port, full_disk
from reliability import chargeback, count, engine_for, fingerprint, popen, rounds, rows, scalar

from chargeback import api
from chargeback.core.errors import Refused
from chargeback.documents import folder as documents

# big files, a private PostgreSQL server stopped mid-command, killed processes: minutes
pytestmark = pytest.mark.slow

KILLS = rounds(3, 40)
LINES = 3000
SEED = int(os.environ.get("CHARGEBACK_SEED", time.time_ns() % 1_000_000))


def big_file(folder: Path, tag: str, period: str, lines: int = LINES) -> Path:
    path = folder / f"{tag}.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(USAGE_HEADER)
        for i in range(lines):
            writer.writerow(
                [
                    f"{period}-{1 + i % 28:02d}",
                    "HELP",
                    "ART" if i % 3 else "EXT-1",
                    f"{1 + i % 7}.25",
                    f"{tag}-{i}",
                    "kill test",
                ]
            )
    return path


def settle(url: str) -> None:
    """Wait until the server has rolled back what a killed client left (PostgreSQL
    notices a dead connection when it next reads from it)."""
    if not url.startswith("postgresql"):
        return
    engine = engine_for(url).execution_options(isolation_level="AUTOCOMMIT")  # no stale statistics snapshot
    deadline = time.monotonic() + 30
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            others = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state <> 'idle'"
            ).scalar()
            if not others:
                break
            time.sleep(0.05)
    engine.dispose()


def run_and_kill(rng: random.Random, budget: float, *args: str) -> bool:
    """Start the command, SIGKILL it after a random delay; True when it was killed
    before it finished."""
    process = popen(*args)
    try:
        process.wait(timeout=rng.uniform(0.2, budget))
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True
    finally:
        process.stdout.close()
        process.stderr.close()


def timed(*args: str) -> float:
    started = time.monotonic()
    done = chargeback(*args)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - started


def complete(folder: Path) -> bool:
    """A documents folder is complete when its manifest lists exactly its other files,
    each with the right sha256, and each earlier version it keeps is complete."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return False
    listed = {f["path"]: f["sha256"] for f in json.loads(manifest.read_text())["files"]}
    present = {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).parts[0] != "revisions"
    } - {"manifest.json"}
    # the earlier versions a re-close keeps (`revisions/N/`) are each complete as well
    revisions = folder / "revisions"
    if revisions.is_dir() and not all(complete(kept) for kept in revisions.iterdir()):
        return False
    return set(listed) == present and all(
        hashlib.sha256((folder / path).read_bytes()).hexdigest() == digest for path, digest in listed.items()
    )


def no_half_written_folder(out: Path) -> None:
    for folder in out.iterdir() if out.exists() else ():
        if not folder.name.startswith("."):
            assert complete(folder), f"seed {SEED}: {folder} is presented as complete but is not"


def priced_lines_of(url: str, period: str) -> int:
    """The usage lines of `period` priced into a posted charge."""
    return int(
        scalar(
            url,
            f"SELECT count(*) FROM charge_lines c JOIN usage u ON u.id = c.usage_id WHERE u.period = '{period}'",
        )
    )


def tally(command: str, outcomes: Counter) -> None:
    """Add a test's kills to the run's figures and show how they fell."""
    count("kills", sum(n for (how, _), n in outcomes.items() if how == "killed"))
    count("kill rounds", KILLS)
    print(f"{command} kills (seed {SEED}): {dict(outcomes)}")


def test_kill_import_at_random_points(loaded: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    budget = 1.1 * timed("--db", loaded, "import", str(big_file(tmp_path, "first", "2026-03")), "--period", "2026-03")
    stored, outcomes = LINES, Counter()
    for round_ in range(KILLS):
        path = big_file(tmp_path, f"k{round_}", "2026-03")
        killed = run_and_kill(rng, budget, "--db", loaded, "import", str(path), "--period", "2026-03")
        settle(loaded)
        now = rows(loaded, "usage")
        assert now in (stored, stored + LINES), f"seed {SEED}: kill {round_} left {now - stored} of {LINES} lines"
        after = now == stored + LINES
        records = [r for r in api.audit_log(loaded)[0] if r.arguments.get("file") == str(path)]
        assert [r.outcome.split(":")[0] for r in records] == (["done"] if after else [])
        assert rows(loaded, "imports") == 1 + (stored - LINES) // LINES + after
        stored = now
        outcomes["killed" if killed else "finished", "after" if after else "before"] += 1
    assert api.verify(loaded).ok
    tally("import", outcomes)


def test_kill_close_at_random_points(loaded: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    out = tmp_path / "out"
    periods = [f"{2026 + i // 12}-{i % 12 + 1:02d}" for i in range(KILLS + 1)]
    for period in periods:
        api.import_file(loaded, big_file(tmp_path, f"p{period}", period), period)
    budget = 1.1 * timed("--db", loaded, "close", periods[0], "--out", str(out))
    outcomes = Counter()
    for period in periods[1:]:
        before = fingerprint(loaded)
        killed = run_and_kill(rng, budget, "--db", loaded, "close", period, "--out", str(out))
        settle(loaded)
        status = scalar(loaded, f"SELECT status FROM periods WHERE period = '{period}'")
        if status == "closed":
            assert priced_lines_of(loaded, period) == LINES, f"seed {SEED}: {period} closed with a part of its lines"
        else:
            assert fingerprint(loaded) == before, f"seed {SEED}: the killed close of {period} left changes"
        no_half_written_folder(out)
        if status != "closed":
            assert not (out / period).exists()
            api.close(loaded, period, out)
        elif not (out / period).exists():  # killed between the commit and the move into place
            api.report(loaded, period, out)
        assert complete(out / period)
        assert not list(out.glob(f".{period}.*")), "a killed writer's leftovers were not tidied"
        assert api.verify(loaded).ok
        outcomes["killed" if killed else "finished", status] += 1
    tally("close", outcomes)


def test_kill_report_at_random_points(loaded: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    out = tmp_path / "out"
    api.import_file(loaded, big_file(tmp_path, "r", "2026-03"), "2026-03")
    api.close(loaded, "2026-03", out)
    listed = sorted(f["path"] for f in json.loads((out / "2026-03" / "manifest.json").read_text())["files"])
    before = fingerprint(loaded)
    budget = 1.1 * timed("--db", loaded, "report", "2026-03", "--out", str(out))
    outcomes = Counter()
    for _ in range(KILLS):
        killed = run_and_kill(rng, budget, "--db", loaded, "report", "2026-03", "--out", str(out))
        settle(loaded)
        no_half_written_folder(out)
        present = (out / "2026-03").exists()
        # absent only in the instant between moving the old folder aside and the new one in
        assert present or list(out.glob(".2026-03.old-*")), f"seed {SEED}: the documents were lost"
        documents.recover(out, "2026-03")
        assert complete(out / "2026-03") and not list(out.glob(".2026-03.*"))
        assert sorted(f["path"] for f in json.loads((out / "2026-03" / "manifest.json").read_text())["files"]) == listed
        assert fingerprint(loaded) == before
        outcomes["killed" if killed else "finished", "present" if present else "moved aside"] += 1
    assert api.verify(loaded).ok
    tally("report", outcomes)


# ---- a full disk, an unwritable folder ----------------------------------------------


def march(url: str, folder: Path) -> None:
    api.import_file(url, big_file(folder, "m", "2026-03", lines=3), "2026-03")


def test_a_full_disk_during_close_undoes_it(loaded: str, tmp_path: Path) -> None:
    march(loaded, tmp_path)
    before = fingerprint(loaded)
    with full_disk(lambda path: ".2026-03.partial" in path), pytest.raises(Refused) as refused:
        api.close(loaded, "2026-03", tmp_path / "out")
    assert str(refused.value) == (
        f"cannot write the documents to {tmp_path / 'out'}: No space left on device; the period stays open: "
        "free some space, make the folder writable or choose another --out folder"
    )
    assert fingerprint(loaded) == before
    assert list((tmp_path / "out").iterdir()) == []
    assert api.close(loaded, "2026-03", tmp_path / "out").posted == 2  # the usage charge and the fee


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("runuser"), reason="needs a non-root user")
def test_an_unwritable_output_folder_during_close(loaded: str, tmp_path: Path) -> None:
    march(loaded, tmp_path)
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(stat.S_IRUSR | stat.S_IXUSR)
    before = fingerprint(loaded)
    try:
        if os.geteuid() == 0:  # root writes anywhere: make the folder a file's child instead
            out.chmod(0o755)
            (tmp_path / "afile").write_text("x")
            out = tmp_path / "afile" / "out"
        done = chargeback("--db", loaded, "close", "2026-03", "--out", str(out))
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert done.returncode == 1 and done.stdout == ""
    reason = "Not a directory" if os.geteuid() == 0 else "Permission denied"
    assert done.stderr == (
        f"refused: cannot write the documents to {out}: {reason}; the period stays open: "
        "free some space, make the folder writable or choose another --out folder\n"
    )
    assert fingerprint(loaded) == before
    assert api.audit_log(loaded)[0][-1].outcome.startswith("refused: cannot write the documents")


def test_a_failure_to_move_the_documents_in_says_what_to_do(
    loaded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    march(loaded, tmp_path)
    real_rename = Path.rename

    def refuse(self: Path, target: Path) -> Path:
        if ".partial-" in self.name:
            raise OSError(5, "Input/output error")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", refuse)
    with pytest.raises(Refused) as refused:
        api.close(loaded, "2026-03", tmp_path / "out")
    monkeypatch.undo()
    out = tmp_path / "out"
    assert str(refused.value) == (
        f"period 2026-03 is closed, but its documents could not be moved into {out / '2026-03'}: "
        f"Input/output error; write them with `chargeback report 2026-03 --out {out}`"
    )
    assert not (out / "2026-03").exists() and not list(out.iterdir())
    api.report(loaded, "2026-03", out)
    assert complete(out / "2026-03") and api.verify(loaded).ok


# ---- the database going away ----------------------------------------------------------


def _backend_of_another(conn) -> int | None:
    return conn.exec_driver_sql(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend' AND state IN ('idle in transaction', 'active') LIMIT 1"
    ).scalar()


def test_a_connection_killed_mid_command_leaves_nothing_half_done(pg_url: str, mini_book: Path, tmp_path: Path) -> None:
    """The server ends the command's session while it is in its transaction
    (pg_terminate_backend: what a server restart or a network cut does to it)."""
    api.load(pg_url, mini_book)
    path = big_file(tmp_path, "gone", "2026-03", lines=20000)
    before = fingerprint(pg_url)
    process = popen("--db", pg_url, "import", str(path), "--period", "2026-03")
    engine = engine_for(pg_url).execution_options(isolation_level="AUTOCOMMIT")
    victim = None
    with engine.connect() as conn:
        deadline = time.monotonic() + 30
        while victim is None and time.monotonic() < deadline and process.poll() is None:
            victim = _backend_of_another(conn)
            time.sleep(0.005)
        assert victim is not None, "the import never opened its transaction"
        conn.exec_driver_sql(f"SELECT pg_terminate_backend({victim})")
    engine.dispose()
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    assert stdout == "" and "Traceback" not in stderr and len(stderr.splitlines()) == 1
    assert stderr.startswith("database error (postgresql://chargeback:***@")
    assert "the command did not complete" in stderr
    assert fingerprint(pg_url) == before
    assert api.verify(pg_url).ok


PG_BIN = Path(os.environ.get("CHARGEBACK_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PrivateServer:
    """A throwaway PostgreSQL cluster of this test's own (the shared server is left alone)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="chargeback-pg-"))
        self.root.chmod(0o755)
        self.data, self.port = self.root / "data", free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.root, "postgres")
        self.run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-w",
            "-l",
            str(self.root / "log"),
            "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self.run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-m", mode, "stop")

    def url(self, password: str) -> str:
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/postgres"

    def remove(self) -> None:
        subprocess.run(
            [*self.as_user, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_server():
    if not (PG_BIN / "initdb").exists() or (os.geteuid() == 0 and not shutil.which("runuser")):
        pytest.skip(f"no PostgreSQL server binaries in {PG_BIN} (set CHARGEBACK_PG_BIN)")
    server = PrivateServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


def test_the_server_stopped_mid_command(private_server: PrivateServer, mini_book: Path, tmp_path: Path) -> None:
    url = private_server.url("Pg-Secret-42")
    api.load(url, mini_book)
    before = fingerprint(url)
    path = big_file(tmp_path, "stop", "2026-03", lines=20000)
    process = popen("--db", url, "import", str(path), "--period", "2026-03")
    engine = engine_for(url).execution_options(isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        deadline = time.monotonic() + 30
        while _backend_of_another(conn) is None and time.monotonic() < deadline:
            time.sleep(0.005)
    engine.dispose()
    private_server.stop("immediate")
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1 and stdout == ""
    assert "Traceback" not in stderr and "Pg-Secret-42" not in stderr and len(stderr.splitlines()) == 1
    assert stderr.startswith(f"database error (postgresql://postgres:***@127.0.0.1:{private_server.port}/postgres): ")
    done = chargeback("--db", url, "verify")  # and while it is down, every command says so
    assert done.returncode == 1 and done.stderr.startswith("database error (") and "Pg-Secret-42" not in done.stderr
    private_server.start()
    assert fingerprint(url) == before
    assert api.verify(url).ok
    assert api.import_file(url, path, "2026-03").imported == 20000
