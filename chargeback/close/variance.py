"""The variance review: what moved since last month, shown by `preview` and `close`.

Each consumer's charges and each provider's revenue in the reviewed period are set
against the previous period and against the average of the last three periods:

- consumers: every unit charged in the period or the one before: a department's
  internal spend, an outside customer's purchases;
- providers: every unit with revenue in the period or the one before, internal and
  external revenue together.

The comparison window is the three periods before the reviewed one, leaving out any
before the journal's first entry (a young book compares with what it has); a period of
the window in which a unit has no charges counts as zero for it. With no earlier period
there is nothing to compare: no change is computed and nothing is flagged.

A line is *flagged* when its change against the previous period is more than
`variance_threshold` (book.toml, default 0.25) times the previous amount, and also at
least one whole currency unit (1.00 USD, 1 JPY) and at least one hundredth of the
previous amount: the two floors keep rounding noise and small lines out when the
threshold is set low. A line that was zero before is flagged when it moved by at least
one currency unit.

*Drivers* are the services whose change against the previous period is largest in
size (at most three per line). *Callouts*: a new consumer (charges now, none in the
window), a consumer that disappeared (charges in the previous period, none now), and a
service with no usage this period that had usage in the window (is a provider's usage
file missing?).

The numbers come from one SQL aggregate over the journal; `compute` is pure.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import Connection, func, select

from chargeback.close.reconciliation import PeriodTotal, period_totals
from chargeback.core.calendar import previous_period
from chargeback.core.errors import Refused
from chargeback.core.money import InCurrency, format_percent, quantize
from chargeback.store.schema import Book, Entry, PeriodTotalRow, Unit

WINDOW = 3
MAX_DRIVERS = 3


class Total(NamedTuple):
    """Posted charges of one period, consumer, provider, service and kind."""

    period: str
    consumer: str
    customer_class: str
    provider: str
    service: str
    kind: str
    amount: int


#: A `Total`'s fields as a plain tuple, as the review streams them (making a `Total` is a
#: Python call each).
TotalRow = tuple[str, str, str, str, str, str, int]


@dataclass(frozen=True)
class ServiceChange:
    """A service whose spend moved: one of the drivers of a unit's change."""

    service: str
    change: int


def share(change: int | None, base: int | None) -> Decimal | None:
    """`change` as a share of `base` (0.25 is 25%), or None when there is no base."""
    if change is None or not base:
        return None
    return Decimal(change) / abs(Decimal(base))


@dataclass(frozen=True)
class UnitVariance:
    """One consumer's charges or one provider's revenue, against earlier periods."""

    unit: str
    kind: str  # a consumer's class ("internal", "external"), or "provider"
    current: int
    previous: int | None  # None: no earlier period to compare with
    average: int | None
    flagged: bool = False
    drivers: tuple[ServiceChange, ...] = ()

    @property
    def change(self) -> int | None:
        return None if self.previous is None else self.current - self.previous

    @property
    def percent(self) -> Decimal | None:
        return share(self.change, self.previous)

    @property
    def average_change(self) -> int | None:
        return None if self.average is None else self.current - self.average

    @property
    def average_percent(self) -> Decimal | None:
        return share(self.average_change, self.average)


@dataclass(frozen=True)
class SilentService:
    """A service with usage in the window but none in the reviewed period."""

    service: str
    provider: str
    last_period: str
    last_amount: int


@dataclass(frozen=True)
class Review(InCurrency):
    period: str
    currency: str
    digits: int
    threshold: Decimal
    window: tuple[str, ...]  # the earlier periods compared with, newest first
    consumers: tuple[UnitVariance, ...] = ()
    providers: tuple[UnitVariance, ...] = ()
    new_consumers: tuple[str, ...] = ()
    gone_consumers: tuple[str, ...] = ()
    silent_services: tuple[SilentService, ...] = ()
    names: dict[str, str] = field(default_factory=dict)
    #: The service levels' misses and missing measurements, as lines to print.
    service_levels: tuple[str, ...] = ()

    @property
    def previous(self) -> str | None:
        return self.window[0] if self.window else None

    @property
    def flagged(self) -> list[UnitVariance]:
        return [line for line in self.consumers + self.providers if line.flagged]

    def consumer(self, unit: str) -> UnitVariance:
        return next(line for line in self.consumers if line.unit == unit)

    @property
    def rule(self) -> str:
        return (
            f"more than {(self.threshold * 100).normalize():f}% of the previous amount and "
            f"at least {self.money(10**self.digits)} {self.currency}"
        )


def window_of(period: str, first: str | None) -> tuple[str, ...]:
    """The up to three periods before `period`, newest first, none before `first`."""
    found, cursor = [], period
    for _ in range(WINDOW):
        cursor = previous_period(cursor)
        if first is None or cursor < first:
            break
        found.append(cursor)
    return tuple(found)


def moved(change: int, base: int, threshold: Decimal, digits: int) -> bool:
    """True when a change of `change` from `base` (minor units) is to be flagged."""
    size, base = abs(change), abs(base)
    return size > threshold * base and size >= 10**digits and size * 100 >= base


