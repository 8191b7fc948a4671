"""The calendar of periods: a period is a month, `YYYY-MM`; a fiscal year is twelve of
them from the book's `fiscal_year_start` month, named by the year it ends in."""

from __future__ import annotations

import datetime as dt

#: Periods in a fiscal year.
MONTHS = 12
MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def month_name(period: str) -> str:
    """`2026-03` as `March 2026`."""
    return f"{MONTH_NAMES[int(period[5:7]) - 1]} {period[:4]}"


def period_bounds(period: str) -> tuple[dt.date, dt.date]:
    """First and last day of a `YYYY-MM` period."""
    year, month = int(period[:4]), int(period[5:7])
    first = dt.date(year, month, 1)
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    return first, nxt - dt.timedelta(days=1)


def previous_period(period: str) -> str:
    """The period before `period`."""
    year, month = int(period[:4]), int(period[5:7])
    return f"{year - (month == 1):04d}-{(month - 2) % 12 + 1:02d}"


def fiscal_year(period: str, start: int) -> int:
    """The fiscal year (the year it ends in) that holds `period`, for fiscal years that
    start in month `start`."""
    year, month = int(period[:4]), int(period[5:7])
    return year + 1 if start > 1 and month >= start else year


def fiscal_periods(year: int, start: int) -> tuple[str, ...]:
    """The twelve periods of fiscal year `year` (which ends in that year), in order."""
    first_year = year - 1 if start > 1 else year
    months = [(first_year * 12 + start - 1 + i) for i in range(MONTHS)]
    return tuple(f"{m // 12:04d}-{m % 12 + 1:02d}" for m in months)
