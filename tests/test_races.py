"""Two closes of one period at the same time on PostgreSQL: one wins, the other is
refused cleanly, and nothing is posted twice."""

import threading
from pathlib import Path

from conftest import usage_file
from sqlalchemy import text

from chargeback import api
from chargeback.core.errors import Refused
from chargeback.store import db


def test_two_simultaneous_closes_one_wins(pg_url: str, mini_book: Path, tmp_path: Path) -> None:
    api.load(pg_url, mini_book)
    rows = [[f"2026-03-{1 + i % 28:02d}", "HELP", "ART", "1", f"T-{i}", ""] for i in range(5000)]
    api.import_file(pg_url, usage_file(tmp_path, "big.csv", rows), "2026-03")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def close(n: int) -> None:
        barrier.wait()
        try:
            api.close(pg_url, "2026-03", tmp_path / f"out{n}")
            outcomes.append("closed")
        except Refused as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=close, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["closed", "period 2026-03 is already closed"]
    rec = api.reconcile(pg_url, "2026-03")
    assert rec.internal_spend == 5000 * 6000
    engine = db.connect(pg_url)
    with engine.connect() as conn:  # every line priced once, into the winner's charges
        assert conn.execute(text("SELECT count(*) FROM charge_lines")).scalar() == 5000
        assert conn.execute(text("SELECT count(*) FROM entries")).scalar() == rec.entries
    engine.dispose()
    assert api.verify(pg_url).ok
