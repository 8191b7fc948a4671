"""The loaded book read back from the database as plain values, for pricing and checks."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, select

from chargeback.core.errors import Refused
from chargeback.core.money import from_micro
from chargeback.core.pricing import RateRow, RateTable
from chargeback.store.schema import Book, Rate, Recurring, Service, Unit


@dataclass(frozen=True)
class UnitInfo:
    code: str
    name: str
    kind: str
    parent: str | None
    manager: str | None
    email: str | None
    active_from: dt.date | None
    active_to: dt.date | None
    expense_account: str | None
    revenue_account: str | None


@dataclass(frozen=True)
class ServiceInfo:
    code: str
    provider: str
    name: str
    unit_of_measure: str
    description: str | None


@dataclass(frozen=True)
class RecurringFee:
    service: str
    consumer: str
    quantity: Decimal
    from_period: str
    to_period: str | None
    description: str | None

    @property
    def key(self) -> str:
        """Identifies the fee across reloads of the book."""
        return f"{self.service}:{self.consumer}:{self.from_period}"

    def applies_to(self, period: str) -> bool:
        return self.from_period <= period and (self.to_period is None or period <= self.to_period)


@dataclass(frozen=True)
class Reference:
    """Everything the engine needs to know about the book to price and post."""

    name: str
    currency: str
    digits: int
    fiscal_year_start: int
    payment_terms: str | None
    allocation_method: str
    variance_threshold: Decimal
    units: dict[str, UnitInfo]
    services: dict[str, ServiceInfo]
    rates: RateTable
    recurring: tuple[RecurringFee, ...]


def load_reference(conn: Connection) -> Reference:
    """Read the loaded book; refuses when no book was loaded yet."""
    book = conn.execute(select(Book.__table__)).first()
    if book is None:
        raise Refused("no book is loaded: run `chargeback load BOOK` first")
    units = {
        u.code: UnitInfo(
            u.code,
            u.name,
            u.kind,
            u.parent,
            u.manager,
            u.email,
            u.active_from,
            u.active_to,
            u.expense_account,
            u.revenue_account,
        )
        for u in conn.execute(select(Unit.__table__))
    }
    services = {
        s.code: ServiceInfo(s.code, s.provider, s.name, s.unit_of_measure, s.description)
        for s in conn.execute(select(Service.__table__))
    }
    rates = RateTable(
        RateRow(
            r.service,
            r.customer_class,
            r.effective_from,
            r.effective_to,
            from_micro(r.rate_micro),
            from_micro(r.tier_from_micro),
        )
        for r in conn.execute(select(Rate.__table__))
    )
    recurring = tuple(
        RecurringFee(r.service, r.consumer, from_micro(r.quantity_micro), r.from_period, r.to_period, r.description)
        for r in conn.execute(select(Recurring.__table__).order_by(Recurring.id))
    )
    return Reference(
        book.name,
        book.currency,
        book.minor_digits,
        book.fiscal_year_start,
        book.payment_terms,
        book.allocation_method,
        Decimal(book.variance_threshold),
        units,
        services,
        rates,
        recurring,
    )
