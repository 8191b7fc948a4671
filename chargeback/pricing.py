"""Pricing: which rate applies to a usage line, and what the line costs.

Pure functions over plain values (Decimal, dates, codes), so they can be tested and
property-tested without a database. The rate is the one whose customer class matches
the consumer's kind and whose date range holds the usage date; the amount is
quantity x rate rounded once, half away from zero, to the currency's minor unit.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from chargeback.money import quantize


@dataclass(frozen=True)
class RateRow:
    """One row of `rates.csv`."""

    service: str
    customer_class: str
    effective_from: dt.date
    effective_to: dt.date | None
    rate: Decimal
    tier_from: Decimal = Decimal(0)

    def holds(self, day: dt.date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day <= self.effective_to)

    @property
    def provenance(self) -> str:
        """How a charge names the rate that priced it."""
        text = f"{self.service}/{self.customer_class}/{self.effective_from.isoformat()}"
        return text + (f"/tier {self.tier_from}" if self.tier_from else "")


@dataclass(frozen=True)
class Priced:
    """A priced line: the rate applied and the amount, rounded once."""

    rate: Decimal
    amount: Decimal
    rate_row: RateRow


class RateTable:
    """All rates of a book, indexed for lookups by (service, class, date)."""

    def __init__(self, rows: Iterable[RateRow]) -> None:
        self._by_key: dict[tuple[str, str], list[RateRow]] = defaultdict(list)
        for row in rows:
            self._by_key[(row.service, row.customer_class)].append(row)
        for rows_of_key in self._by_key.values():
            rows_of_key.sort(key=lambda r: (r.effective_from, r.tier_from))
        self._cache: dict[tuple[str, str, dt.date], tuple[RateRow, ...]] = {}

    def tiers(self, service: str, customer_class: str, day: dt.date) -> tuple[RateRow, ...]:
        """The rate rows in force on `day`, by ascending `tier_from` (empty when none)."""
        key = (service, customer_class, day)
        found = self._cache.get(key)
        if found is None:
            rows = [r for r in self._by_key.get((service, customer_class), ()) if r.holds(day)]
            found = tuple(sorted(rows, key=lambda r: r.tier_from))
            self._cache[key] = found
        return found

    def find(self, service: str, customer_class: str, day: dt.date) -> RateRow | None:
        """The base rate (the lowest tier) in force on `day`, or None."""
        rows = self.tiers(service, customer_class, day)
        return rows[0] if rows else None


def price(quantity: Decimal, rate_row: RateRow, digits: int) -> Priced:
    """Price one line at one rate: quantity x rate, rounded once."""
    return Priced(rate_row.rate, quantize(quantity * rate_row.rate, digits), rate_row)


def overlapping(rows: Iterable[RateRow]) -> list[tuple[RateRow, RateRow]]:
    """Pairs of rows of one (service, class, tier_from) whose date ranges overlap."""
    groups: dict[tuple[str, str, Decimal], list[RateRow]] = defaultdict(list)
    for row in rows:
        groups[(row.service, row.customer_class, row.tier_from)].append(row)
    clashes = []
    for group in groups.values():
        group.sort(key=lambda r: r.effective_from)
        for earlier, later in zip(group, group[1:]):
            if earlier.effective_to is None or later.effective_from <= earlier.effective_to:
                clashes.append((earlier, later))
    return clashes
