"""Validated fields shared by every input row (book files, usage files, commands).

Each validator turns text into a plain value or raises `ValueError` with a message
that says what is wrong and how to write it; `problems_of` turns pydantic's errors
into `FILE:LINE: COLUMN: message` problems.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from chargeback.core.errors import Problem, Refused
from chargeback.core.money import QUANTITY_PLACES, RATE_PLACES, parse_decimal

#: What a cell check returns (a code, a Decimal, a date...).
Checked = TypeVar("Checked")

CODE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
PERIOD_PATTERN = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


def blank_to_none(value: object) -> object:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def check_code(value: object) -> str:
    text = str(value).strip()
    if not CODE_PATTERN.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a valid code: 1-32 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )
    return text


def check_date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    try:
        if len(text) != 10:
            raise ValueError
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date: write it as YYYY-MM-DD") from None


#: The periods chargeback keeps: a month outside them (year 0, 9999-12) is a typing
#: mistake, and one posted could never be closed, since its calendar overflows.
FIRST_PERIOD, LAST_PERIOD = "1900-01", "2999-12"


def outside_calendar(period: str) -> str | None:
    """Why a well-formed `YYYY-MM` period cannot be used, or None."""
    if not FIRST_PERIOD <= period <= LAST_PERIOD:
        return f"{period!r} is outside the periods chargeback keeps ({FIRST_PERIOD} to {LAST_PERIOD})"
    return None


def check_period(period: str) -> str:
    """A `YYYY-MM` period within the calendar, or a refusal that says how to write one."""
    if not PERIOD_PATTERN.fullmatch(period or ""):
        raise Refused(f"{period!r} is not a period: write it as YYYY-MM, e.g. 2026-10")
    problem = outside_calendar(period)
    if problem:
        raise Refused(problem)
    return period


def _period_cell(value: object) -> str:
    """`check_period` for a cell of a book file: stripped, and a ValueError (pydantic's)."""
    try:
        return check_period(str(value).strip())
    except Refused as exc:
        raise ValueError(str(exc)) from None


def check_text(value: object) -> str:
    text = str(value)
    if "\x00" in text:
        raise ValueError("contains a NUL character")
    return text.strip()


def check_year(value: object) -> int:
    text = str(value).strip()
    if not (len(text) == 4 and text.isdigit() and text[0] != "0"):
        raise ValueError(f"{text!r} is not a year: write the year as YYYY, e.g. 2027")
    return int(text)


def decimal_checker(places: int, what: str) -> Callable[[object], Decimal]:
    def check(value: object) -> Decimal:
        if isinstance(value, Decimal):
            value = str(value)
        return parse_decimal(str(value), places, what=what)

    return check


def _required(check: Callable[[object], Checked]) -> Callable[[object], Checked]:
    def run(value: object) -> Checked:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError("is required and is blank")
        return check(value)

    return run


def _optional(check: Callable[[object], Checked]) -> Callable[[object], Checked | None]:
    def run(value: object) -> Checked | None:
        value = blank_to_none(value)
        return None if value is None else check(value)

    return run


class FileRecord(BaseModel):
    """A record read from a user's file (a row of a CSV, a table of book.toml): a field
    it does not know is refused."""

    model_config = ConfigDict(extra="forbid")


Code = Annotated[str, BeforeValidator(_required(check_code))]
OptionalCode = Annotated[str | None, BeforeValidator(_optional(check_code))]
Text = Annotated[str, BeforeValidator(_required(check_text))]
OptionalText = Annotated[str | None, BeforeValidator(_optional(check_text))]
Date = Annotated[dt.date, BeforeValidator(_required(check_date))]
OptionalDate = Annotated[dt.date | None, BeforeValidator(_optional(check_date))]
PeriodText = Annotated[str, BeforeValidator(_required(_period_cell))]
OptionalPeriod = Annotated[str | None, BeforeValidator(_optional(_period_cell))]
Year = Annotated[int, BeforeValidator(_required(check_year))]
Quantity = Annotated[Decimal, BeforeValidator(_required(decimal_checker(QUANTITY_PLACES, "quantity")))]
#: A measured value (a service level's): a quantity's precision, named as what it is.
MeasuredValue = Annotated[Decimal, BeforeValidator(_required(decimal_checker(QUANTITY_PLACES, "value")))]
RateValue = Annotated[Decimal, BeforeValidator(_required(decimal_checker(RATE_PLACES, "rate")))]
#: An amount of money as written in a book file; its places are checked against the
#: currency once the book's currency is known.
Amount = Annotated[Decimal, BeforeValidator(_required(decimal_checker(RATE_PLACES, "amount")))]


def check_integer(value: object) -> int:
    text = str(value).strip()
    if not re.fullmatch(r"[+-]?\d{1,9}", text):
        raise ValueError(f"{text!r} is not a whole number")
    return int(text)


OptionalInteger = Annotated[int | None, BeforeValidator(_optional(check_integer))]


def _internal_when_blank(value: object) -> object:
    return "internal" if value in (None, "") else str(value).strip()


#: A unit's kind, or the class of consumers a rate or an SLA is for: `internal` when the
#: cell is empty.
UnitClass = Annotated[Literal["internal", "external"], BeforeValidator(_internal_when_blank)]


def problems_of(error: ValidationError, file: str, line: int) -> list[Problem]:
    """pydantic's errors as problems, one per column, in the users' words."""
    found = []
    for item in error.errors():
        column = str(item["loc"][0]) if item["loc"] else "-"
        message = item["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        elif item["type"] == "missing":
            message = "is required and is blank"
        elif item["type"] == "literal_error":
            message = f"{item.get('input')!r} is not allowed: {message.split('Input should be ')[-1]}"
        found.append(Problem(file, line, column, message))
    return found
