"""Service levels: SLAs in the book, measurements imported, credits posted at close as
journal entries of kind `sla_credit` (net zero kept), re-close deltas, the documents and
the fiscal-year report; on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import usage_file, write_csv
from sqlalchemy import select

from chargeback import api
from chargeback.core.errors import InputRefused, Refused
from chargeback.store import db
from chargeback.store.schema import Entry

SLA_HEADER = ["service", "metric", "unit", "target", "direction", "customer_class", "effective_from", "effective_to"]
SLAS = [
    ["HELP", "availability", "percent", "99.9", "min", "internal", "2026-01-01", ""],
    ["HELP", "availability", "percent", "99.9", "min", "external", "2026-01-01", ""],
    ["HELP", "response_time", "hours", "4", "max", "", "2026-01-01", ""],
]
BANDS = [
    ["HELP", "availability", "99.9", "10"],
    ["HELP", "availability", "99.0", "25"],
    ["HELP", "availability", "95.0", "50"],
    ["HELP", "availability", "50", "100"],
    ["HELP", "response_time", "4", "5"],
    ["HELP", "response_time", "8", "20"],
]
MEASURED = [
    ["HELP", "availability", "98.7", "", "outage on the 12th"],
    ["HELP", "availability", "99.95", "MATH", "MATH is on the other site"],
    ["HELP", "response_time", "6", "", ""],
    ["HELP", "response_time", "9", "ART", ""],
]


def sla_book(book: Path, missing: str | None = None) -> Path:
    write_csv(book / "slas.csv", SLA_HEADER, SLAS)
    write_csv(book / "sla_credits.csv", ["service", "metric", "breach_from", "credit_percent"], BANDS)
    if missing:
        toml = book / "book.toml"
        toml.write_text(toml.read_text() + f'sla_missing = "{missing}"\n')
    usage_file(
        book / "usage",
        "2026-03.csv",
        [
            ["2026-03-02", "HELP", "ART", "10.5", "H-1", ""],
            ["2026-03-05", "HELP", "MATH", "3.333", "H-2", ""],
            ["2026-03-06", "HELP", "EXT-1", "2", "H-3", ""],
            ["2026-03-07", "VAN", "ART", "2", "V-1", ""],
        ],
    )
    return book


def measurements(folder: Path, rows: list[list[str]], name: str = "sla-2026-03.csv") -> Path:
    return write_csv(folder / name, ["service", "metric", "value", "consumer", "note"], rows)


def credits(url: str, period: str = "2026-03") -> dict[tuple[str, str], int]:
    """Net SLA credit per (consumer, metric) in minor units, as posted (negative)."""
    found: dict[tuple[str, str], int] = {}
    with db.connect(url).connect() as conn:
        for row in conn.execute(select(Entry.__table__).where(Entry.period == period, Entry.kind == "sla_credit")):
            key = (row.consumer, row.source.split(":")[2])
            found[key] = found.get(key, 0) + row.amount_minor
    return {k: v for k, v in found.items() if v}


@pytest.fixture
def sla_loaded(db_url: str, mini_book: Path, tmp_path: Path) -> str:
    sla_book(mini_book)
    api.load(db_url, mini_book)
    api.import_file(db_url, mini_book / "usage" / "2026-03.csv", "2026-03")
    return db_url


def test_a_miss_credits_each_consumer_a_share_of_its_charges(sla_loaded: str, tmp_path: Path) -> None:
    url = sla_loaded
    result = api.sla_import(url, measurements(tmp_path, MEASURED), "2026-03")
    assert (result.lines_read, result.imported) == (4, 4)
    closed = api.close(url, "2026-03", tmp_path / "out")
    # ART: 630.00 of help; availability 98.7 < 99.0: 25% = 157.50; its own response time
    # 9 hours > 8: 20% = 126.00. MATH: 199.98; its own availability 99.95 is met (the
    # unit's measurement wins); 6 hours > 4: 5% = 9.999, rounded once: 10.00. EXT-1
    # (external SLA): 25% of 180.00 = 45.00; the response-time SLA is internal only.
    assert credits(url) == {
        ("ART", "availability"): -15750,
        ("ART", "response_time"): -12600,
        ("MATH", "response_time"): -1000,
        ("EXT-1", "availability"): -4500,
    }
    rec = closed.reconciliation
    assert rec.balanced
    # IT's revenue falls by what its consumers' spend falls: 630 + 199.98 - 283.50 - 10.
    assert rec.providers["IT"] == (63000 + 19998 - 28350 - 1000, 18000 - 4500)
    with db.connect(url).connect() as conn:
        art = conn.execute(
            select(Entry.__table__).where(
                Entry.kind == "sla_credit", Entry.consumer == "ART", Entry.source.like("%availability%")
            )
        ).one()
    assert art.debit_account == "expenses:internal:ART" and art.credit_account == "revenue:internal:IT"
    assert art.rate_source == "HELP availability 98.7% < 99%: 25%"
    assert art.source == "sla:HELP:availability:2026-03:ART"
    assert api.verify(url).ok
    assert any("SLA missed: HELP availability 98.7% < 99%: 25%" in line for line in closed.review.service_levels)
