"""The pure rules of service levels: which band applies, the credit of a band rounded
once half-up, and the cap at the charges (properties checked with hypothesis)."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given
from hypothesis import strategies as st

from chargeback.core.service_levels import Band, Level, assess, capped, credit_minor, in_force, worst_band

AVAILABILITY = [Band(Decimal("99.9"), Decimal(10)), Band(Decimal("99.0"), Decimal(25)), Band(Decimal(95), Decimal(50))]
RESPONSE = [Band(Decimal(4), Decimal(5)), Band(Decimal(8), Decimal(20))]


def level(direction: str = "min", target: str = "99.9", **dates: dt.date | None) -> Level:
    return Level(
        "HELP",
        "availability" if direction == "min" else "response_time",
        "percent" if direction == "min" else "hours",
        Decimal(target),
        direction,
        "internal",
        dates.get("effective_from") or dt.date(2026, 1, 1),
        dates.get("effective_to"),
    )


def test_the_worst_band_that_applies_is_used() -> None:
    assert worst_band(Decimal("99.95"), "min", AVAILABILITY) is None
    assert worst_band(Decimal("99.9"), "min", AVAILABILITY) is None  # below, not at
    assert worst_band(Decimal("99.5"), "min", AVAILABILITY).credit_percent == 10  # type: ignore[union-attr]
    assert worst_band(Decimal("98.7"), "min", AVAILABILITY).credit_percent == 25  # type: ignore[union-attr]
    assert worst_band(Decimal("12"), "min", AVAILABILITY).credit_percent == 50  # type: ignore[union-attr]
    assert worst_band(Decimal(4), "max", RESPONSE) is None  # at most 4 hours is met
    assert worst_band(Decimal("4.5"), "max", RESPONSE).credit_percent == 5  # type: ignore[union-attr]
    assert worst_band(Decimal(9), "max", RESPONSE).credit_percent == 20  # type: ignore[union-attr]


def test_a_met_target_gives_no_credit_even_inside_a_band() -> None:
    # Target 99.0 but a band from 99.9: 99.5 meets the target, so no band applies.
    assert assess(level(target="99.0"), Decimal("99.5"), AVAILABILITY).band is None
    missed = assess(level(), Decimal("98.7"), AVAILABILITY)
    assert (missed.met, missed.percent, missed.text()) == (False, 25, "HELP availability 98.7% < 99%: 25%")
    assert assess(level(), None, AVAILABILITY).text() == "HELP availability not measured"
    assert assess(level(), Decimal(100), AVAILABILITY).text() == "HELP availability 100% >= 99.9%: met"


def test_credits_round_half_up_once_and_never_on_nothing() -> None:
    assert credit_minor(19998, Decimal(25)) == 5000  # 4999.5 -> 5000
    assert credit_minor(19998, Decimal(5)) == 1000  # 999.9
    assert credit_minor(101, Decimal(50)) == 51  # 50.5 -> 51
    assert credit_minor(0, Decimal(50)) == 0
    assert credit_minor(-500, Decimal(50)) == 0
    assert credit_minor(1000, Decimal(150)) == 1000  # never past 100%


def test_the_sla_in_force_is_the_latest_that_started() -> None:
    old = level(effective_to=dt.date(2026, 3, 15))
    new = level(target="99.5", effective_from=dt.date(2026, 3, 16))
    march = in_force([old, new], dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    assert march[("HELP", "availability", "internal")] is new
    feb = in_force([old, new], dt.date(2026, 2, 1), dt.date(2026, 2, 28))
    assert feb[("HELP", "availability", "internal")] is old
    assert in_force([old], dt.date(2026, 4, 1), dt.date(2026, 4, 30)) == {}


percents = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(100), places=6)


@given(charges=st.integers(min_value=-(10**12), max_value=10**12), percent=percents)
def test_a_credit_is_the_share_rounded_half_up(charges: int, percent: Decimal) -> None:
    expected = (Decimal(charges) * percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP) if charges > 0 else 0
    assert credit_minor(charges, percent) == expected
    assert 0 <= credit_minor(charges, percent) <= max(charges, 0)


@given(
    charges=st.integers(min_value=-(10**9), max_value=10**9),
    shares=st.dictionaries(st.sampled_from(["availability", "on_time", "response_time"]), percents, min_size=1),
)
def test_several_metrics_add_and_stop_at_the_charges(charges: int, shares: dict[str, Decimal]) -> None:
    each = {metric: credit_minor(charges, p) for metric, p in shares.items()}
    result = capped(each, charges)
    assert sum(result.values()) == min(sum(each.values()), max(charges, 0))
    assert all(0 <= result[m] <= each[m] for m in each)


@given(
    value=st.decimals(min_value=0, max_value=100, places=3),
    worse=st.decimals(min_value=0, max_value=100, places=3),
)
def test_a_worse_value_never_gives_a_smaller_credit(value: Decimal, worse: Decimal) -> None:
    low, high = sorted((value, worse))
    for direction, bands, better, poorer in (("min", AVAILABILITY, high, low), ("max", RESPONSE, low, high)):
        target = level(direction, "99.9" if direction == "min" else "4")
        assert assess(target, poorer, bands).percent >= assess(target, better, bands).percent
