"""Pricing: the rate in force for the consumer's class on the usage date, and the
amount rounded once per line, half away from zero, never through a float."""

import datetime as dt
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from chargeback.core.money import (
    format_amount,
    format_grouped,
    from_minor,
    minor_of_product,
    parse_decimal,
    price,
    quantize,
    to_micro,
    to_minor,
)
from chargeback.core.pricing import RateRow, RateTable, overlapping

D = Decimal


def test_float_trap_is_priced_exactly() -> None:
    assert 0.335 * 3 != 1.005  # the float product is 1.0050000000000001
    assert price(D("0.335"), D("3"), 2) == D("1.01")
    assert price(D("3"), D("0.335"), 2) == D("1.01")


def test_half_cents_round_away_from_zero() -> None:
    assert price(D("1"), D("0.005"), 2) == D("0.01")
    assert price(D("-1"), D("0.005"), 2) == D("-0.01")
    assert price(D("1"), D("2.675"), 2) == D("2.68")  # round(2.675, 2) is 2.67 in floats
    assert price(D("1"), D("0.004999"), 2) == D("0.00")
    assert price(D("1.5"), D("45.125"), 2) == D("67.69")  # 67.6875


def test_currency_minor_digits() -> None:
    assert price(D("3"), D("33.5"), 0) == D("101")  # JPY: 100.5 -> 101
    assert to_minor(D("12.345"), 3) == 12345
    assert format_amount(-3000, 2) == "-30.00"
    assert format_amount(7, 0) == "7"


def test_parse_decimal_refuses_what_is_not_a_plain_number() -> None:
    assert parse_decimal("10.1", 6) == D("10.1")
    assert parse_decimal("-0.5", 6) == D("-0.5")
    for bad in ("1,5", "1e3", "NaN", "Infinity", "", "1.2.3", "0x10", "1 000"):
        try:
            parse_decimal(bad, 6)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
    for bad in ("1.1234567", "1e30", "1000000000000"):
        try:
            parse_decimal(bad, 6)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


def rate(service: str, start: str, end: str | None, value: str, cls: str = "internal") -> RateRow:
    return RateRow(service, cls, dt.date.fromisoformat(start), dt.date.fromisoformat(end) if end else None, D(value))


def test_rate_in_force_on_the_usage_date_for_the_consumers_class() -> None:
    table = RateTable(
        [
            rate("VAN", "2026-01-01", "2026-03-15", "45.125"),
            rate("VAN", "2026-03-16", None, "47.5"),
            rate("VAN", "2026-01-01", None, "60", "external"),
        ]
    )
    assert table.find("VAN", "internal", dt.date(2026, 3, 15)).rate == D("45.125")
    assert table.find("VAN", "internal", dt.date(2026, 3, 16)).rate == D("47.5")
    assert table.find("VAN", "external", dt.date(2026, 3, 16)).rate == D("60")
    assert table.find("VAN", "internal", dt.date(2025, 12, 31)) is None
    assert table.find("BUS", "internal", dt.date(2026, 3, 16)) is None
    row = table.find("VAN", "internal", dt.date(2026, 3, 20))
    assert price(D("2"), row.rate, 2) == D("95.00")
    assert row.provenance == "VAN/internal/2026-03-16"


def test_overlapping_rate_ranges_are_found() -> None:
    rows = [
        rate("A", "2026-01-01", "2026-03-31", "1"),
        rate("A", "2026-03-31", None, "2"),
        rate("A", "2026-01-01", None, "9", "external"),
        rate("B", "2026-01-01", "2026-01-31", "1"),
        rate("B", "2026-02-01", None, "1"),
    ]
    clashes = overlapping(rows)
    assert [(a.service, b.effective_from.isoformat()) for a, b in clashes] == [("A", "2026-03-31")]
    assert overlapping([rate("A", "2026-01-01", None, "1"), rate("A", "2027-01-01", None, "1")])


quantities = st.decimals(min_value=D("-999999"), max_value=D("999999"), places=6, allow_nan=False)
rates = st.decimals(min_value=D("0"), max_value=D("99999"), places=6, allow_nan=False)


