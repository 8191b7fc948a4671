"""Budgets: an internal unit's internal-spend budget for a fiscal year (`budgets.csv`)
against what the journal says it spent.

Fiscal year YYYY ends in YYYY and starts in the month `fiscal_year_start` of book.toml
(default 7): fiscal year 2027 runs from 2026-07 to 2027-06; with 1 it is the calendar
year. A unit's spend is its own internal spend posted in the journal (not its child
units'), from the fiscal year's first period through the period asked about.
The year-end projection is a straight line: spend so far / months elapsed x 12.
A unit is *over budget* when it has spent more than its budget, and *on course to
exceed* it when the projection is more than the budget.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Connection, func, select

from chargeback.close.reconciliation import PeriodTotal
from chargeback.core.calendar import MONTHS, fiscal_periods, fiscal_year
from chargeback.core.errors import Refused
from chargeback.core.money import InCurrency, format_amount, format_percent, quantize
from chargeback.store.schema import Book, Budget, Entry, PeriodTotalRow, Unit


@dataclass(frozen=True)
class BudgetStatus:
    """A unit's budget for a fiscal year against its spend through `through`."""

    unit: str
    fiscal_year: int
    first: str  # the fiscal year's first period
    last: str  # and its last
    through: str | None  # the last period counted (None: nothing spent in the year yet)
    months: int  # months of the fiscal year counted
    budget: int | None  # None: spend without a budget
    spent: int
    #: The first period counted when the tool's first charges came after the year began
    #: (None: the year's first period): the projection runs from there, not from before
    #: the tool had any data.
    counted_from: str | None = None

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - self.spent

    @property
    def used(self) -> Decimal | None:
        """The share of the budget spent (0.5 is 50%)."""
        return None if not self.budget else Decimal(self.spent) / Decimal(self.budget)

    @property
    def months_left(self) -> int:
        """Months of the fiscal year after `through`."""
        counted_from = self.counted_from or self.first
        elapsed = (_index(self.through) - _index(counted_from) + 1) if self.through else 0
        return MONTHS - elapsed - (_index(counted_from) - _index(self.first))

    @property
    def projected(self) -> int | None:
        """Spend by the end of the fiscal year on a straight line: the spend so far plus
        its monthly average over the months counted for each month left."""
        if not self.months:
            return None
        return int(quantize(Decimal(self.spent) * (self.months + self.months_left) / self.months, 0))

    @property
    def over(self) -> bool:
        return self.budget is not None and self.spent > self.budget

    @property
    def on_course_to_exceed(self) -> bool:
        projected = self.projected
        return self.budget is not None and not self.over and projected is not None and projected > self.budget

    @property
    def state(self) -> str:
        if self.budget is None:
            return "no budget"
        if self.over:
            return "over budget"
        if self.on_course_to_exceed:
            return "on course to exceed"
        return "within budget"


def _index(period: str) -> int:
    """A period as a count of months, to subtract one from another."""
    return int(period[:4]) * 12 + int(period[5:7]) - 1


def _start(conn: Connection) -> int:
    start = conn.execute(select(Book.fiscal_year_start)).scalar()
    if start is None:
        raise Refused("no book is loaded: run `chargeback load BOOK` first")
    return start


def _statuses(
    conn: Connection,
    year: int,
    through: str | None,
    with_unbudgeted: bool = True,
    last: Iterable[PeriodTotal] | None = None,
) -> list[BudgetStatus]:
    """Budget statuses of fiscal year `year` through `through` (None: nothing posted yet);
    units with spend but no budget too when `with_unbudgeted`. `last`: the totals of
    `through` itself when the caller has read them; only the earlier periods are read."""
    periods = fiscal_periods(year, _start(conn))
    budgets = select(Budget.unit, Budget.amount_minor).where(Budget.fiscal_year == year)
    amounts = dict(conn.execute(budgets).all())
    spent: dict[str, int] = {}
    if through is not None:
        # the year's earlier periods from their totals stored at close; `through` itself
        # from `last` or its entries (it may be a preview's, or closing right now)
        stored = PeriodTotalRow
        earlier = (
            select(stored.consumer, func.sum(stored.amount_minor))
            .where(stored.customer_class == "internal", stored.period >= periods[0], stored.period < through)
            .group_by(stored.consumer)
        )
        spent = {code: int(amount) for code, amount in conn.execute(earlier)}
        if last is None:
            now = (
                select(Entry.consumer, func.sum(Entry.amount_minor))
                .where(Entry.customer_class == "internal", Entry.period == through)
                .group_by(Entry.consumer)
            )
            through_spent: Iterable[tuple[str, int]] = conn.execute(now)
        else:
            through_spent = ((t.consumer, t.amount_minor) for t in last if t.customer_class == "internal")
        for code, amount in through_spent:
            spent[code] = spent.get(code, 0) + int(amount)
    first_known = conn.execute(select(func.min(Entry.period))).scalar()
    counted_from = first_known if through and periods[0] < (first_known or "") <= through else None
    months = periods.index(through) + 1 - (periods.index(counted_from) if counted_from else 0) if through else 0
    codes = set(amounts) | (set(spent) if with_unbudgeted else set())
    return [
        BudgetStatus(
            code, year, periods[0], periods[-1], through, months, amounts.get(code), spent.get(code, 0), counted_from
        )
        for code in sorted(codes)
    ]


