"""Cloud bills at close: their usage lines are priced by their amount, and what no rule
mapped (unused commitments, unmatched and untagged rows) is the cloud pool's cost.

A line imported from a cloud bill (`ingest/cloud.py`) carries its amount (the summed cost
basis with the markup, rounded once) instead of being priced by a rate: its rate is
null, as for a line spanning tiers, and its charge is one per (service, consumer). The
pool's cost of a period is the sum of the pool buckets of its imported bills (a voided
import's count nowhere); the book's
`[cloud]` pool spreads it like any allocation (`amount:SERVICE`: each consumer's share
of the cloud charges).
"""

from __future__ import annotations

import polars as pl
from sqlalchemy import ColumnElement, Connection, exists, func, select

from chargeback.store.schema import CloudBucket, CloudSettings, Void

#: A cloud line's price and rate source: its amount comes with it from the bill.
AMOUNT_PRICE = "cloud bill: cost basis with markup (see cloud.xlsx)"
#: The buckets whose amount goes to the pool.
POOL_BUCKETS = ("unused", "unmatched", "untagged")


def amount_priced(lines: pl.DataFrame) -> pl.DataFrame:
    """Lines that carry their amount, with the columns `pricing.price_lines` gives."""
    return lines.with_columns(
        rate_micro=pl.lit(None, pl.Int64),
        price=pl.lit(AMOUNT_PRICE),
        rate_source=pl.lit(AMOUNT_PRICE),
    )


def voided() -> ColumnElement[bool]:
    """A bucket whose bill's import was voided (`void import ID`): it counts nowhere."""
    return exists().where(Void.kind == "import", Void.target == CloudBucket.import_id)


def cloud_pool_costs(conn: Connection, period: str) -> dict[str, int]:
    """{pool: amount} of the period's cloud bills, when the book has a cloud pool and
    the bills sent something to it."""
    pool = conn.execute(select(CloudSettings.pool)).scalar()
    if pool is None:
        return {}
    total = conn.execute(
        select(func.sum(CloudBucket.charged_minor)).where(
            CloudBucket.period == period, CloudBucket.bucket.in_(POOL_BUCKETS), ~voided()
        )
    ).scalar()
    return {pool: int(total)} if total else {}
