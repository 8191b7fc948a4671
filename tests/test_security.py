"""Security of the output and of secrets: text from input files never runs as a formula
in any CSV or workbook written, HTML is escaped, a file name never leaves its folder
whatever the unit code, and a database URL's password never appears in any message,
audit record or document."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import PG_URL, reset_postgres, usage_file
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from reliability import chargeback, engine_for
from sqlalchemy import text

from chargeback import api
from chargeback.core.safe import FORMULA_STARTS, file_in, neutralize

PAYLOADS = [
    '=HYPERLINK("http://evil.example","x")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "=1+1\n",
]
HTML = "<script>alert('pwn')</script>"


def test_neutralize_covers_the_owasp_list() -> None:
    assert set("=+-@\t\r\n") <= {s[0] for s in FORMULA_STARTS}
    for payload in PAYLOADS:
        assert neutralize(payload) == "'" + payload
    assert neutralize("Laptop setup") == "Laptop setup" and neutralize(None) is None


def _hostile_book(book: Path) -> None:
    units = (book / "units.csv").read_text().replace("Art Department", f"{HTML} =HYPERLINK(1)")
    (book / "units.csv").write_text(units.replace("Mathematics", "=1+1 Maths"))


def _cells(path: Path) -> list[tuple[str, object, str]]:
    """(file, value, type) of every cell of a CSV or XLSX file."""
    found = []
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            found += [(path.name, cell, "s") for row in csv.reader(handle) for cell in row]
    elif path.suffix == ".xlsx":
        book = load_workbook(path)
        for sheet in book.worksheets:
            for row in sheet.iter_rows():
                found += [(f"{path.name}:{sheet.title}", c.value, c.data_type) for c in row if c.value is not None]
    return found


def test_no_input_text_runs_as_a_formula_in_any_document(loaded: str, mini_book: Path, tmp_path: Path) -> None:
    _hostile_book(mini_book)
    api.load(loaded, mini_book)
    rows = [["2026-03-02", "HELP", "ART", "1", f"INJ-{i}", payload] for i, payload in enumerate(PAYLOADS)]
    rows += [["2026-03-03", "HELP", "MATH", "2", "=1+2", HTML], ["2026-03-04", "VAN", "EXT-1", "1", "@A1", "ok"]]
    (mini_book / "rates.csv").write_text((mini_book / "rates.csv").read_text() + "VAN,external,2026-01-01,,80\n")
    api.load(loaded, mini_book)
    api.import_file(loaded, usage_file(tmp_path, "inj.csv", rows), "2026-03")
    api.adjust(loaded, "2026-03", "HELP", "ART", "-1.00", '=HYPERLINK("http://evil.example")')
    out = tmp_path / "out"
    api.close(loaded, "2026-03", out)
    api.export(loaded, "2026-03", "csv", tmp_path / "journal.csv")
    files = [p for p in (out / "2026-03").rglob("*") if p.suffix in (".csv", ".xlsx")] + [tmp_path / "journal.csv"]
    assert files
    checked = 0
    for where, value, kind in (cell for path in files for cell in _cells(path)):
        if kind == "f":  # a formula the engine wrote (a total): it must not carry input text
            assert "evil" not in str(value) and "cmd" not in str(value), (where, value)
            continue
        if isinstance(value, str) and value.startswith(FORMULA_STARTS):
            try:
                float(value)  # a number written as text in a CSV (a credit: -1.00) is data, not a formula
            except ValueError:
                pytest.fail(f"{where}: {value!r} would run as a formula")
        checked += 1
    assert checked > 0
    for page in (out / "2026-03").rglob("*.html"):
        assert "<script>alert" not in page.read_text(encoding="utf-8"), page


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.sampled_from([".html", ".xlsx", ""]))
def test_a_file_name_never_leaves_its_folder(tmp_path_factory: pytest.TempPathFactory, code: str, suffix: str) -> None:
    folder = tmp_path_factory.getbasetemp() / "docs"
    folder.mkdir(exist_ok=True)
    try:
        path = file_in(folder, code, suffix)
    except ValueError:
        return
    assert path.parent == folder.resolve() and path.name.endswith(suffix) and not path.name.startswith(".")


@pytest.mark.parametrize("code", ["../../etc/passwd", "..", ".", "/abs", "a/b", "C:\\x", "\x00", "CON", ""])
def test_known_escapes_are_named_inside_the_folder(tmp_path: Path, code: str) -> None:
    path = file_in(tmp_path, code, ".html")
    assert path.parent == tmp_path.resolve()


SECRET = "Zq9-not-in-any-output-7731"


@pytest.fixture
def secret_url(pg_url: str) -> str:
    """The test database reached as a role whose password is distinctive."""
    engine = engine_for(pg_url)
    with engine.begin() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = 'cb_secret_probe'")).first()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(text(f"{verb} ROLE cb_secret_probe LOGIN SUPERUSER PASSWORD '{SECRET}'"))
    engine.dispose()
    return pg_url.replace("//chargeback:chargeback@", f"//cb_secret_probe:{SECRET}@", 1)


@pytest.mark.slow
def test_a_database_password_never_appears(secret_url: str, mini_book: Path, tmp_path: Path) -> None:
    bad = usage_file(tmp_path, "bad.csv", [["2026-03-02", "HELP", "NOBODY", "1", "R-1", ""]])
    good = mini_book / "usage" / "2026-03.csv"
    out = tmp_path / "out"
    wrong_password = secret_url.replace(SECRET, SECRET + "-wrong")
    no_server = secret_url.rsplit("@", 1)[0] + "@127.0.0.1:1/nowhere"
    no_database = secret_url.rsplit("/", 1)[0] + "/no_such_database"
    runs = [
        (secret_url, "init"),
        (secret_url, "load", str(mini_book)),
        (secret_url, "import", str(bad), "--period", "2026-03"),
        (secret_url, "import", str(good), "--period", "2026-03"),
        (secret_url, "close", "2026-03", "--out", str(out)),
        (secret_url, "close", "2026-03", "--out", str(out)),
        (secret_url, "audit"),
        (secret_url, "audit", "--json"),
        (secret_url, "verify"),
        (secret_url, "reconcile", "2026-03", "--json"),
        (secret_url, "export", "2026-03", "--format", "hledger"),
        (secret_url, "--debug", "reopen", "2026-04", "--reason", "x"),
        (wrong_password, "verify"),
        (wrong_password, "--debug", "load", str(mini_book)),
        (no_server, "verify"),
        (no_database, "--debug", "verify"),
        (secret_url.replace("postgresql://", "mysql://"), "verify"),
        (secret_url.replace("@127.0.0.1:", "@127.0.0.1:notaport").rsplit("/", 1)[0] + "x/db", "verify"),
    ]
    failures = 0
    for url, *args in runs:
        done = chargeback("--db", url, *args, cwd=tmp_path)
        assert SECRET not in done.stdout + done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr or "--debug" in args
        failures += done.returncode != 0
    assert failures >= 8
    env_run = chargeback("verify", cwd=tmp_path)  # CHARGEBACK_DB is not set: the default SQLite file
    assert SECRET not in env_run.stdout + env_run.stderr
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    records = json.loads(chargeback("--db", secret_url, "audit", "--json").stdout)
    assert records and SECRET not in json.dumps(records)
    reset_postgres(PG_URL)
