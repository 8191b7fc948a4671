"""Manual adjustments: a charge or credit entered by finance staff, with its reason.

An adjustment waits in its open period and is posted at close like any charge. A
linked adjustment (`--against SERVICE:REFERENCE`) names the posted charge it corrects,
which may be in an earlier, closed period; a linked credit may not take more than what
is left of the original (its amount less the credits already linked to it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, func, insert, select

from chargeback.book.snapshot import load_reference
from chargeback.close.periods import lock_open_period
from chargeback.core.errors import Refused
from chargeback.core.fields import CODE_PATTERN
from chargeback.core.money import LIMIT, format_amount, from_minor, parse_decimal, to_minor
from chargeback.store.schema import Adjustment, ChargeLine, Entry, Usage

#: The longest memo: a line of an invoice.
MEMO_LENGTH = 200


@dataclass(frozen=True)
class AdjustResult:
    id: int
    period: str
    service: str
    consumer: str
    amount: Decimal
    currency: str
    against: str | None = None


@dataclass(frozen=True)
class Original:
    """The posted charge a linked adjustment corrects, and what is linked to it already."""

    service: str
    reference: str
    consumer: str
    periods: tuple[str, ...]
    amount_minor: int
    linked_minor: int

    @property
    def label(self) -> str:
        return f"{self.service}:{self.reference}"


def parse_against(text: str) -> tuple[str, str]:
    """`SERVICE:REFERENCE` as (service, reference)."""
    service, colon, reference = text.partition(":")
    service, reference = service.strip(), reference.strip()
    if not colon or not CODE_PATTERN.fullmatch(service) or not reference:
        raise Refused(f"--against: {text!r}: write SERVICE:REFERENCE, e.g. HELP:H-1001")
    return service, reference


def find_original(conn: Connection, service: str, reference: str, consumer: str | None) -> Original:
    """The posted charge (service, reference) identifies, for `consumer` when given.

    Usage, recurring and allocation entries count, and manual adjustments that are not
    themselves linked. The rows are locked, so two credits against one charge queue."""
    label = f"{service}:{reference}"
    unlinked = select(Adjustment.id).where(Adjustment.against_service.is_(None))
    sources = [
        f"adjustment:{i}"
        for i in conn.execute(
            unlinked.where(Adjustment.service == service, Adjustment.reference == reference)
        ).scalars()
    ]
    rows = list(
        conn.execute(
            select(Entry.consumer, Entry.period, Entry.amount_minor)
            .where(
                Entry.service == service,
                Entry.reference == reference,
                Entry.kind.in_(("recurring", "allocation")) | Entry.source.in_(sources),
            )
            .order_by(Entry.id)
            .with_for_update()
        )
    )
    rows += conn.execute(  # a usage line, priced into a charge
        select(Usage.consumer, Usage.period, ChargeLine.amount_minor)
        .join(ChargeLine, ChargeLine.usage_id == Usage.id)
        .where(Usage.service == service, Usage.reference == reference)
        .with_for_update(of=ChargeLine)
    ).all()
    if not rows:
        pending = conn.execute(
            select(Usage.period).where(Usage.service == service, Usage.reference == reference, Usage.void_id.is_(None))
        ).scalar()
        if pending is not None:
            raise Refused(
                f"--against: {label} is not posted yet: close period {pending} first "
                "(or correct the usage with a negative line before the close)"
            )
        raise Refused(f"--against: no posted charge {label} was found")
    consumers = sorted({r.consumer for r in rows})
    if consumer is None:
        if len(consumers) > 1:
            raise Refused(f"--against: {label} was charged to {', '.join(consumers)}: give --consumer to say which")
        consumer = consumers[0]
    elif consumer not in consumers:
        raise Refused(f"--against: {label} was charged to {', '.join(consumers)}, not to {consumer}")
    mine = [r for r in rows if r.consumer == consumer]
    linked = conn.execute(
        select(func.coalesce(func.sum(Adjustment.amount_minor), 0)).where(
            Adjustment.against_service == service,
            Adjustment.against_reference == reference,
            Adjustment.consumer == consumer,
            Adjustment.void_id.is_(None),
        )
    ).scalar_one()
    return Original(
        service,
        reference,
        consumer,
        tuple(sorted({r.period for r in mine})),
        sum(r.amount_minor for r in mine),
        int(linked),
    )


def adjust(
    conn: Connection,
    period: str,
    service: str | None,
    consumer: str | None,
    amount_text: str,
    reason: str,
    reference: str | None,
    now: dt.datetime,
    against: str | None = None,
    memo: str | None = None,
) -> AdjustResult:
    """Record a manual charge (positive) or credit (negative) in an open period,
    optionally linked to the posted charge it corrects (`SERVICE:REFERENCE`)."""
    lock_open_period(conn, period, create=True)
    ref = load_reference(conn)
    original = None
    if against is not None:
        against_service, against_reference = parse_against(against)
        if service is not None and service != against_service:
            raise Refused(f"--service: {service} differs from the service of --against {against}")
        original = find_original(conn, against_service, against_reference, consumer)
        service, consumer = original.service, original.consumer
    if not service:
        raise Refused("--service: give the service (or --against SERVICE:REFERENCE)")
    if not consumer:
        raise Refused("--consumer: give the consumer (or --against SERVICE:REFERENCE)")
    if service not in ref.services:
        raise Refused(f"--service: {service!r} is not a service of the book")
    if consumer not in ref.units:
        raise Refused(f"--consumer: {consumer!r} is not a unit of the book")
    if ref.services[service].provider == consumer:
        raise Refused(f"--consumer: {consumer!r} provides {service}: a unit cannot charge itself")
    if not reason or not reason.strip():
        raise Refused("--reason: an adjustment needs a reason")
    if memo is not None:
        memo = memo.strip()
        if not memo or len(memo) > MEMO_LENGTH:
            raise Refused(f"--memo: give 1-{MEMO_LENGTH} characters: what the documents show for it")
    try:
        amount = parse_decimal(amount_text, ref.digits, what="amount")
    except ValueError as exc:
        raise Refused(f"--amount: {exc}") from None
    if amount == 0:
        raise Refused("--amount: must not be zero")
    if abs(amount) >= LIMIT:
        raise Refused("--amount: is too large")
    amount_minor = to_minor(amount, ref.digits)
    if original is not None and amount_minor < 0:
        left = original.amount_minor + original.linked_minor
        if left + amount_minor < 0:

            def money(minor: int) -> str:
                return format_amount(minor, ref.digits)

            raise Refused(
                f"--amount: a credit of {money(-amount_minor)} {ref.currency} against "
                f"{original.label} is larger than the original charge: {money(original.amount_minor)} "
                f"charged to {original.consumer} in {', '.join(original.periods)}, "
                f"{money(original.linked_minor)} already linked to it, {money(max(left, 0))} left"
            )
    if reference is not None:
        reference = reference.strip()
        if not reference or len(reference) > 100 or not CODE_PATTERN.match(reference[:1]):
            raise Refused("--reference: give 1-100 characters starting with a letter or digit")
        taken = conn.execute(
            select(Adjustment.id).where(Adjustment.service == service, Adjustment.reference == reference)
        ).first()
        if taken:
            raise Refused(f"--reference: {reference!r} of {service} is already used by adjustment {taken[0]}")
    new_id = conn.execute(
        insert(Adjustment)
        .values(
            period=period,
            service=service,
            consumer=consumer,
            amount_minor=amount_minor,
            reason=reason.strip(),
            memo=memo,
            reference=reference,
            at=now.replace(microsecond=0),
            against_service=original.service if original else None,
            against_reference=original.reference if original else None,
        )
        .returning(Adjustment.id)
    ).scalar_one()
    return AdjustResult(
        new_id,
        period,
        service,
        consumer,
        from_minor(amount_minor, ref.digits),
        ref.currency,
        original.label if original else None,
    )
