"""Shared fixtures: a database on SQLite and on PostgreSQL, and small books on disk.

PostgreSQL tests use the server named by CHARGEBACK_TEST_PG (`scripts/start-postgres.sh`
starts one and prints its URL). Without it they skip on a developer's machine; in CI
(CI=true) every skip is turned into a failure, so no check is silently left out.
"""

from __future__ import annotations

import builtins
import csv
import gc
import io
import os
import shutil
import socket
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from benchmark_scripts import benchmark_script
from hypothesis import HealthCheck, settings
from sqlalchemy import Connection, create_engine, text

from chargeback import api
from chargeback.core.settings import Settings, current, using
from chargeback.ingest.usage import ImportResult
from chargeback.store import db
from chargeback.store.schema import STATEMENT_CHECKED, Base

#: `pytest --hypothesis-profile=long`: many more examples and longer model-based runs; the
#: kill, race and fuzz tests also run more rounds (see tests/reliability.py).
settings.register_profile(
    "long", max_examples=200, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)


def model_differences(conn: Connection) -> list[object]:
    """What Alembic finds between the database's schema and the models (nothing, when the
    migrations build the models). On PostgreSQL the foreign keys of `STATEMENT_CHECKED`
    are triggers instead (migration 0008), which `test_schema` checks by what they refuse."""

    def include(obj: object, name: str | None, kind: str, reflected: bool, compare_to: object) -> bool:
        return not (
            kind == "foreign_key_constraint" and conn.dialect.name == "postgresql" and name in STATEMENT_CHECKED
        )

    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "compare_server_default": False, "include_object": include}
    )
    return list(compare_metadata(context, Base.metadata))


HERE = Path(__file__).parent
BOOKS = HERE / "books"


def _worker_database(url: str | None) -> str | None:
    """Under pytest-xdist each worker gets a database of its own on the same server
    (`chargeback_test_gw0`, ...), created when missing, since tests reset the schema."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not url or not worker:
        return url
    address, _, query = url.partition("?")
    server, name = address.rsplit("/", 1)
    database = f"{name}_{worker}"
    engine = create_engine(
        f"{server}/{name}".replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as conn:
        if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": database}).first() is None:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
    engine.dispose()
    return f"{server}/{database}" + (f"?{query}" if query else "")


PG_URL = _worker_database(os.environ.get("CHARGEBACK_TEST_PG"))
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {report.longrepr}"


#: Empties a PostgreSQL database: the benchmark's own (benchmarks/postgres.py).
reset_postgres = benchmark_script("postgres").reset_postgres


@pytest.fixture
def tuned() -> Iterator[Callable[..., Settings]]:
    """Set the engine's thresholds for the test, `tuned(rows_per_insert=3)`, instead of
    patching a module's names; the defaults are back after it."""
    with ExitStack() as stack:

        def tune(**changes: Any) -> Settings:
            return stack.enter_context(using(replace(current(), **changes)))

        yield tune


@pytest.fixture
def pg_url() -> str:
    if not PG_URL:
        pytest.skip("no PostgreSQL server: set CHARGEBACK_TEST_PG (see scripts/start-postgres.sh)")
    reset_postgres(PG_URL)
    return PG_URL


#: Test modules about the schema's migrations themselves: their SQLite files start empty.
FROM_AN_EMPTY_FILE = {"test_migrations", "test_audit", "test_seals", "test_schema"}


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database at the newest schema, made once per test process: every
    test gets a copy of it, since migrating a new file through every migration takes a
    quarter of a second and most tests start from one."""
    path = tmp_path_factory.mktemp("migrated") / "chargeback.db"
    engine = db.connect(f"sqlite:///{path}")
    db.upgrade(engine)
    engine.dispose()
    return path


def _new_sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    path = tmp_path / "chargeback.db"
    if request.module.__name__ not in FROM_AN_EMPTY_FILE:
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return _new_sqlite(request, tmp_path)
    return request.getfixturevalue("pg_url")


@pytest.fixture
def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _new_sqlite(request, tmp_path)


def write_csv(path: Path, header: list[str], rows: list[list[object]], bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def mini_book(tmp_path: Path) -> Path:
    """A copy of the contract's mini book (tests may change it)."""
    target = tmp_path / "mini"
    shutil.copytree(BOOKS / "mini", target)
    return target


def load_the_mini_book(url: str, book: Path, folder: Path) -> None:
    api.load(url, book)


@pytest.fixture
def loaded(request: pytest.FixtureRequest, db_url: str) -> str:
    """A database with the mini book loaded and nothing imported."""
    return built_state(request, db_url, "loaded", load_the_mini_book)


@pytest.fixture
def imported(loaded: str, mini_book: Path) -> str:
    """`loaded` with the mini book's March usage imported (usage/2026-03.csv), nothing closed."""
    api.import_file(loaded, mini_book / "usage" / "2026-03.csv", "2026-03")
    return loaded


#: What a state's `build(url, book, folder)` does: brings the database `url` to the state
#: from the book folder `book`, writing its files (documents, usage files, keys) in `folder`.
Build = Callable[[str, Path, Path], None]


