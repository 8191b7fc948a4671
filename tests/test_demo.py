"""The bundled demo book: three months close balanced, with the totals worked out
independently when the book was written (each line rounded half up, recurring fees
included)."""

from pathlib import Path

import pytest

from chargeback import api


@pytest.mark.slow
def test_demo_closes_three_balanced_months(tmp_path: Path) -> None:
    result, url = api.demo(tmp_path / "out")
    assert [c.period for c in result.closes] == ["2026-07", "2026-08", "2026-09"]
    # usage and recurring fees (worked out when the book was written), plus the step-down
    # allocations of facilities and HR; August and September include the print tier
    expected = {
        "2026-07": ("271960.98", "8341.78"),
        "2026-08": ("268514.67", "11436.03"),
        "2026-09": ("274401.12", "10100.01"),
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
    for period, (usage, recurring, allocations, internal, external) in rows.items():
        assert (usage, recurring, allocations) == tuple(
            by_kind.get((period, kind), Decimal(0)) for kind in ("usage", "recurring", "allocation")
        )
        assert usage + recurring + allocations == internal
        rec = api.reconcile(url, period).as_json()
        assert (Decimal(rec["internal_revenue"]), Decimal(rec["external_revenue"])) == (internal, external)
