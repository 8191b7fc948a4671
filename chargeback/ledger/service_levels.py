"""Service levels in the books: each period's SLAs measured against their targets, and
the credits a miss gives, posted as journal entries of kind `sla_credit`.

A credit reduces the consumer's spend and the provider's revenue by one amount: it is
posted like a charge of a negative amount on the accounts the usage charges use (debit
`expenses:internal:CONSUMER` / `assets:receivable:CUSTOMER`, credit
`revenue:internal:PROVIDER` / `revenue:external:PROVIDER`), so net zero holds by
construction. One entry per (consumer, service, metric), source
`sla:SERVICE:METRIC:PERIOD:CONSUMER`; a close after a reopen posts the difference when a
measurement was corrected (source `...:2`, `:3`...), as allocations do, so what is posted
always equals the current credit.

The charges a credit is a share of are the consumer's usage and recurring charges for
the service in the period, summed in SQL from the posted journal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import Connection, func, select

from chargeback.book.snapshot import Reference
from chargeback.core.calendar import period_bounds
from chargeback.core.errors import Refused
from chargeback.core.money import format_amount, from_micro
from chargeback.core.service_levels import Assessment, Band, Level, assess, capped, credit_minor, in_force
from chargeback.ledger.entries import Draft, accounts
from chargeback.store.schema import Book, Entry, ServiceLevel, SlaCreditBand, SlaMeasurement

KIND = "sla_credit"
SOURCE_LENGTH = 200


def levels(conn: Connection) -> list[Level]:
    """Every SLA of the loaded book."""
    return [
        Level(
            r.service,
            r.metric,
            r.unit,
            from_micro(r.target_micro),
            r.direction,
            r.customer_class,
            r.effective_from,
            r.effective_to,
            r.description,
        )
        for r in conn.execute(select(ServiceLevel.__table__).order_by(ServiceLevel.id))
    ]


def bands(conn: Connection) -> dict[tuple[str, str], list[Band]]:
    """The credit bands of each (service, metric)."""
    found: dict[tuple[str, str], list[Band]] = defaultdict(list)
    for r in conn.execute(select(SlaCreditBand.__table__).order_by(SlaCreditBand.id)):
        found[(r.service, r.metric)].append(Band(from_micro(r.breach_from_micro), from_micro(r.credit_percent_micro)))
    return dict(found)


def measurements(conn: Connection, period: str) -> dict[tuple[str, str], dict[str | None, Decimal]]:
    """The values measured in `period` per (service, metric): by consumer, None for all."""
    found: dict[tuple[str, str], dict[str | None, Decimal]] = defaultdict(dict)
    for r in conn.execute(select(SlaMeasurement.__table__).where(SlaMeasurement.period == period)):
        found[(r.service, r.metric)][r.consumer or None] = from_micro(r.value_micro)
    return dict(found)


def levels_in_force(conn: Connection, period: str) -> dict[tuple[str, str, str], Level]:
    """The SLA of each (service, metric, class) in force during `period`."""
    first, last = period_bounds(period)
    return in_force(levels(conn), first, last)


@dataclass
class ConsumerLevels:
    """A consumer's service in a period against its SLAs: each metric assessed, and the
    credit of each (after the cap at the charges)."""

    consumer: str
    service: str
    customer_class: str
    charges_minor: int
    assessments: list[Assessment]
    credits: dict[str, int]

    @property
    def credit_minor(self) -> int:
        return sum(self.credits.values())

    def capped(self, assessment: Assessment) -> bool:
        """Whether the metric's credit was cut by the cap at the charges."""
        metric = assessment.level.metric
        return self.credits[metric] < credit_minor(self.charges_minor, assessment.percent)


@dataclass(frozen=True)
class Missing:
    """An SLA in force with no measurement for some consumers charged for its service."""

    service: str
    metric: str
    customer_class: str
    consumers: tuple[str, ...]


@dataclass
class PeriodLevels:
    """The service levels of a period: every consumer charged for a service with an SLA,
    and the SLAs that lack a measurement."""

    period: str
    digits: int
    rows: list[ConsumerLevels] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)

    @property
    def misses(self) -> list[tuple[ConsumerLevels, Assessment]]:
        return [(row, a) for row in self.rows for a in row.assessments if a.measured and not a.met]

    def review_lines(self) -> list[str]:
        """What `preview` and `close` print: each miss and each missing measurement."""
        out = []
        for row, a in self.misses:
            credit = row.credits.get(a.level.metric, 0)
            out.append(
                f"  SLA missed: {a.text()}; {row.consumer} credited {format_amount(credit, self.digits)} "
                f"of {format_amount(row.charges_minor, self.digits)}"
            )
        out.extend(
            f"  SLA not measured: {m.service} {m.metric} ({m.customer_class}) in {self.period}, "
            f"no value for {', '.join(m.consumers)}: no credit; `chargeback sla import FILE --period {self.period}`"
            for m in self.missing
        )
        return out