@pytest.fixture(scope="session")
def sqlite_states() -> dict[str, Path]:
    """The folders of the states `built_state` made in this test process, by name."""
    return {}


def built_state(request: pytest.FixtureRequest, url: str, name: str, build: Build) -> str:
    """The test's database `url` (its `db_url`) in the state `build` leaves it, with the
    files it wrote under the test's `tmp_path` and the book as `build` left it in the
    test's `mini_book`. On PostgreSQL `build` runs for the test. On SQLite it runs once
    per test process, on a copy of the migrated empty file (the schema a new file gets
    at the build's first `load`), in a folder laid out as `tmp_path` is; each test gets a
    copy of that database file and of those files, so what a test changes (a tampered
    entry, another close, the book) is its own. The database's copy is SQLite's backup of
    it, whole even with a write-ahead log. Paths the database records (the audit log's
    arguments) are then those of the state's folder, not the test's."""
    tmp_path: Path = request.getfixturevalue("tmp_path")
    mini_book: Path = request.getfixturevalue("mini_book")
    if not url.startswith("sqlite:///"):
        build(url, mini_book, tmp_path)
        return url
    states = request.getfixturevalue("sqlite_states")
    start: Path = request.getfixturevalue("migrated_sqlite")
    if name not in states:
        state = request.getfixturevalue("tmp_path_factory").mktemp(name)
        files = state / "files"
        book = shutil.copytree(BOOKS / "mini", files / "mini")  # where the test's `mini_book` is
        states[name] = _sqlite_state(state, start, lambda building: build(building, book, files))
    shutil.copyfile(states[name] / start.name, url.removeprefix("sqlite:///"))
    shutil.copytree(states[name] / "files", tmp_path, dirs_exist_ok=True)
    return url


def _sqlite_state(state: Path, start: Path, build: Callable[[str], object]) -> Path:
    """`build(url)` run on a copy of the database file `start` (or a new file if there is
    none), which is then `state / start.name`, made whole: SQLite's backup of it."""
    building = state / "building" / start.name
    building.parent.mkdir()
    if start.exists():
        shutil.copyfile(start, building)
    build(f"sqlite:///{building}")
    gc.collect()  # the engines the build made, and their connections
    with closing(sqlite3.connect(building)) as source, closing(sqlite3.connect(state / start.name)) as copy:
        source.backup(copy)
    shutil.rmtree(building.parent)
    return state


def close_the_mini_book(url: str, book: Path, folder: Path) -> None:
    """The mini book's months imported and closed (`run`), documents in `folder/out`."""
    api.run(url, book, folder / "out")
    assert api.verify(url).ok


@pytest.fixture
def closed(request: pytest.FixtureRequest, db_url: str) -> str:
    """A database with the mini book's two months closed, their documents in tmp_path/out."""
    return built_state(request, db_url, "closed", close_the_mini_book)


@pytest.fixture(scope="session")
def documents_book_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`documents_book.build`'s database (db.sqlite) and folder (files/), made once per
    test process for the modules that read its documents."""
    from documents_book import build

    state = tmp_path_factory.mktemp("documents_book")
    (state / "files").mkdir()
    return _sqlite_state(state, state / "db.sqlite", lambda url: build(url, state / "files"))


def documents_book_copy(state: Path, folder: Path) -> tuple[str, Path]:
    """A copy of `documents_book_state` in `folder`: its database's URL and its documents folder."""
    shutil.copyfile(state / "db.sqlite", folder / "db.sqlite")
    shutil.copytree(state / "files", folder, dirs_exist_ok=True)
    return f"sqlite:///{folder / 'db.sqlite'}", folder / "out"


USAGE_HEADER = ["date", "service", "consumer", "quantity", "reference", "description"]


def usage_file(folder: Path, name: str, rows: list[list[object]], bom: bool = False) -> Path:
    return write_csv(folder / name, USAGE_HEADER, rows, bom=bom)


def csv_rows(text: str) -> list[list[object]]:
    """Rows written as the CSV file shows them, one a line, without the header (a usage
    line: `"2026-03-02,HELP,ART,1.5,T-1,Laptop"`; several in a triple-quoted block); blank
    lines and the block's indentation are left out."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [list(row) for row in csv.reader(lines)]


def import_rows(
    url: str, folder: Path, rows: list[list[object]] | str, period: str = "2026-03", name: str = "usage.csv"
) -> ImportResult:
    """Write `rows` (lists, or CSV text as `csv_rows` reads it) as the usage file `name`
    in `folder` and import it into `period`."""
    lines = csv_rows(rows) if isinstance(rows, str) else rows
    return api.import_file(url, usage_file(folder, name, lines), period)


@contextmanager
def full_disk(filled: Callable[[str], bool]) -> Iterator[None]:
    """Inside it, opening a file for writing fails as on a full disk (ENOSPC) when
    `filled(path)` says so: `with full_disk(lambda path: path.endswith(".xlsx")): ...`."""
    real_open = builtins.open

    def open_on_a_full_disk(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "w" in str(mode) and filled(str(file)):
            raise OSError(28, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(builtins, "open", open_on_a_full_disk)
        patch.setattr(io, "open", open_on_a_full_disk)
        yield


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1 (for a test's own server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
