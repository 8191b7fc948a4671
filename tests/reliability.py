"""Helpers of the reliability tests (faults, races, hostile input, model-based runs).

`LONG` is true under `--hypothesis-profile=long` or with CHARGEBACK_LONG=1: the kill,
race and fuzz tests then run many more rounds. `count(name, n)` adds to the figures of a
run when CHARGEBACK_STATS names a file (RELIABILITY.md quotes the figures of a long run).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import settings
from sqlalchemy import Connection, Engine, create_engine, select, text

from chargeback.store.schema import Base

ROOT = Path(__file__).resolve().parent.parent


def long_run() -> bool:
    return bool(os.environ.get("CHARGEBACK_LONG")) or settings.get_current_profile_name() == "long"


def rounds(default: int, long: int) -> int:
    """How many rounds a test runs: `default` normally, `long` in a long run
    (CHARGEBACK_ROUNDS multiplies the long figure)."""
    if not long_run():
        return default
    return int(long * float(os.environ.get("CHARGEBACK_ROUNDS", "1")))


def count(name: str, n: int = 1) -> None:
    """Add `n` to the figure `name` of this run (only when CHARGEBACK_STATS is set)."""
    path = os.environ.get("CHARGEBACK_STATS")
    if path and n:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{name} {n}\n")


def engine_for(url: str) -> Engine:
    """A plain engine (no chargeback session settings) for looking behind the engine's back."""
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


@contextmanager
def plain_connection(url: str) -> Iterator[Connection]:
    """A connection of a plain engine (see `engine_for`), the engine disposed of after."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def sql(url: str, *statements: str) -> None:
    """Run raw SQL in one transaction, foreign keys off on SQLite."""
    engine = engine_for(url)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


def scalar(url: str, statement: str) -> object:
    with plain_connection(url) as conn:
        return conn.execute(text(statement)).scalar()


AUDIT_TABLES = {"audit_log", "audit_head"}


def fingerprint(conn_or_url: object, skip: set[str] = AUDIT_TABLES) -> dict[str, str]:
    """sha256 of every table's rows (in primary-key order), the audit log left out: equal
    fingerprints mean the command changed nothing."""
    owned = isinstance(conn_or_url, str)
    engine = engine_for(conn_or_url) if owned else None
    conn = engine.connect() if engine is not None else conn_or_url
    try:
        found = {}
        for table in Base.metadata.sorted_tables:
            if table.name in skip:
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            rows = conn.execute(select(table).order_by(*order)).all()
            found[table.name] = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()
        return found
    finally:
        if engine is not None:
            conn.close()
            engine.dispose()


def rows(url: str, table: str) -> int:
    return int(scalar(url, f"SELECT count(*) FROM {table}"))


def cli_env() -> dict[str, str]:
    """The environment for `python -m chargeback` in a subprocess: this checkout first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def chargeback(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the command line in a fresh process of this checkout."""
    return subprocess.run(
        [sys.executable, "-m", "chargeback", *args],
        check=False,
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def popen(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "chargeback", *args],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
