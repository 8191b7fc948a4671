"""The net-zero reconciliation of a period, computed from the journal's accounts.

Internal revenue is summed from the `revenue:internal:*` credits and internal spend
from the `expenses:internal:*` debits, independently, so a tampered or mis-posted
entry shows up as a difference. External sales are reported apart, never netted.

The close and the documents need a period's figures several ways (by account here, by
consumer and service for the variance review and the statements, by consumer for the
budgets). At a million lines a month each grouping is a pass over the period's entries;
`period_totals` reads one grouping that keeps every key the others need, the accounts
as posted included, so the others are summed from it in memory. The first close of a
period sums the same grouping from the drafts it posts (`Tally`) instead of reading
back what it has just written; `verify` regroups the entries and compares.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import NamedTuple

from sqlalchemy import Connection, Select, delete, func, select

from chargeback.core.money import InCurrency
from chargeback.ledger.entries import Draft
from chargeback.store.db import bulk_insert, bytewise
from chargeback.store.schema import Book, Entry, Period, PeriodTotalRow

INTERNAL_REVENUE = "revenue:internal:"
EXTERNAL_REVENUE = "revenue:external:"
INTERNAL_SPEND = "expenses:internal:"


@dataclass
class Pending:
    """What an open period holds that no close has posted yet: usage lines, adjustments
    and the adjustments' amount in minor units. True when anything waits."""

    usage_lines: int = 0
    adjustments: int = 0
    adjustments_minor: int = 0

    def __bool__(self) -> bool:
        return bool(self.usage_lines or self.adjustments)


@dataclass
class Reconciliation(InCurrency):
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
    #: What an open period holds that no close has posted yet (`status.pending`).
    pending: Pending = field(default_factory=Pending)

    def pending_text(self) -> str:
        """`N usage lines and M adjustments (X USD) are pending, not posted`."""
        lines, adjustments = self.pending.usage_lines, self.pending.adjustments
        return (
            f"{lines} usage line{'s' if lines != 1 else ''} and "
            f"{adjustments} adjustment{'s' if adjustments != 1 else ''} "
            f"({self.money(self.pending.adjustments_minor)} {self.currency}) are pending, not posted"
        )

    @property
    def difference(self) -> int:
        return self.internal_revenue - self.internal_spend

    @property
    def balanced(self) -> bool:
        return self.difference == 0

    def totals_text(self) -> str:
        """The period's four totals in a line, as `close` and `reconcile` print them."""
        m = self.money
        return (
            f"internal revenue {m(self.internal_revenue)} {self.currency}, internal spend "
            f"{m(self.internal_spend)}, difference {m(self.difference)}, external revenue "
            f"{m(self.external_revenue)}"
        )

    def lines(self) -> list[str]:
        """What `reconcile` prints: the verdict, the totals, each provider and consumer."""
        m = self.money
        lines = [f"{self.period} ({self.status}): {'balanced' if self.balanced else 'NOT BALANCED'}"]
        lines.append(f"  {self.totals_text()}")
        for unit, (internal, external) in sorted(self.providers.items()):
            lines.append(f"  provider {unit:<20} internal {m(internal):>14}  external {m(external):>14}")
        for unit, spend in sorted(self.consumers.items()):
            lines.append(f"  consumer {unit:<20} spend    {m(spend):>14}")
        if self.pending:
            lines.append(f"  {self.pending_text()}: close {self.period} to post them")
        return lines

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
            "consumers": [{"unit": unit, "internal_spend": m(spend)} for unit, spend in sorted(self.consumers.items())],
            "pending": {
                "usage_lines": self.pending.usage_lines,
                "adjustments": self.pending.adjustments,
                "adjustments_amount": m(self.pending.adjustments_minor),
            },
        }


class PeriodTotal(NamedTuple):
    """A period's posted charges of one consumer, provider, service and kind, with the
    accounts they were posted to: entries, quantity and amount."""

    consumer: str
    customer_class: str
    provider: str
    service: str
    kind: str
    debit_account: str
    credit_account: str
    entries: int
    quantity_micro: int
    amount_minor: int


TOTAL_KEYS = (
    Entry.consumer,
    Entry.customer_class,
    Entry.provider,
    Entry.service,
    Entry.kind,
    Entry.debit_account,
    Entry.credit_account,
)


def grouped_totals_query(conn: Connection, period: str) -> Select:
    """The grouping of `period`'s entries that `period_totals` reads."""
    return (
        select(*TOTAL_KEYS, func.count(), func.sum(Entry.quantity_micro), func.sum(Entry.amount_minor))
        .where(Entry.period == period)
        .group_by(*TOTAL_KEYS)
        .order_by(*bytewise(conn, *TOTAL_KEYS))
    )


def stored_totals_query(conn: Connection, period: str) -> Select:
    """`period`'s stored totals, in the same order as `grouped_totals_query`."""
    keys = [getattr(PeriodTotalRow, name) for name in PeriodTotal._fields[:7]]
    return (
        select(*keys, PeriodTotalRow.entries, PeriodTotalRow.quantity_micro, PeriodTotalRow.amount_minor)
        .where(PeriodTotalRow.period == period)
        .order_by(*bytewise(conn, *keys))
    )


def period_totals(conn: Connection, period: str) -> list[PeriodTotal]:
    """The period's entries summed by consumer, class, provider, service, kind and the
    accounts as posted, in that order (text compared as bytes on both databases)."""
    return _totals(conn, grouped_totals_query(conn, period))