def charges(conn: Connection, period: str) -> dict[tuple[str, str], tuple[str, int]]:
    """(class, amount) of each (consumer, service)'s usage and recurring charges posted
    in `period`, summed in SQL."""
    return {
        (consumer, service): (kind, int(amount))
        for consumer, service, kind, amount in conn.execute(
            select(Entry.consumer, Entry.service, Entry.customer_class, func.sum(Entry.amount_minor))
            .where(Entry.period == period, Entry.kind.in_(("usage", "recurring")))
            .group_by(Entry.consumer, Entry.service, Entry.customer_class)
        )
    }


def period_levels(conn: Connection, period: str, digits: int) -> PeriodLevels:
    """Every consumer charged in `period` for a service with an SLA in force, assessed
    against each of the SLAs of its class, with its credits."""
    result = PeriodLevels(period, digits)
    in_force_now = levels_in_force(conn, period)
    if not in_force_now:
        return result
    credit_bands = bands(conn)
    values = measurements(conn, period)
    by_service: dict[tuple[str, str], list[Level]] = defaultdict(list)
    for (service, _, customer_class), level in sorted(in_force_now.items()):
        by_service[(service, customer_class)].append(level)
    unmeasured: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for (consumer, service), (customer_class, amount) in sorted(charges(conn, period).items()):
        slas = by_service.get((service, customer_class))
        if not slas:
            continue
        assessments = []
        for level in slas:
            measured = values.get((service, level.metric), {})
            value = measured.get(consumer, measured.get(None))
            if value is None:
                unmeasured[(service, level.metric, customer_class)].append(consumer)
            assessments.append(assess(level, value, credit_bands.get((service, level.metric), [])))
        credits = capped({a.level.metric: credit_minor(amount, a.percent) for a in assessments}, amount)
        result.rows.append(ConsumerLevels(consumer, service, customer_class, amount, assessments, credits))
    result.missing = [Missing(s, m, c, tuple(units)) for (s, m, c), units in sorted(unmeasured.items())]
    return result


def refuse_missing(conn: Connection, levels_of_period: PeriodLevels) -> None:
    """With `sla_missing = "refuse"`, a close refuses a period whose SLA lacks a measurement."""
    setting = conn.execute(select(Book.sla_missing)).scalar()
    if setting != "refuse" or not levels_of_period.missing:
        return
    first = levels_of_period.missing[0]
    period = levels_of_period.period
    raise Refused(
        f"period {period}: no measurement of {first.service} {first.metric} for {', '.join(first.consumers)} "
        f'(book.toml has sla_missing = "refuse"): import it with `chargeback sla import FILE --period {period}`'
    )


def _posted(conn: Connection, period: str) -> dict[str, tuple[int, int]]:
    """(amount, entries) already posted per `sla:SERVICE:METRIC:PERIOD:CONSUMER`."""
    posted: dict[str, tuple[int, int]] = {}
    for source, amount in conn.execute(
        select(Entry.source, Entry.amount_minor).where(Entry.period == period, Entry.kind == KIND)
    ):
        key = ":".join((source or "").split(":")[:5])
        done, count = posted.get(key, (0, 0))
        posted[key] = (done + amount, count + 1)
    return posted


def credit_drafts(ref: Reference, conn: Connection, levels_of_period: PeriodLevels) -> Iterator[Draft]:
    """The credits of the period not yet posted, or the difference from what was."""
    period = levels_of_period.period
    _, last_day = period_bounds(period)
    posted = _posted(conn, period)
    for row in levels_of_period.rows:
        provider = ref.services[row.service].provider
        unit = ref.units[row.consumer]
        debit, credit = accounts(row.customer_class, row.consumer, provider)
        for a in row.assessments:
            metric = a.level.metric
            key = f"sla:{row.service}:{metric}:{period}:{row.consumer}"
            done, count = posted.get(key, (0, 0))
            amount = -row.credits[metric]
            if amount == done or (not a.measured and count == 0):
                continue
            source = key + (f":{count + 1}" if count else "")
            text = a.text() + (" (capped at the charges)" if row.capped(a) else "")
            memo = f"Service credit: {row.service} {metric}"
            if a.measured:
                memo += (
                    f" measured {a.level.value_text(a.value)}, target "  # type: ignore[arg-type]
                    f"{a.level.direction} {a.level.value_text(a.level.target)}"
                )
            yield Draft(
                period,
                last_day,
                last_day,
                KIND,
                None,
                source,
                row.service,
                provider,
                row.consumer,
                row.customer_class,
                0,
                None,
                amount - done,
                debit,
                credit,
                unit.expense_account,
                ref.units[provider].revenue_account,
                f"SLA-{metric}-{period}"[:100],
                memo + (" (revised)" if count else ""),
                text[:SOURCE_LENGTH],
            )
