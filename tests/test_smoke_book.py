"""The contract's mini book, run end to end, gives the contract's figures."""

import json
from pathlib import Path

from chargeback import api

EXPECTED = json.loads((Path(__file__).parent / "books" / "expected.json").read_text())


def test_mini_book_matches_the_contract(db_url: str, mini_book: Path, tmp_path: Path) -> None:
    result = api.run(db_url, mini_book, tmp_path / "out")
    assert [c.period for c in result.closes] == ["2026-03", "2026-04"]
    for period in ("2026-03", "2026-04"):
        got = api.reconcile(db_url, period).as_json()
        assert got["status"] == "closed" and got["balanced"] is True
        for key, value in EXPECTED[period].items():
            assert got[key] == value, (period, key)
    assert api.verify(db_url).ok