def _totals(conn: Connection, query: Select) -> list[PeriodTotal]:
    shared: dict[str, str] = {}
    one = shared.setdefault
    return [
        PeriodTotal(
            one(consumer, consumer),
            one(kind_of, kind_of),
            one(provider, provider),
            one(service, service),
            one(kind, kind),
            one(debit, debit),
            one(credit, credit),
            int(entries),
            int(quantity),
            int(amount),
        )
        for consumer, kind_of, provider, service, kind, debit, credit, entries, quantity, amount in conn.execute(query)
    ]


class Tally:
    """A period's totals summed from the drafts a close posts, as they go by: the same
    figures, keys and order as `period_totals` reads back from the entries, without the
    second pass over a million rows (1M entries: 6.4 s grouped in the database and read
    back, against 1.8-2.4 s summed on the way and sorted). Exact only when the period had no
    entries before the close: a re-close after a reopen groups its entries instead."""

    #: A draft's grouping key, in `PeriodTotal`'s order (the fields share their names).
    key_of = itemgetter(*(Draft._fields.index(name) for name in PeriodTotal._fields[:7]))

    def __init__(self) -> None:
        self._sums: dict[tuple[str, ...], list[int]] = {}

    def counting(self, drafts: Iterable[Draft]) -> Iterator[Draft]:
        """`drafts`, each added to the tally as it is handed on to be posted."""
        sums, key_of = self._sums, self.key_of
        for draft in drafts:
            key = key_of(draft)
            found = sums.get(key)
            if found is None:
                sums[key] = [1, draft.quantity_micro, draft.amount_minor]
            else:
                found[0] += 1
                found[1] += draft.quantity_micro
                found[2] += draft.amount_minor
            yield draft

    def totals(self) -> list[PeriodTotal]:
        """The sums in `period_totals`' order. Its keys
        are codes, the classes, kinds and accounts made of them, none with a NUL: joined
        with NULs they sort as the tuples do (in code point order, which is UTF-8's byte
        order), in half the time. Each consumer and service code is kept once, as
        `period_totals` keeps it."""
        sums, self._sums = self._sums, {}
        shared: dict[str, str] = {}
        one, make = shared.setdefault, tuple.__new__
        return [
            make(
                PeriodTotal,
                (one(key[0], key[0]), key[1], key[2], one(key[3], key[3]), key[4], key[5], key[6], *sums[key]),
            )
            for key in sorted(sums, key="\0".join)
        ]


STORED_COLUMNS = ("period",) + PeriodTotal._fields


def store_totals(conn: Connection, period: str, totals: Iterable[PeriodTotal]) -> None:
    """Replace `period`'s stored totals (`schema.PeriodTotalRow`) with `totals`."""
    conn.execute(delete(PeriodTotalRow).where(PeriodTotalRow.period == period))
    bulk_insert(conn, PeriodTotalRow.__table__, STORED_COLUMNS, ((period, *total) for total in totals))


def stored_totals(conn: Connection, period: str) -> list[PeriodTotal]:
    """`period`'s totals as stored at its last close, in `period_totals`' order: the
    same figures (`verify` checks it), read in about half the time of grouping its
    entries again (1M entries: 4.9-5.0 s against 8.6-9.3 s)."""
    return _totals(conn, stored_totals_query(conn, period))


def _by_account(totals: Iterable[PeriodTotal]) -> tuple[list[tuple[str, int, int]], list[tuple[str, int]]]:
    """(credit account, amount, entries) and (debit account, amount), in account order."""
    credits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    debits: dict[str, int] = defaultdict(int)
    for total in totals:
        credit = credits[total.credit_account]
        credit[0] += total.amount_minor
        credit[1] += total.entries
        debits[total.debit_account] += total.amount_minor
    return ([(account, amount, count) for account, (amount, count) in sorted(credits.items())], sorted(debits.items()))


def reconcile(conn: Connection, period: str, totals: Sequence[PeriodTotal] | None = None) -> Reconciliation:
    """The reconciliation of `period` from its posted entries, or from their `totals`
    when the caller has read them (`period_totals`) in this transaction."""
    book = conn.execute(select(Book.currency, Book.minor_digits)).first()
    currency, digits = (book.currency, book.minor_digits) if book else ("", 2)
    status = conn.execute(select(Period.status).where(Period.period == period)).scalar() or "open"
    result = Reconciliation(period, currency, digits, status)
    if totals is None:
        credits: Iterable[tuple[str, int, int]] = conn.execute(
            select(Entry.credit_account, func.sum(Entry.amount_minor), func.count())
            .where(Entry.period == period)
            .group_by(Entry.credit_account)
        )
        debits: Iterable[tuple[str, int]] = conn.execute(
            select(Entry.debit_account, func.sum(Entry.amount_minor))
            .where(Entry.period == period)
            .group_by(Entry.debit_account)
        )
    else:
        credits, debits = _by_account(totals)
    revenue: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for account, amount, count in credits:
        result.entries += count
        if account.startswith(INTERNAL_REVENUE):
            revenue[account[len(INTERNAL_REVENUE) :]][0] += int(amount)
            result.internal_revenue += int(amount)
        elif account.startswith(EXTERNAL_REVENUE):
            revenue[account[len(EXTERNAL_REVENUE) :]][1] += int(amount)
            result.external_revenue += int(amount)
    for account, amount in debits:
        if account.startswith(INTERNAL_SPEND):
            result.consumers[account[len(INTERNAL_SPEND) :]] = int(amount)
            result.internal_spend += int(amount)
    result.providers = {unit: (v[0], v[1]) for unit, v in revenue.items()}
    return result
