"""Money and exact decimals: the one place where amounts are rounded.

Amounts live as integer minor units (cents for USD, yen for JPY) in the database and
as `Decimal` in Python. Quantities and rates are stored as integer millionths. Nothing
here ever touches a float.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction
from typing import ClassVar

import polars as pl
from babel.numbers import get_currency_precision, get_currency_symbol, list_currencies

RATE_PLACES = 6
QUANTITY_PLACES = 6
MICRO = Decimal(10) ** RATE_PLACES
MICRO_SQUARED: int = 10 ** (2 * RATE_PLACES)
#: Largest magnitude accepted for a quantity, a rate or an amount: keeps every
#: stored integer (and every product) well inside a signed 64-bit column.
LIMIT = Decimal(10) ** 12


def known_currency(code: str) -> bool:
    """True for an ISO 4217 code that babel knows."""
    return code in list_currencies()


def minor_digits(currency: str) -> int:
    """Number of minor digits of a currency (USD 2, JPY 0, BHD 3)."""
    return get_currency_precision(currency)


def quantize(value: Decimal, digits: int) -> Decimal:
    """Round to `digits` fractional digits, half away from zero (ROUND_HALF_UP)."""
    return value.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)


def round_fraction(value: Fraction) -> int:
    """An exact fraction of minor units rounded to a whole one, half away from zero:
    the rule of `quantize`, for the exact results of allocation."""
    magnitude = abs(value)
    whole = int(magnitude)
    if magnitude - whole >= Fraction(1, 2):
        whole += 1
    return whole if value >= 0 else -whole


def to_minor(amount: Decimal, digits: int) -> int:
    """An amount already rounded to the currency, as integer minor units."""
    return int(quantize(amount, digits).scaleb(digits))


def from_minor(minor: int, digits: int) -> Decimal:
    """Integer minor units back to a Decimal with the currency's digits."""
    return Decimal(minor).scaleb(-digits) if digits else Decimal(minor)


#: 10**digits for a currency's minor digits, worked out once.
_SCALES = tuple(10**digits for digits in range(19))


def format_amount(minor: int, digits: int) -> str:
    """Minor units as the plain string the JSON and exports use: `-30.00`. Worked out in
    integers and plain string operations (the million-line exports and sheets call it
    several times a line); `from_minor` formatted with the currency's digits gives the
    same text."""
    if not digits:
        return str(minor)
    whole, part = divmod(abs(minor), _SCALES[digits])
    return f"{'-' if minor < 0 else ''}{whole}.{str(part).zfill(digits)}"


class InCurrency:
    """A record of amounts in minor units of the book's currency, which has `digits`
    decimal places: `money` shows one of them as the JSON and the printed lines do, and
    an amount that could not be worked out (None) as `unknown`."""

    digits: int
    unknown: ClassVar[str] = ""

    def money(self, minor: int | None) -> str:
        return self.unknown if minor is None else format_amount(minor, self.digits)


def format_grouped(minor: int, digits: int) -> str:
    """`format_amount` with thousands separators, as invoices show amounts: `-1,230.00`."""
    if not digits:
        return f"{minor:,}"
    whole, part = divmod(abs(minor), _SCALES[digits])
    return f"{'-' if minor < 0 else ''}{whole:,}.{str(part).zfill(digits)}"


def format_percent(share: Decimal | None) -> str:
    """A share as a percentage with one decimal: `0.2512` as `25.1%`; blank for None."""
    return "" if share is None else f"{quantize(share * 100, 1)}%"


def to_micro(value: Decimal) -> int:
    """A quantity or rate with at most six fractional digits, as integer millionths."""
    return int(value * MICRO)


def from_micro(micro: int) -> Decimal:
    """Integer millionths back to a Decimal, trailing zeros dropped (`1.5`, `60`)."""
    value = Decimal(micro) / MICRO
    return value.quantize(Decimal(1)) if value == value.to_integral() else value.normalize()


def _micro_parts(micro: int) -> tuple[str, int, str]:
    """Integer millionths as sign, whole part and fraction without trailing zeros."""
    whole, part = divmod(abs(micro), 1_000_000)
    return "-" if micro < 0 else "", whole, str(part).zfill(6).rstrip("0") if part else ""


def micro_text(micro: int) -> str:
    """`str(from_micro(micro))` worked out in integers (`1.5`, `60`, `-0.25`): the
    statements' sheets write a quantity for each of a million lines and rows."""
    sign, whole, fraction = _micro_parts(micro)
    return f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}"


def grouped_micro(micro: int, places: int = 0) -> str:
    """Integer millionths as invoices show a quantity or rate: thousands separators and
    at least `places` decimals (`1,500`, `45.125`, `60.00`), worked out in integers."""
    sign, whole, fraction = _micro_parts(micro)
    fraction = fraction.ljust(places, "0")
    return f"{sign}{whole:,}.{fraction}" if fraction else f"{sign}{whole:,}"


def parse_decimal(text: str, places: int, *, what: str = "number") -> Decimal:
    """Parse a plain decimal (digits, optional sign, `.` separator, at most `places`
    fractional digits, magnitude below 10^12). Raises ValueError with a message a
    finance user understands."""
    raw = text.strip()
    if not raw:
        raise ValueError(f"{what} is empty")
    body = raw[1:] if raw[0] in "+-" else raw
    if not body or not all(c.isdigit() or c == "." for c in body) or body.count(".") > 1:
        raise ValueError(f"{what} {raw!r} is not a plain decimal number (digits with '.' as the separator)")
    if body == ".":
        raise ValueError(f"{what} {raw!r} is not a number")
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:  # pragma: no cover - guarded by the checks above
        raise ValueError(f"{what} {raw!r} is not a number") from exc
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > places and value != quantize(value, places):
        raise ValueError(f"{what} {raw!r} has more than {places} decimal places")
    if abs(value) >= LIMIT:
        raise ValueError(f"{what} {raw!r} is too large (the limit is 10^12)")
    return quantize(value, places) if -exponent > places else value


def price(quantity: Decimal, rate: Decimal, digits: int) -> Decimal:
    """amount = quantity x rate, rounded once to the currency's minor unit."""
    return quantize(quantity * rate, digits)


def currency_format(currency: str, digits: int) -> str:
    """An Excel number format for amounts of `currency`: `"$"#,##0.00`, negatives in red."""
    symbol = get_currency_symbol(currency, locale="en")
    symbol = symbol if len(symbol) == 1 else f"{symbol} "
    number = "#,##0" + ("." + "0" * digits if digits else "")
    return f'"{symbol}"{number};[Red]-"{symbol}"{number}'


def minor_of_product(quantity_micro: int, rate_micro: int, digits: int) -> int:
    """quantity x rate (both in millionths) in minor units, rounded half up (away from
    zero) exactly as `quantize` rounds it, in integers: the close prices a million lines
    with this, where Decimal arithmetic per line would cost seconds."""
    numerator: int = quantity_micro * rate_micro * 10**digits
    whole, rest = divmod(abs(numerator), MICRO_SQUARED)
    if 2 * rest >= MICRO_SQUARED:
        whole += 1
    return whole if numerator >= 0 else -whole


def rounded_scaled(exact: pl.Expr, scale: int, digits: int) -> pl.Expr:
    """A column of exact integers in units of 10**-scale as units of 10**-digits,
    rounded half away from zero: the rule of `quantize`, over a whole column (128-bit
    integers). A cloud bill's costs are summed exactly, then rounded once with this."""
    divisor = 10 ** (scale - digits)
    rounded: pl.Expr = (exact.abs() + divisor // 2) // divisor * exact.sign()
    return rounded
