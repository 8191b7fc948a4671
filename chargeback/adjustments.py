"""Manual adjustments: a charge or credit entered by finance staff, with its reason.

An adjustment waits in its open period and is posted at close like any charge.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, insert, select

from chargeback.errors import Refused
from chargeback.fields import CODE_PATTERN
from chargeback.money import LIMIT, parse_decimal, to_minor
from chargeback.periods import lock_open_period
from chargeback.reference import load_reference
from chargeback.schema import Adjustment


@dataclass(frozen=True)
class AdjustResult:
    id: int
    period: str
    service: str
    consumer: str
    amount: Decimal
    currency: str


def adjust(conn: Connection, period: str, service: str, consumer: str, amount_text: str,
           reason: str, reference: str | None, now: dt.datetime) -> AdjustResult:
    """Record a manual charge (positive) or credit (negative) in an open period."""
    lock_open_period(conn, period, create=True)
    ref = load_reference(conn)
    if service not in ref.services:
        raise Refused(f"--service: {service!r} is not a service of the book")
    if consumer not in ref.units:
        raise Refused(f"--consumer: {consumer!r} is not a unit of the book")
    if ref.services[service].provider == consumer:
        raise Refused(f"--consumer: {consumer!r} provides {service}: a unit cannot charge itself")
    if not reason or not reason.strip():
        raise Refused("--reason: an adjustment needs a reason")
    try:
        amount = parse_decimal(amount_text, ref.digits, what="amount")
    except ValueError as exc:
        raise Refused(f"--amount: {exc}") from None
    if amount == 0:
        raise Refused("--amount: must not be zero")
    if abs(amount) >= LIMIT:
        raise Refused("--amount: is too large")
    if reference is not None:
        reference = reference.strip()
        if not reference or len(reference) > 100 or not CODE_PATTERN.match(reference[:1]):
            raise Refused("--reference: give 1-100 characters starting with a letter or digit")
        taken = conn.execute(select(Adjustment.id).where(
            Adjustment.service == service, Adjustment.reference == reference)).first()
        if taken:
            raise Refused(f"--reference: {reference!r} of {service} is already used by adjustment {taken[0]}")
    new_id = conn.execute(insert(Adjustment).values(
        period=period, service=service, consumer=consumer,
        amount_minor=to_minor(amount, ref.digits), reason=reason.strip(), reference=reference,
        at=now.replace(microsecond=0),
    ).returning(Adjustment.id)).scalar_one()
    return AdjustResult(new_id, period, service, consumer, amount, ref.currency)
