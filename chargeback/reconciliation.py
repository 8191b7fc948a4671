"""The net-zero reconciliation of a period, computed from the journal's accounts.

Internal revenue is summed from the `revenue:internal:*` credits and internal spend
from the `expenses:internal:*` debits, independently, so a tampered or mis-posted
entry shows up as a difference. External sales are reported apart, never netted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Connection, func, select

from chargeback.money import format_amount
from chargeback.schema import Book, Entry, Period

INTERNAL_REVENUE = "revenue:internal:"
EXTERNAL_REVENUE = "revenue:external:"
INTERNAL_SPEND = "expenses:internal:"


@dataclass
class Reconciliation:
    """Totals of one period in minor units, by provider and by internal consumer."""

    period: str
    currency: str
    digits: int
    status: str
    entries: int = 0
    internal_revenue: int = 0
    internal_spend: int = 0
    external_revenue: int = 0
    providers: dict[str, tuple[int, int]] = field(default_factory=dict)
    consumers: dict[str, int] = field(default_factory=dict)

    @property
    def difference(self) -> int:
        return self.internal_revenue - self.internal_spend

    @property
    def balanced(self) -> bool:
        return self.difference == 0

    def money(self, minor: int) -> str:
        return format_amount(minor, self.digits)

    def as_json(self) -> dict[str, object]:
        """The contract's `reconcile --json` object."""
        m = self.money
        return {
            "period": self.period,
            "currency": self.currency,
            "status": self.status,
            "balanced": self.balanced,
            "internal_revenue": m(self.internal_revenue),
            "internal_spend": m(self.internal_spend),
            "difference": m(self.difference),
            "external_revenue": m(self.external_revenue),
            "providers": [
                {"unit": unit, "internal_revenue": m(internal), "external_revenue": m(external)}
                for unit, (internal, external) in sorted(self.providers.items())
            ],
            "consumers": [
                {"unit": unit, "internal_spend": m(spend)}
                for unit, spend in sorted(self.consumers.items())
            ],
        }


def reconcile(conn: Connection, period: str) -> Reconciliation:
    """The reconciliation of `period` from its posted entries."""
    book = conn.execute(select(Book.currency, Book.minor_digits)).first()
    currency, digits = (book.currency, book.minor_digits) if book else ("", 2)
    status = conn.execute(select(Period.status).where(Period.period == period)).scalar() or "open"
    result = Reconciliation(period, currency, digits, status)
    revenue: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for account, amount, count in conn.execute(
        select(Entry.credit_account, func.sum(Entry.amount_minor), func.count())
        .where(Entry.period == period).group_by(Entry.credit_account)
    ):
        result.entries += count
        if account.startswith(INTERNAL_REVENUE):
            revenue[account[len(INTERNAL_REVENUE):]][0] += int(amount)
            result.internal_revenue += int(amount)
        elif account.startswith(EXTERNAL_REVENUE):
            revenue[account[len(EXTERNAL_REVENUE):]][1] += int(amount)
            result.external_revenue += int(amount)
    for account, amount in conn.execute(
        select(Entry.debit_account, func.sum(Entry.amount_minor))
        .where(Entry.period == period).group_by(Entry.debit_account)
    ):
        if account.startswith(INTERNAL_SPEND):
            result.consumers[account[len(INTERNAL_SPEND):]] = int(amount)
            result.internal_spend += int(amount)
    result.providers = {unit: (v[0], v[1]) for unit, v in revenue.items()}
    return result
