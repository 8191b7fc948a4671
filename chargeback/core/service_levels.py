"""Service levels: targets, breach bands and the credits a miss gives (pure, no database).

An SLA (`slas.csv`) says what a service's consumers of one class can expect: a metric
(availability, response_time...) measured in a unit, a target and a direction (`min`: at
least the target; `max`: at most). Its credit bands (`sla_credits.csv`) turn a miss into
a share of the consumer's charges: a band applies when the measured value is below its
`breach_from` (`min`) or above it (`max`), and the worst band that applies (the highest
credit) is the one used.

A consumer's credit for one metric is `credit_percent` of its usage and recurring
charges for the service in the period, rounded half-up once; the credits of several
metrics add, capped at the charges (`capped`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from chargeback.core.money import round_fraction
from chargeback.core.pricing import plain

DIRECTIONS = ("min", "max")
UNITS = ("percent", "hours", "minutes", "count")
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Band:
    """A graduated credit: below (`min`) or above (`max`) `breach_from`, `credit_percent`."""

    breach_from: Decimal
    credit_percent: Decimal


@dataclass(frozen=True)
class Level:
    """One SLA row: a service's target for a metric, for consumers of one class."""

    service: str
    metric: str
    unit: str
    target: Decimal
    direction: str
    customer_class: str
    effective_from: dt.date
    effective_to: dt.date | None
    description: str | None = None

    def in_force_during(self, first_day: dt.date, last_day: dt.date) -> bool:
        return self.effective_from <= last_day and (self.effective_to is None or self.effective_to >= first_day)

    def met(self, value: Decimal) -> bool:
        """Whether a measured value meets the target."""
        return value >= self.target if self.direction == "min" else value <= self.target

    def value_text(self, value: Decimal) -> str:
        """A value in the SLA's unit: `99.5%`, `6 hours`."""
        return f"{plain(value)}%" if self.unit == "percent" else f"{plain(value)} {self.unit}"


def breached(value: Decimal, direction: str, band: Band) -> bool:
    """Whether `value` falls in `band`: strictly below (`min`) or above (`max`) its edge."""
    return value < band.breach_from if direction == "min" else value > band.breach_from


def worst_band(value: Decimal, direction: str, bands: Iterable[Band]) -> Band | None:
    """The band with the highest credit among those `value` falls in, or None. Ties in
    credit go to the band whose edge is furthest from the value (the first in order)."""
    hit = [b for b in bands if breached(value, direction, b)]
    if not hit:
        return None
    return max(hit, key=lambda b: (b.credit_percent, -b.breach_from if direction == "min" else b.breach_from))


def in_force(levels: Iterable[Level], first_day: dt.date, last_day: dt.date) -> dict[tuple[str, str, str], Level]:
    """The SLA of each (service, metric, customer_class) in force during a period: the
    one in force on its last day, or else the latest that started before it ended."""
    chosen: dict[tuple[str, str, str], Level] = {}
    for level in levels:
        if not level.in_force_during(first_day, last_day):
            continue
        key = (level.service, level.metric, level.customer_class)
        if key not in chosen or chosen[key].effective_from < level.effective_from:
            chosen[key] = level
    return chosen


def credit_minor(charges_minor: int, percent: Decimal) -> int:
    """`percent` of `charges_minor`, rounded half-up once to a minor unit; no credit on
    charges that are zero or negative (a consumer whose credits exceed its usage)."""
    if charges_minor <= 0 or percent <= 0:
        return 0
    return round_fraction(Fraction(charges_minor) * Fraction(min(percent, HUNDRED)) / 100)


def capped(credits: Mapping[str, int], charges_minor: int) -> dict[str, int]:
    """Each metric's credit, their sum capped at the charges: metrics in plain character
    order take what is left, so the last ones give up the excess."""
    left = max(charges_minor, 0)
    result = {}
    for metric in sorted(credits):
        result[metric] = min(credits[metric], left)
        left -= result[metric]
    return result


@dataclass(frozen=True)
class Assessment:
    """One SLA measured in a period for one consumer: met or missed, and the band."""

    level: Level
    value: Decimal | None
    band: Band | None

    @property
    def measured(self) -> bool:
        return self.value is not None

    @property
    def met(self) -> bool:
        return self.value is not None and self.level.met(self.value)

    @property
    def percent(self) -> Decimal:
        return self.band.credit_percent if self.band else Decimal(0)

    def text(self) -> str:
        """The rate source of its credit: `HELP availability 98.7% < 99%: 25%`."""
        level = self.level
        head = f"{level.service} {level.metric}"
        if self.value is None:
            return f"{head} not measured"
        value = level.value_text(self.value)
        target = level.value_text(level.target)
        if self.met:
            return f"{head} {value} {'>=' if level.direction == 'min' else '<='} {target}: met"
        if self.band is None:
            return f"{head} {value} {'<' if level.direction == 'min' else '>'} {target}: missed, no credit band"
        sign = "<" if level.direction == "min" else ">"
        return f"{head} {value} {sign} {level.value_text(self.band.breach_from)}: {plain(self.band.credit_percent)}%"


def assess(level: Level, value: Decimal | None, bands: Sequence[Band]) -> Assessment:
    """The SLA against a measured value (None: not measured)."""
    band = None if value is None or level.met(value) else worst_band(value, level.direction, bands)
    return Assessment(level, value, band)


def measured_value(values: Mapping[str | None, Decimal], consumer: str) -> Decimal | None:
    """The value that applies to `consumer`: its own measurement wins over the one for
    all consumers (key None)."""
    if consumer in values:
        return values[consumer]
    return values.get(None)
