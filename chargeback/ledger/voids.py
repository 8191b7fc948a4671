"""Voids: an import or an adjustment taken back before a close posts it.

The usage lines of a voided import stay in the database (usage is append-only): each is
marked with its void (`usage.void_id`, the one change the database allows a usage line,
and only while no charge has priced it), and a voided adjustment likewise. Voided lines
and adjustments are priced, posted, counted and shown nowhere; the void itself (kind,
target, reason, user, time, what it took out) is a row of `voids`, listed in the
reconciliation workbook's `Exceptions` sheet, and the command is in the audit log. The
(service, reference) pairs of a voided import are free again: the corrected file can be
imported.

What is posted is never voided: a posted charge is corrected by a new entry
(`chargeback adjust`, with `--against` to link the credit to the charge).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Connection, exists, func, insert, select, update

from chargeback.book.snapshot import load_reference
from chargeback.close.periods import lock_period
from chargeback.core.errors import Refused
from chargeback.core.money import from_minor
from chargeback.ledger.audit import os_user
from chargeback.ledger.charges import adjustment_posted
from chargeback.store.schema import Adjustment, ChargeLine, Import, Usage, Void

KINDS = ("import", "adjustment")


@dataclass(frozen=True)
class VoidResult:
    """What a void took out: `lines` usage lines of an import, or an adjustment's `amount`."""

    id: int
    kind: str
    target: int
    period: str
    lines: int
    amount: Decimal | None
    currency: str
    label: str


def void(conn: Connection, kind: str, target: int, reason: str, now: dt.datetime) -> VoidResult:
    """Void import or adjustment `target` of an open period, if nothing of it is posted."""
    if kind not in KINDS:
        raise Refused(f"void: give one of {', '.join(KINDS)}, not {kind!r}")
    reason = (reason or "").strip()
    if not reason:
        raise Refused("--reason: a void needs a reason")
    table = Import if kind == "import" else Adjustment
    period = conn.execute(select(table.period).where(table.id == target)).scalar()
    if period is None:
        raise Refused(f"{kind} {target}: there is no such {kind} (`chargeback status` lists what is pending)")
    if lock_period(conn, period, create=False) == "closed":
        raise Refused(
            f"{kind} {target} is in {period}, which is closed: it is posted; a posted charge is corrected "
            f"by a new entry in an open period (`chargeback adjust`), not voided"
        )
    done = conn.execute(select(Void.id, Void.at).where(Void.kind == kind, Void.target == target)).first()
    if done is not None:
        raise Refused(f"{kind} {target} was voided already (void {done.id}, {done.at:%Y-%m-%d %H:%M} UTC)")
    ref = load_reference(conn)
    if kind == "import":
        lines, amount_minor, label = _import_lines(conn, target)
    else:
        lines, amount_minor, label = _adjustment(conn, target)
    void_id = conn.execute(
        insert(Void)
        .values(
            period=period,
            kind=kind,
            target=target,
            reason=reason,
            user=os_user()[:100],
            at=now.replace(microsecond=0),
            lines=lines,
            amount_minor=amount_minor,
        )
        .returning(Void.id)
    ).scalar_one()
    if kind == "import":
        conn.execute(update(Usage).where(Usage.import_id == target).values(void_id=void_id))
    else:
        conn.execute(update(Adjustment).where(Adjustment.id == target).values(void_id=void_id))
    amount = from_minor(amount_minor, ref.digits) if amount_minor is not None else None
    return VoidResult(void_id, kind, target, period, lines, amount, ref.currency, label)


def _import_lines(conn: Connection, target: int) -> tuple[int, None, str]:
    """An import's lines, refused when a close has posted any of them."""
    name = Path(conn.execute(select(Import.file_name).where(Import.id == target)).scalar_one()).name
    posted = conn.execute(
        select(func.count())
        .select_from(Usage)
        .where(Usage.import_id == target, exists().where(ChargeLine.usage_id == Usage.id))
    ).scalar_one()
    if posted:
        raise Refused(
            f"import {target} ({name}): {posted} of its usage lines are posted; a posted charge is "
            "corrected by a new entry (`chargeback adjust --against SERVICE:REFERENCE`), not voided"
        )
    lines = conn.execute(select(func.count()).select_from(Usage).where(Usage.import_id == target)).scalar_one()
    return int(lines), None, name


def _adjustment(conn: Connection, target: int) -> tuple[int, int, str]:
    """An adjustment's amount, refused when a close has posted it."""
    row = conn.execute(
        select(
            Adjustment.service,
            Adjustment.consumer,
            Adjustment.amount_minor,
            adjustment_posted().label("posted"),
        ).where(Adjustment.id == target)
    ).one()
    if row.posted:
        raise Refused(
            f"adjustment {target} is posted; a posted charge is corrected by a new entry "
            "(another `chargeback adjust`), not voided"
        )
    return 0, int(row.amount_minor), f"{row.service} -> {row.consumer}"