# unit -> period -> service -> amount
Amounts = dict[str, dict[str, dict[str, int]]]


def _nested() -> Amounts:
    return defaultdict(lambda: defaultdict(lambda: defaultdict(int)))


def compute(
    period: str,
    totals: Iterable[TotalRow],
    window: tuple[str, ...],
    *,
    threshold: Decimal,
    digits: int,
    currency: str,
    names: dict[str, str] | None = None,
) -> Review:
    """The review of `period` from its totals (`Total`s, or `TotalRow`s) and
    those of the `window` periods."""
    consumers, providers = _nested(), _nested()
    usage: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    kinds: dict[str, str] = {}
    provider_of: dict[str, str] = {}
    # The totals come a period at a time, each consumer's together: its services' sums
    # for the period are looked up once a run, a provider's once a period.
    last: tuple[str, str] | None = None
    spent: dict[str, int] = {}
    earned: dict[str, dict[str, int]] = {}
    for period_of, consumer, customer_class, provider, service, kind, amount in totals:
        if last is None or consumer != last[0] or period_of != last[1]:
            if last is None or period_of != last[1]:
                earned = {}
            last = (consumer, period_of)
            spent = consumers[consumer][period_of]
        spent[service] += amount
        sold = earned.get(provider)
        if sold is None:
            sold = earned[provider] = providers[provider][period_of]
        sold[service] += amount
        kinds[consumer] = customer_class
        provider_of[service] = provider
        if kind == "usage":
            usage[service][period_of] += amount
    previous = window[0] if window else None

    def lines(amounts: Amounts, kind_of: dict[str, str] | None) -> tuple[UnitVariance, ...]:
        found = []
        for unit in sorted(u for u, by_period in amounts.items() if period in by_period or previous in by_period):
            by_period = amounts[unit]
            current = sum(by_period.get(period, {}).values())
            kind = kind_of[unit] if kind_of is not None else "provider"
            if previous is None:
                found.append(UnitVariance(unit, kind, current, None, None))
                continue
            before = sum(by_period.get(previous, {}).values())
            average = int(quantize(Decimal(sum(sum(by_period.get(p, {}).values()) for p in window)) / len(window), 0))
            found.append(
                UnitVariance(
                    unit,
                    kind,
                    current,
                    before,
                    average,
                    moved(current - before, before, threshold, digits),
                    _drivers(by_period.get(period, {}), by_period.get(previous, {})),
                )
            )
        return tuple(found)

    new: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()
    silent: list[SilentService] = []
    if window:
        new = tuple(
            sorted(
                u
                for u, by_period in consumers.items()
                if period in by_period and not any(p in by_period for p in window)
            )
        )
        gone = tuple(
            sorted(u for u, by_period in consumers.items() if previous in by_period and period not in by_period)
        )
        for service in sorted(usage):
            by_period = usage[service]
            if period in by_period:
                continue
            last_seen = next(p for p in window if p in by_period)
            silent.append(SilentService(service, provider_of[service], last_seen, by_period[last_seen]))
    return Review(
        period,
        currency,
        digits,
        threshold,
        window,
        lines(consumers, kinds),
        lines(providers, None),
        new,
        gone,
        tuple(silent),
        dict(names or {}),
    )


def _drivers(now: dict[str, int], before: dict[str, int]) -> tuple[ServiceChange, ...]:
    changes = [(service, now.get(service, 0) - before.get(service, 0)) for service in set(now) | set(before)]
    changes = sorted(((s, c) for s, c in changes if c), key=lambda sc: (-abs(sc[1]), sc[0]))
    return tuple(ServiceChange(s, c) for s, c in changes[:MAX_DRIVERS])


def review(conn: Connection, period: str, current: Sequence[PeriodTotal] | None = None) -> Review:
    """The variance review of `period` from the journal as it stands in this transaction
    (a preview's or a close's entries included); `current`: the period's own totals when
    the caller has read them (`reconciliation.period_totals`)."""
    book = conn.execute(select(Book.currency, Book.minor_digits, Book.variance_threshold)).first()
    if book is None:
        raise Refused("no book is loaded: run `chargeback load BOOK` first")
    first = conn.execute(select(func.min(Entry.period)).where(Entry.period < period)).scalar()
    window = window_of(period, first)
    names = dict(conn.execute(select(Unit.code, Unit.name)).all())
    this = period_totals(conn, period) if current is None else current

    def totals() -> Iterator[TotalRow]:
        """The earlier periods from their totals stored at close, oldest first, then this
        one; streamed, as `compute` sums them (half a million rows a month at 1M lines)."""
        if window:
            stored = PeriodTotalRow
            yield from conn.execute(
                select(
                    stored.period,
                    stored.consumer,
                    stored.customer_class,
                    stored.provider,
                    stored.service,
                    stored.kind,
                    stored.amount_minor,
                )
                .where(stored.period.in_(window))
                .order_by(stored.period)
                .execution_options(yield_per=20_000)
            )
        for t in this:
            yield (period, t.consumer, t.customer_class, t.provider, t.service, t.kind, t.amount_minor)

    return compute(
        period,
        totals(),
        window,
        threshold=Decimal(book.variance_threshold),
        digits=book.minor_digits,
        currency=book.currency,
        names=names,
    )


