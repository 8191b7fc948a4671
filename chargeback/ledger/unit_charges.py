"""One unit's posted charges: every entry charged to it (as consumer) in a period or a
fiscal year, with service, quantity, rate, amount and period. One query over the
entries; what is waiting in an open period is not here (`chargeback status` counts it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from chargeback.book.snapshot import load_reference
from chargeback.close.budgets import fiscal_periods
from chargeback.core.errors import Refused
from chargeback.core.money import InCurrency, from_micro, from_minor
from chargeback.store.schema import Entry

#: The kinds of entry whose quantity is in the service's unit of measure (an adjustment's
#: and an allocation's quantity is 1, a count of charges).
MEASURED = ("usage", "recurring")


@dataclass(frozen=True)
class Charge:
    period: str
    entry: int
    date: dt.date
    kind: str
    service: str
    provider: str
    reference: str | None
    memo: str | None
    quantity: Decimal
    unit_of_measure: str
    rate: Decimal | None
    amount_minor: int


@dataclass
class UnitCharges(InCurrency):
    unit: str
    name: str
    periods: tuple[str, ...]
    currency: str
    digits: int
    charges: list[Charge]

    @property
    def total_minor(self) -> int:
        return sum(c.amount_minor for c in self.charges)

    def amount(self, minor: int) -> Decimal:
        return from_minor(minor, self.digits)

    def as_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "name": self.name,
            "from": self.periods[0],
            "through": self.periods[-1],
            "currency": self.currency,
            "charges": [
                {
                    "period": c.period,
                    "entry": c.entry,
                    "date": c.date.isoformat(),
                    "kind": c.kind,
                    "service": c.service,
                    "provider": c.provider,
                    "reference": c.reference,
                    "memo": c.memo,
                    "quantity": str(c.quantity),
                    "unit_of_measure": c.unit_of_measure,
                    "rate": None if c.rate is None else str(c.rate),
                    "amount": self.money(c.amount_minor),
                }
                for c in self.charges
            ],
            "total": self.money(self.total_minor),
        }


def unit_charges(conn: Connection, unit: str, period: str | None = None, fiscal_year: int | None = None) -> UnitCharges:
    """The entries charged to `unit` in `period`, or in fiscal year `fiscal_year` (one of
    the two), in period then entry order."""
    ref = load_reference(conn)
    if unit not in ref.units:
        raise Refused(f"--unit: {unit!r} is not a unit of the book")
    if (period is None) == (fiscal_year is None):
        raise Refused("give --period YYYY-MM or --fiscal-year YYYY")
    periods = (period,) if period is not None else fiscal_periods(int(fiscal_year or 0), ref.fiscal_year_start)
    rows = conn.execute(
        select(
            Entry.period,
            Entry.id,
            Entry.date,
            Entry.kind,
            Entry.service,
            Entry.provider,
            Entry.reference,
            Entry.memo,
            Entry.quantity_micro,
            Entry.rate_micro,
            Entry.amount_minor,
        )
        .where(Entry.consumer == unit, Entry.period.in_(periods))
        .order_by(Entry.period, Entry.id)
    ).all()
    charges = [
        Charge(
            r.period,
            r.id,
            r.date,
            r.kind,
            r.service,
            r.provider,
            r.reference,
            r.memo,
            from_micro(r.quantity_micro),
            ref.services[r.service].unit_of_measure if r.kind in MEASURED and r.service in ref.services else "",
            None if r.rate_micro is None else from_micro(r.rate_micro),
            r.amount_minor,
        )
        for r in rows
    ]
    return UnitCharges(unit, ref.units[unit].name, periods, ref.currency, ref.digits, charges)
