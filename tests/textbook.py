"""A worked cost-accounting example in the textbook's form: three support departments that
serve each other and three operating departments.

Support: Facilities (FAC, cost spread by square feet), Human Resources (HR, by
headcount) and Information Technology (IT, by computer hours). Operating: Machining
(MACH), Assembly (ASSY), Packaging (PACK). Each support department's own row of its
driver is ignored (a department does not charge itself).

Service provided, as the textbook tabulates it (share of each support department's
driver, its own use left out):

|            | FAC  | HR  | IT  | MACH | ASSY | PACK |
|------------|------|-----|-----|------|------|------|
| FAC (sqft) |  -   | 10% | 10% | 30%  | 25%  | 25%  |
| HR (heads) | 15%  |  -  | 10% | 25%  | 40%  | 10%  |
| IT (hours) | 20%  | 20% |  -  | 15%  | 20%  | 25%  |

Costs to spread: FAC 77,730.25; HR 82,820.00; IT 61,900.00 (222,450.25 in all).
Step order: FAC, HR, IT.

The expected figures below were worked by hand (exact fractions, then half-up rounding of
each pool's total and the largest remainder split) and checked against an independent
rational solver; see `test_allocation.py` for the derivations that matter.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from chargeback.core.allocation import PoolSpec

SUPPORT = ("FAC", "HR", "IT")
OPERATING = ("MACH", "ASSY", "PACK")
COSTS = {"P-FAC": 7_773_025, "P-HR": 8_282_000, "P-IT": 6_190_000}  # minor units (cents)
SQFT = {"FAC": 500, "HR": 1000, "IT": 1000, "MACH": 3000, "ASSY": 2500, "PACK": 2500}
HEADCOUNT = {"FAC": 15, "HR": 5, "IT": 10, "MACH": 25, "ASSY": 40, "PACK": 10}
HOURS = {"FAC": 200, "HR": 200, "IT": 50, "MACH": 150, "ASSY": 200, "PACK": 250}
POOLS = (
    ("P-FAC", "FAC", "sqft", SQFT, 1),
    ("P-HR", "HR", "headcount", HEADCOUNT, 2),
    ("P-IT", "IT", "hours", HOURS, 3),
)

DIRECT = {
    "P-FAC": {"MACH": 2_914_885, "ASSY": 2_429_070, "PACK": 2_429_070},
    "P-HR": {"MACH": 2_760_667, "ASSY": 4_417_067, "PACK": 1_104_266},
    "P-IT": {"MACH": 1_547_500, "ASSY": 2_063_333, "PACK": 2_579_167},
}
STEP = {
    "P-FAC": {"HR": 777_303, "IT": 777_303, "MACH": 2_331_907, "ASSY": 1_943_256, "PACK": 1_943_256},
    "P-HR": {"IT": 1_065_800, "MACH": 2_664_501, "ASSY": 4_263_202, "PACK": 1_065_800},
    "P-IT": {"MACH": 2_008_276, "ASSY": 2_677_701, "PACK": 3_347_126},
}
STEP_TOTALS = {"P-FAC": 7_773_025, "P-HR": 9_059_303, "P-IT": 8_033_103}
RECIPROCAL = {
    "P-FAC": {"HR": 1_111_618, "IT": 1_111_617, "MACH": 3_334_852, "ASSY": 2_779_044, "PACK": 2_779_044},
    "P-HR": {"FAC": 1_661_318, "IT": 1_107_545, "MACH": 2_768_862, "ASSY": 4_430_180, "PACK": 1_107_545},
    "P-IT": {"FAC": 1_681_833, "HR": 1_681_832, "MACH": 1_261_374, "ASSY": 1_681_833, "PACK": 2_102_291},
}
#: The exact reciprocal totals, in currency units: P-IT's is a tie at half a cent.
RECIPROCAL_EXACT = {"P-FAC": Fraction("111161.75"), "P-HR": Fraction("110754.50"), "P-IT": Fraction("84091.625")}
RECIPROCAL_TOTALS = {"P-FAC": 11_116_175, "P-HR": 11_075_450, "P-IT": 8_409_163}
EXPECTED = {"direct": DIRECT, "step": STEP, "reciprocal": RECIPROCAL}
OPERATING_TOTALS = {
    "direct": {"MACH": 7_223_052, "ASSY": 8_909_470, "PACK": 6_112_503},
    "step": {"MACH": 7_004_684, "ASSY": 8_884_159, "PACK": 6_356_182},
    "reciprocal": {"MACH": 7_365_088, "ASSY": 8_891_057, "PACK": 5_988_880},
}


def pool_specs() -> list[PoolSpec]:
    return [
        PoolSpec(code, provider, COSTS[code], {u: Fraction(v) for u, v in values.items()}, order)
        for code, provider, _, values, order in POOLS
    ]


def write_book(folder: Path, method: str, period: str = "2026-03") -> Path:
    """The example as a chargeback book: the departments under one parent, a service per
    support department, the pools spread over `*`, the drivers and the costs."""
    from conftest import write_csv

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "book.toml").write_text(
        f'name = "Textbook Manufacturing"\ncurrency = "USD"\nallocation_method = "{method}"\n'
    )
    write_csv(
        folder / "units.csv",
        ["code", "name", "kind", "parent"],
        [["CO", "The Company", "internal", ""]]
        + [[u, f"Department {u}", "internal", "CO"] for u in SUPPORT + OPERATING],
    )
    write_csv(
        folder / "services.csv",
        ["code", "provider", "name", "unit_of_measure"],
        [[f"{u}-OH", u, f"{u} overhead", "share"] for u in SUPPORT],
    )
    write_csv(folder / "rates.csv", ["service", "effective_from", "rate"], [])
    write_csv(
        folder / "allocations.csv",
        ["pool", "provider", "service", "driver", "targets", "order"],
        [[code, provider, f"{provider}-OH", driver, "*", order] for code, provider, driver, _, order in POOLS],
    )
    write_csv(
        folder / "costs.csv",
        ["period", "pool", "amount"],
        [[period, code, f"{COSTS[code] / 100:.2f}"] for code in COSTS],
    )
    write_csv(
        folder / "drivers.csv",
        ["period", "driver", "unit", "value"],
        [[period, driver, unit, value] for _, _, driver, values, _ in POOLS for unit, value in values.items()],
    )
    return folder