# presentation -------------------------------------------------------------------------


def _signed(review: Review, minor: int | None) -> str:
    if minor is None:
        return ""
    text = review.money(minor)
    return text if minor < 0 else f"+{text}"


def drivers_text(review: Review, line: UnitVariance) -> str:
    return ", ".join(f"{d.service} {_signed(review, d.change)}" for d in line.drivers)


def report_lines(review: Review) -> list[str]:
    """The review as text for the terminal: flagged lines marked `!`."""
    r = review
    if not r.window:
        head = [f"variance review of {r.period}: no earlier period to compare with"]
    else:
        head = [
            f"variance review of {r.period} against {r.previous} and the average of "
            f"{', '.join(r.window)}; flagged (!): a change of {r.rule}"
        ]
    out = head
    for title, lines in (("consumers", r.consumers), ("providers", r.providers)):
        if not lines:
            continue
        out.append(
            f"  {title:<22} {r.period:>14} {r.previous or 'previous':>14} {'change':>14} {'%':>8} {'average':>14}"
        )
        for line in lines:
            mark = "!" if line.flagged else " "
            drivers = f"  {drivers_text(r, line)}" if line.flagged and line.drivers else ""
            out.append(
                f"{mark} {line.unit:<22} {r.money(line.current):>14} {r.money(line.previous):>14} "
                f"{_signed(r, line.change):>14} {format_percent(line.percent):>8} "
                f"{r.money(line.average):>14}{drivers}"
            )
    out.extend(f"  new consumer: {unit}" for unit in r.new_consumers)
    out.extend(
        f"  consumer gone: {unit} (charged {r.money(r.consumer(unit).previous)} in {r.previous}, nothing in {r.period})"
        for unit in r.gone_consumers
    )
    out.extend(
        f"  no usage of {s.service} ({s.provider}) in {r.period}: {r.money(s.last_amount)} "
        f"in {s.last_period}; is a usage file missing?"
        for s in r.silent_services
    )
    out.extend(r.service_levels)
    return out


HEADER = [
    "Unit",
    "Name",
    "Kind",
    "This period",
    "Previous period",
    "Change",
    "Change %",
    "Average of last 3",
    "Change vs average",
    "Change % vs average",
    "Flagged",
    "Drivers",
]
WIDTHS = [14, 32, 10, 15, 15, 15, 10, 15, 15, 10, 8, 40]


def write_workbook(review: Review, path: Path, *, book: str, draft: bool, when: dt.datetime) -> None:
    """`variance.xlsx`: sheets `Consumers`, `Providers` and `Callouts`."""
    from chargeback.documents.small_workbooks import Money, Sheets, money, percent

    r = review
    sheets = Sheets(f"Variance review {r.period}", book=book, currency=r.currency, digits=r.digits, draft=draft)
    if r.window:
        notes = [
            f"{book}: {r.period} against {r.previous} (previous period) and the average of {', '.join(r.window)}.",
            f"Flagged: a change of {r.rule}.",
        ]
    else:
        notes = [f"{book}: {r.period}; no earlier period to compare with."]
    for name, lines in (("Consumers", r.consumers), ("Providers", r.providers)):
        sheet, row = sheets.sheet(name, f"Variance review {r.period}: {name.lower()}", notes)
        sheets.header(sheet, row, HEADER, WIDTHS)
        for at, line in enumerate(lines, start=row + 1):
            sheets.row(
                sheet,
                at,
                [
                    line.unit,
                    r.names.get(line.unit, ""),
                    line.kind,
                    Money(line.current),
                    money(line.previous),
                    money(line.change),
                    percent(line.percent),
                    money(line.average),
                    money(line.average_change),
                    percent(line.average_percent),
                    "yes" if line.flagged else "",
                    drivers_text(r, line),
                ],
            )
    sheet, row = sheets.sheet("Callouts", f"Variance review {r.period}: callouts", notes)
    sheets.header(
        sheet, row, ["Callout", "Unit or service", "Name", "Period", "Amount", "Detail"], [18, 16, 32, 10, 15, 50]
    )
    callouts: list[list[object]] = []
    callouts += [
        [
            "new consumer",
            u,
            r.names.get(u, ""),
            r.period,
            Money(r.consumer(u).current),
            "no charges in the comparison window",
        ]
        for u in r.new_consumers
    ]
    callouts += [
        ["consumer gone", u, r.names.get(u, ""), r.previous, money(r.consumer(u).previous), f"no charges in {r.period}"]
        for u in r.gone_consumers
    ]
    callouts += [
        [
            "no usage",
            s.service,
            s.provider,
            s.last_period,
            Money(s.last_amount),
            f"no usage of {s.service} in {r.period}: is a usage file missing?",
        ]
        for s in r.silent_services
    ]
    for at, values in enumerate(callouts, start=row + 1):
        sheets.row(sheet, at, values)
    sheets.save(path, when)
