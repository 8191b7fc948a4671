"""Benchmark the monthly job phase by phase, on SQLite and PostgreSQL, beside the peers.

    python benchmarks/run.py [--sizes 10000,100000,1000000] [--databases sqlite,postgresql]
                             [--pg-url URL] [--out benchmarks] [--peers/--no-peers]

For each size it generates a seeded book (benchmarks/generate.py), then runs each phase
as its own `chargeback` process: load, import, close (without documents), documents
(`report`), and measures wall seconds, lines per second and the process's peak memory.
The same period's journal, exported for hledger, is balanced by `ledger bal` and
`hledger bal` as the peers' figures. Results go to OUT/results.json and OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from generate import generate  # noqa: E402

PERIOD = "2026-03"


def measure(command: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak resident MB, output) of one process, peak taken from wait4."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = process.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{output[-2000:]}")
    return seconds, usage.ru_maxrss // 1024, output


def reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def run_size(lines: int, database: str, pg_url: str | None, work: Path, peers: bool) -> dict[str, object]:
    book = work / f"book-{lines}"
    if not book.exists():
        generate(book, lines)
    if database == "sqlite":
        db_file = work / f"{lines}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_file}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{db_file}"
    else:
        assert pg_url
        reset_postgres(pg_url)
        url = pg_url
    env = dict(os.environ, CHARGEBACK_DB=url)
    cb = [sys.executable, "-m", "chargeback", "--quiet"]
    out = work / f"out-{lines}-{database}"
    shutil.rmtree(out, ignore_errors=True)
    phases: dict[str, dict[str, float]] = {}
    steps = [
        ("load", cb + ["load", str(book)]),
        ("import", cb + ["import", str(book / "usage" / f"{PERIOD}.csv"), "--period", PERIOD]),
        ("close", cb + ["close", PERIOD, "--out", str(out), "--no-documents"]),
        ("documents", cb + ["report", PERIOD, "--out", str(out)]),
    ]
    for name, command in steps:
        seconds, peak, _ = measure(command, env)
        phases[name] = {"seconds": round(seconds, 2), "lines_per_second": round(lines / seconds),
                        "peak_mb": peak}
    result: dict[str, object] = {"lines": lines, "database": database, "phases": phases}
    if peers:
        journal = work / f"{lines}-{database}.journal"
        subprocess.run(cb + ["export", PERIOD, "--format", "hledger", "--out", str(journal)], env=env, check=True)
        for tool in ("ledger", "hledger"):
            if shutil.which(tool):
                seconds, peak, _ = measure([tool, "-f", str(journal), "bal"])
                result[tool] = {"seconds": round(seconds, 2), "peak_mb": peak}
    return result


def markdown(results: list[dict[str, object]]) -> str:
    head = ("| lines | database | load s | import s | close s | documents s | import+close lines/s "
            "| peak MB | ledger bal s (MB) | hledger bal s (MB) |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    rows = []
    for r in results:
        p = r["phases"]  # type: ignore[index]
        both = p["import"]["seconds"] + p["close"]["seconds"]  # type: ignore[index]
        peak = max(v["peak_mb"] for v in p.values())  # type: ignore[union-attr]

        def peer(name: str) -> str:
            value = r.get(name)
            return f"{value['seconds']} ({value['peak_mb']})" if value else "-"  # type: ignore[index]

        rows.append(f"| {r['lines']:,} | {r['database']} | {p['load']['seconds']} | {p['import']['seconds']} "  # type: ignore[index]
                    f"| {p['close']['seconds']} | {p['documents']['seconds']} | {round(r['lines'] / both):,} "  # type: ignore[index,operator]
                    f"| {peak} | {peer('ledger')} | {peer('hledger')} |")
    return head + "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("CHARGEBACK_BENCH_PG") or os.environ.get("CHARGEBACK_TEST_PG"))
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--no-peers", dest="peers", action="store_false")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    databases = [d for d in args.databases.split(",") if d != "postgresql" or args.pg_url]
    work = args.work or Path(tempfile.mkdtemp(prefix="chargeback-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for lines in sizes:
        for database in databases:
            result = run_size(lines, database, args.pg_url, work, args.peers)
            print(json.dumps(result), flush=True)
            results.append(result)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"machine": machine, "results": results}, indent=1) + "\n")
    table = markdown(results)
    (args.out / "results.md").write_text(f"Machine: {machine}\n\n{table}")
    print(table)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