@given(quantities, rates, st.sampled_from([0, 2, 3]))
def test_price_matches_exact_integer_rounding(quantity: Decimal, rate_value: Decimal, digits: int) -> None:
    product = int(quantity * 10**6) * int(rate_value * 10**6)  # exact, in 10^-12
    scale = 10 ** (12 - digits)
    magnitude = (abs(product) + scale // 2) // scale
    expected = magnitude if product >= 0 else -magnitude
    assert to_minor(price(quantity, rate_value, digits), digits) == expected
    assert quantize(price(quantity, rate_value, digits), digits) == price(quantity, rate_value, digits)


@given(quantities, rates, st.sampled_from([0, 2, 3]))
def test_the_close_prices_in_integers_as_decimal_pricing_does(
    quantity: Decimal, rate_value: Decimal, digits: int
) -> None:
    exact = to_minor(price(quantity, rate_value, digits), digits)
    assert minor_of_product(to_micro(quantity), to_micro(rate_value), digits) == exact


def test_integer_pricing_rounds_half_cents_away_from_zero() -> None:
    assert minor_of_product(1_000_000, 5_000, 2) == 1  # 1 x 0.005 = 0.005 -> 0.01
    assert minor_of_product(-1_000_000, 5_000, 2) == -1
    assert minor_of_product(1_000_000, 4_999, 2) == 0
    assert minor_of_product(3_000_000, 333_333, 2) == 100  # 0.999999 -> 1.00


@given(st.integers(-(10**18), 10**18), st.integers(0, 10**18), st.sampled_from([0, 2, 3]))
def test_integer_pricing_rounds_like_quantize(quantity_micro: int, rate_micro: int, digits: int) -> None:
    """`minor_of_product` (the close's and the import's integer pricing) is `quantize`'s rule."""
    from decimal import localcontext

    from chargeback.core.money import minor_of_product

    with localcontext() as context:
        context.prec = 60  # exact product, whatever the size
        exact = D(quantity_micro).scaleb(-6) * D(rate_micro).scaleb(-6)
        expected = int(quantize(exact, digits).scaleb(digits))
    assert minor_of_product(quantity_micro, rate_micro, digits) == expected


@given(st.integers(-(10**6), 10**6).filter(bool), st.sampled_from([0, 5, 335, 1_250_000, 999_999]))
def test_integer_pricing_ties_go_away_from_zero(quantity: int, rate_micro: int) -> None:
    from chargeback.core.money import minor_of_product

    expected = to_minor(quantize(D(quantity).scaleb(-6) * D(rate_micro).scaleb(-6), 2), 2)
    assert minor_of_product(quantity, rate_micro, 2) == expected


@given(st.integers(min_value=-(10**15), max_value=10**15), st.integers(min_value=0, max_value=3))
def test_an_amount_is_written_as_its_decimal_with_the_currency_digits(minor: int, digits: int) -> None:
    """`format_amount` and `format_grouped` work in integers; the text is the exact
    Decimal's (as a workbook cell's value takes it, and with thousands separators)."""
    assert format_amount(minor, digits) == f"{from_minor(minor, digits):.{digits}f}" == str(from_minor(minor, digits))
    assert format_grouped(minor, digits) == f"{from_minor(minor, digits):,.{digits}f}"


@given(
    st.one_of(
        st.integers(min_value=-(10**18), max_value=10**18),
        st.integers(min_value=-(10**6), max_value=10**6).map(lambda whole: whole * 1_000_000),
    )
)
def test_a_quantity_is_written_as_its_decimal(micro: int) -> None:
    """`micro_text` works in integers; the text is the Decimal's (`from_micro`): no
    trailing zeros, no exponent, whole numbers without a point."""
    from chargeback.core.money import from_micro, micro_text

    assert micro_text(micro) == str(from_micro(micro))


@given(
    st.one_of(
        st.integers(min_value=-(10**18), max_value=10**18),
        st.integers(min_value=-(10**6), max_value=10**6).map(lambda whole: whole * 1_000_000),
    ),
    st.integers(min_value=0, max_value=4),
)
def test_an_invoice_shows_a_quantity_or_rate_as_its_decimal_grouped(micro: int, places: int) -> None:
    """`grouped_micro` works in integers; the text is the Decimal's with thousands
    separators and at least `places` decimals."""
    from chargeback.core.money import from_micro, grouped_micro

    value = from_micro(micro)
    if -value.as_tuple().exponent < places:  # type: ignore[operator]
        value = value.quantize(D(1).scaleb(-places))
    assert grouped_micro(micro, places) == f"{value:,f}"