def last_posted(conn: Connection, year: int) -> str | None:
    """The last period of fiscal year `year` with posted entries."""
    periods = fiscal_periods(year, _start(conn))
    return conn.execute(
        select(func.max(Entry.period)).where(Entry.period >= periods[0], Entry.period <= periods[-1])
    ).scalar()


def statuses_for(conn: Connection, period: str, totals: Iterable[PeriodTotal] | None = None) -> dict[str, BudgetStatus]:
    """The budget status of every unit with a budget for the fiscal year of `period`,
    through `period` (with the entries of this transaction: a preview's or a close's);
    `totals`: the period's own, when the caller has read them."""
    found = _statuses(conn, fiscal_year(period, _start(conn)), period, with_unbudgeted=False, last=totals)
    return {status.unit: status for status in found}


def warnings(conn: Connection, period: str, totals: Iterable[PeriodTotal] | None = None) -> list[BudgetStatus]:
    """Units over their budget, or on course to exceed it, through `period`."""
    return [s for s in statuses_for(conn, period, totals).values() if s.over or s.on_course_to_exceed]


def warning_text(status: BudgetStatus, digits: int, currency: str) -> str:
    def m(minor: int | None) -> str:
        return "" if minor is None else format_amount(minor, digits)

    s = status
    if s.over:
        return (
            f"warning: {s.unit} is over its fiscal year {s.fiscal_year} budget: spent "
            f"{m(s.spent)} of {m(s.budget)} {currency} ({format_percent(s.used)}) through {s.through}"
        )
    counted = (
        f"in {s.months} month{'s' if s.months != 1 else ''} since {s.counted_from} (the first month with charges)"
        if s.counted_from
        else f"in {s.months} of {MONTHS} months"
    )
    return (
        f"warning: {s.unit} is on course to exceed its fiscal year {s.fiscal_year} budget: spent "
        f"{m(s.spent)} of {m(s.budget)} {currency} {counted}, "
        f"{m(s.projected)} by {s.last} on a straight line"
    )


@dataclass(frozen=True)
class Table(InCurrency):
    """The budget table of a fiscal year, for the `budgets` command."""

    fiscal_year: int
    first: str
    last: str
    through: str | None
    months: int
    currency: str
    digits: int
    rows: list[BudgetStatus]
    names: dict[str, str]

    @property
    def heading(self) -> str:
        counted = f"through {self.through} ({self.months} of {MONTHS} months)" if self.through else "nothing posted yet"
        return f"budgets of fiscal year {self.fiscal_year} ({self.first} to {self.last}), {counted}"

    def lines(self) -> list[str]:
        m = self.money
        out = [
            self.heading,
            f"  {'unit':<20} {'budget':>14} {'spent':>14} {'remaining':>14} {'used':>7} {'projected':>14}  status",
        ]
        for s in self.rows:
            out.append(
                f"  {s.unit:<20} {m(s.budget):>14} {m(s.spent):>14} {m(s.remaining):>14} "
                f"{format_percent(s.used):>7} {m(s.projected):>14}  {s.state}"
            )
        return out

    def write(self, path: Path, book: str, when: dt.datetime) -> None:
        """The table as a workbook, amounts as numbers with the currency's format."""
        from chargeback.documents.small_workbooks import Money, Sheets, money, percent  # XlsxWriter: loaded when needed

        sheets = Sheets(
            f"Budgets fiscal year {self.fiscal_year}",
            book=book,
            currency=self.currency,
            digits=self.digits,
            draft=False,
        )
        sheet, row = sheets.sheet(
            "Budgets",
            f"Budgets fiscal year {self.fiscal_year}",
            [f"{book}: {self.heading}.", "Projected: spend so far / months counted x 12."],
        )
        sheets.header(
            sheet,
            row,
            ["Unit", "Name", "Budget", "Spent to date", "Remaining", "Used", "Projected year end", "Status"],
            [14, 32, 15, 15, 15, 9, 15, 20],
        )
        for at, s in enumerate(self.rows, start=row + 1):
            sheets.row(
                sheet,
                at,
                [
                    s.unit,
                    self.names.get(s.unit, ""),
                    money(s.budget),
                    Money(s.spent),
                    money(s.remaining),
                    percent(s.used),
                    money(s.projected),
                    s.state,
                ],
            )
        sheets.save(path, when)


def table(conn: Connection, year: int) -> Table:
    """The budget table of fiscal year `year`, through its last period with posted entries."""
    book = conn.execute(select(Book.currency, Book.minor_digits)).first()
    if book is None:
        raise Refused("no book is loaded: run `chargeback load BOOK` first")
    periods = fiscal_periods(year, _start(conn))
    through = last_posted(conn, year)
    names = dict(conn.execute(select(Unit.code, Unit.name)).all())
    return Table(
        year,
        periods[0],
        periods[-1],
        through,
        periods.index(through) + 1 if through else 0,
        book.currency,
        book.minor_digits,
        _statuses(conn, year, through),
        names,
    )
