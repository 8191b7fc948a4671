"""benchmarks/focus.py: a seeded FOCUS month, the same bytes for the same seed, that the
cloud import reads into every bucket."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import polars as pl
import pytest
from benchmark_scripts import benchmark_script

from chargeback import api


@pytest.fixture(scope="module")
def focus() -> ModuleType:
    return benchmark_script("focus")


def test_a_seed_gives_the_same_bill_and_another_seed_another(focus: ModuleType, tmp_path: Path) -> None:
    one = focus.generate(tmp_path / "a" / "bill.csv", 3000, seed=1)
    again = focus.generate(tmp_path / "b" / "bill.csv", 3000, seed=1)
    other = focus.generate(tmp_path / "c" / "bill.csv", 3000, seed=2)
    assert one.read_bytes() == again.read_bytes() != other.read_bytes()
    bill = pl.read_csv(one, infer_schema=False)
    assert bill.columns == focus.COLUMNS and bill.height == 3000
    # tag skew: the most frequent team has several times the rows of the median one
    teams = bill["Tags"].str.json_path_match("$.team").value_counts()["count"]
    assert teams.max() > 3 * teams.median()


def test_the_generated_bill_imports_into_every_bucket(focus: ModuleType, tmp_path: Path) -> None:
    book = focus.write_book(tmp_path / "book")
    bill = focus.generate(tmp_path / "focus-2026-03.csv.gz", 20_000, seed=3)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    api.load(url, book)
    result = api.import_cloud_bill(url, bill, "2026-03")
    assert result.rows == 20_000
    assert set(result.buckets) == {"charged", "purchase", "unused", "untagged", "unmatched"}
    assert sum(rows for rows, _ in result.buckets.values()) == 20_000
    assert 0 < result.lines < 20_000
