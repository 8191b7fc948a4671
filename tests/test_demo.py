"""The bundled demo book: three months close balanced, with the totals worked out
independently when the book was written (each line rounded half up, recurring fees
included)."""

from decimal import Decimal
from pathlib import Path

from chargeback import api


def test_demo_closes_three_balanced_months(tmp_path: Path) -> None:
    result, url = api.demo(tmp_path / "out")
    assert [c.period for c in result.closes] == ["2026-07", "2026-08", "2026-09"]
    # usage and recurring fees (worked out when the book was written), plus the step-down
    # allocations of facilities and HR; August and September include the print tier;
    # September also has the AWS bill: 749.11 charged to CS, BIO, CHEM and LAB-GEN and
    # 47.95 (an unused commitment, an untagged row and tax) spread from the cloud pool
    expected = {
        "2026-07": ("271960.98", "8341.78"),
        "2026-08": ("268514.67", "11436.03"),
        "2026-09": (str(Decimal("274401.12") + Decimal("749.11") + Decimal("47.95")), "10100.01"),
    }
    for period, (internal, external) in expected.items():
        rec = api.reconcile(url, period).as_json()
        assert (rec["internal_revenue"], rec["internal_spend"], rec["external_revenue"]) == (
            internal,
            internal,
            external,
        )
        assert rec["balanced"] and rec["status"] == "closed"
        assert (tmp_path / "out" / period / "manifest.json").exists()
    september = [i for i in result.imports if i.period == "2026-09"]
    assert sum(i.credits for i in september) == 1
    assert sum(i.late for i in result.imports if i.period == "2026-08") == 1
    assert any(i.file.endswith(".xlsx") for i in september)
    assert api.verify(url).ok
    (bill,) = result.cloud
    assert (bill.rows, bill.buckets["charged"], bill.billed) == (10, (6, Decimal("749.11")), Decimal("1803.50"))
    assert (tmp_path / "out" / "2026-09" / "cloud.xlsx").exists()
