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
    # allocations of facilities and HR; August and September include the print tier.
    # August's file-share availability of 98.6% misses its 99.9% target (band below 99.0:
    # 25%): LAB-GEN 25% of 250.00 = 62.50, Med_Sch of 62.50 = 15.625 -> 15.63, PHYS of 6.25
    # = 1.5625 -> 1.56; 79.69 in all, off 268,514.67.
    # September also has the AWS bill: 749.11 charged to CS, BIO, CHEM and LAB-GEN and
    # 47.95 (an unused commitment, an untagged row and tax) spread from the cloud pool
    expected = {
        "2026-07": ("271960.98", "8341.78"),
        "2026-08": ("268434.98", "11436.03"),
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
    assert [m.period for m in result.measurements] == ["2026-07", "2026-08", "2026-09"]
    august = next(c for c in result.closes if c.period == "2026-08")
    assert august.service_levels is not None
    assert {(r.consumer, r.credit_minor) for r in august.service_levels.rows if r.credit_minor} == {
        ("LAB-GEN", 6250),
        ("Med_Sch", 1563),
        ("PHYS", 156),
    }
    (bill,) = result.cloud
    assert (bill.rows, bill.buckets["charged"], bill.billed) == (10, (6, Decimal("749.11")), Decimal("1803.50"))
    assert (tmp_path / "out" / "2026-09" / "cloud.xlsx").exists()


def test_the_demo_books_readme_gives_the_totals_the_demo_prints(tmp_path: Path) -> None:
    """ledgers/demo/README.md's table: each column is what the journal holds (internal
    entries by kind) and the internal total is what `reconcile` prints."""
    from decimal import Decimal

    from sqlalchemy import func, select

    from chargeback.store import db
    from chargeback.store.schema import Entry

    readme = (api.demo_book() / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| period | usage |") :].split("\n\n")[0].splitlines()
    assert table[0].split("|")[1:-1] == [
        " period ",
        " usage ",
        " recurring ",
        " allocations ",
        " SLA credits ",
        " internal total (revenue = spend) ",
        " external revenue ",
    ]
    rows = {
        cells[0]: [Decimal(c.replace(",", "")) for c in cells[1:]]
        for cells in ([c.strip() for c in line.split("|")[1:-1]] for line in table[2:])
    }
    result, url = api.demo(tmp_path / "out")
    assert sorted(rows) == [c.period for c in result.closes]
    with db.transaction(db.connect(url)) as conn:
        by_kind = {
            (period, kind): Decimal(minor) / 100
            for period, kind, minor in conn.execute(
                select(Entry.period, Entry.kind, func.sum(Entry.amount_minor))
                .where(Entry.debit_account.like("expenses:internal:%"))
                .group_by(Entry.period, Entry.kind)
            )
        }
    for period, (usage, recurring, allocations, credits, internal, external) in rows.items():
        assert (usage, recurring, allocations, credits) == tuple(
            by_kind.get((period, kind), Decimal(0)) for kind in ("usage", "recurring", "allocation", "sla_credit")
        )
        assert usage + recurring + allocations + credits == internal
        rec = api.reconcile(url, period).as_json()
        assert (Decimal(rec["internal_revenue"]), Decimal(rec["external_revenue"])) == (internal, external)
