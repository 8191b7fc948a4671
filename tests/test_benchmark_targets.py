"""The benchmark's verdicts on the issue's targets are computed from its figures, not written by hand."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from benchmark_scripts import benchmark_script

# the benchmark itself at small sizes
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run() -> ModuleType:
    return benchmark_script("run")


def result(
    lines: int, database: str, imported: float, closed: float, report: float, peak: int, ledger: float | None
) -> dict[str, Any]:
    phases = {
        name: {"seconds": s, "peak_mb": peak}
        for name, s in (("load", 1.0), ("import", imported), ("close", closed), ("report", report))
    }
    r: dict[str, Any] = {"shape": "skewed", "lines": lines, "database": database, "phases": phases}
    if ledger is not None:
        r["ledger"] = {"seconds": ledger, "peak_mb": 2000}
    return r


def test_targets(run: ModuleType) -> None:
    results = [
        result(1_000_000, "sqlite", 6.0, 8.0, 50.0, 900, 20.0),  # 0.7x, 2.5x: just met
        result(1_000_000, "postgresql", 9.0, 13.0, 51.0, 1100, 20.0),  # 1.57x SQLite, 1.1 GB
        result(10_000_000, "sqlite", 60.0, 100.0, 400.0, 3000, None),  # 11.4x the million
        result(10_000_000, "postgresql", 100.0, 200.0, 500.0, 3100, None),
    ]
    run.ratios(results)
    verdicts = {(v.target, v.database): (v.figure, v.verdict) for v in run.judge(results)}
    assert verdicts[("import + close, SQLite, / ledger bal", "sqlite")] == (0.7, "met")
    assert verdicts[("report / ledger bal", "sqlite")] == (2.5, "met")
    assert verdicts[("report / ledger bal", "postgresql")] == (2.55, "missed")
    assert verdicts[("peak memory, any phase", "sqlite")] == (900, "met")
    assert verdicts[("peak memory, any phase", "postgresql")] == (1100, "missed")
    assert verdicts[("import + close, PostgreSQL / SQLite", "postgresql")] == (1.57, "missed")
    assert verdicts[("import + close, 10M / 1M", "sqlite")] == (11.43, "met")
    assert verdicts[("import + close, 10M / 1M", "postgresql")] == (13.64, "missed")
    assert verdicts[("peak memory at 10M, any phase", "sqlite")] == (3000, "met")
    assert verdicts[("peak memory at 10M, any phase", "postgresql")] == (3100, "missed")


def test_below_a_million_the_verdicts_are_indicative(run: ModuleType) -> None:
    results = [result(100_000, "sqlite", 1.0, 1.0, 10.0, 200, 1.0)]
    run.ratios(results)
    verdicts = run.judge(results)
    assert {v.lines for v in verdicts} == {100_000}
    assert {v.verdict for v in verdicts} == {"indicative: missed", "indicative: met"}
    assert "10M" not in run.markdown(results, verdicts, ["ledger"]).split("Targets")[1]
