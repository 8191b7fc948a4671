"""`verify`: prove that history was not rewritten.

Recomputes every entry's hash and the chain that links them, checks each entry's accounts
against its consumer, provider and class, checks the journal head, checks that the tier
pieces of every tiered charge add up to its quantity and (rounded once) its amount, checks
over whole columns that every usage charge's lines add up to it and still hash to its lines
digest (`charges.check_lines`), recomputes every closed period's totals against those
recorded when it was closed, and checks that the journal hash recorded at each close is
still in the journal (a journal rewritten and re-chained from scratch no longer holds it).
The audit log's own chain is checked too (`audit.verify_chain`), and so are the closes and
reopens (`seals.check_events`): their chain, each close's seal still in the journal, each
period's status following from them, and the audit log recording each of them.

A forger who rewrites all of that consistently is caught only from outside the
database: by the seals an auditor kept (`seals`, `check_seals`), and, with the public
key, by their signatures, which nobody without the private key can make again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import groupby, zip_longest
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Select, select

from chargeback.close.reconciliation import (
    grouped_totals_query,
    reconcile,
    stored_totals_query,
)
from chargeback.core.money import from_micro, to_minor
from chargeback.ledger import audit, seals
from chargeback.ledger.charges import check_lines
from chargeback.ledger.entries import GENESIS, accounts, entry_hash
from chargeback.ledger.journal import ENTRY_COLUMNS, head
from chargeback.store.schema import Book, Entry, EntryTier, Period, PeriodTotalRow

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


@dataclass
class VerifyResult:
    entries: int = 0
    periods: int = 0
    audit_records: int = 0
    period_events: int = 0
    #: Seals checked against the journal (those given, or with a public key the database's),
    #: and how many of them had their signature checked.
    seals_checked: int = 0
    signatures_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    conn: Connection, listed: list[seals.Seal] | None = None, public_key: Ed25519PublicKey | None = None
) -> VerifyResult:
    """Check the whole journal; the first problem names the first bad entry. `listed`:
    seals an auditor kept, each of which must still be in the journal; `public_key`:
    each of those seals (or, with none listed, each seal in the database) must be signed
    by it."""
    result = VerifyResult()
    expected_prev, expected_id = GENESIS, 1
    closed_hashes = {
        h
        for h in conn.execute(select(Period.closed_hash).where(Period.status == "closed")).scalars()
        if h not in (None, GENESIS)
    }
    seen: set[str] = set()
    walked = True
    rows = conn.execute(select(*ENTRY_COLUMNS).order_by(Entry.id).execution_options(yield_per=20_000))
    for row in rows:
        values = tuple(row)
        entry_id, stored_hash, lines_digest = values[0], values[-2], values[-1]
        fields = dict(zip([c.key for c in ENTRY_COLUMNS], values, strict=False))
        result.entries += 1
        if entry_id != expected_id:
            result.problems.append(
                f"entry {entry_id}: expected entry {expected_id} here: entries were deleted, inserted or renumbered"
            )
        if fields["prev_hash"] != expected_prev:
            result.problems.append(
                f"entry {entry_id}: does not follow the entry before it (hash chain broken): "
                "an entry before it was changed, deleted or inserted"
            )
        if entry_hash(values[:-2], lines_digest) != stored_hash:
            result.problems.append(f"entry {entry_id}: its contents do not match its hash: the entry was altered")
        debit, credit = accounts(fields["customer_class"], fields["consumer"], fields["provider"])
        if (fields["debit_account"], fields["credit_account"]) != (debit, credit):
            result.problems.append(f"entry {entry_id}: posted to the wrong accounts")
        if stored_hash in closed_hashes:
            seen.add(stored_hash)
        expected_prev, expected_id = stored_hash, entry_id + 1
        if len(result.problems) > 20:
            walked = False
            break
    last_id, last_hash = head(conn)
    if not result.problems and (last_id, last_hash) != (expected_id - 1, expected_prev):
        result.problems.append(
            f"journal head names entry {last_id} but the journal ends at entry {expected_id - 1}: "
            "entries were deleted or added behind the engine's back"
        )
    _check_tiers(conn, result)
    check_lines(conn, result)
    for period in conn.execute(select(Period.__table__).where(Period.status == "closed").order_by(Period.period)):
        result.periods += 1
        now = reconcile(conn, period.period)
        recorded = (
            period.entry_count,
            period.internal_revenue_minor,
            period.internal_spend_minor,
            period.external_revenue_minor,
        )
        if (now.entries, now.internal_revenue, now.internal_spend, now.external_revenue) != recorded:
            result.problems.append(
                f"period {period.period}: its entries no longer match the totals recorded when it was "
                f"closed ({now.entries} entries now, {period.entry_count} at close)"
            )
        elif not now.balanced:
            result.problems.append(f"period {period.period}: does not net to zero")
        if period.closed_hash not in (None, GENESIS) and period.closed_hash not in seen and walked:
            result.problems.append(
                f"period {period.period}: the journal hash recorded when it was closed is no longer "
                "in the journal: entries were rewritten"
            )
    _check_stored_totals(conn, result)
    result.audit_records, audit_problems = audit.verify_chain(conn)
    result.problems.extend(audit_problems)
    result.period_events, event_problems = seals.check_events(conn)
    result.problems.extend(event_problems)
    if listed is None and public_key is not None:
        listed = seals.seals(conn)
    if listed is not None:
        result.seals_checked = len(listed)
        result.signatures_checked = len(listed) if public_key is not None else 0
        result.problems.extend(seals.check_seals(conn, listed, public_key))
    return result


def _check_stored_totals(conn: Connection, result: VerifyResult) -> None:
    """Each period's totals stored at its close (which later closes and documents read
    for the months before theirs) equal a grouping of its entries."""
    periods = set(conn.execute(select(Entry.period).distinct()).scalars())
    periods |= set(conn.execute(select(PeriodTotalRow.period).distinct()).scalars())

    def rows(query: Select) -> Iterator[tuple[object, ...]]:  # type: ignore[type-arg]
        for row in conn.execute(query.execution_options(yield_per=20_000)):
            yield (*row[:7], *(int(value) for value in row[7:]))

    for period in sorted(periods):  # read side by side: half a million rows a month at 1M lines
        if any(
            a != b
            for a, b in zip_longest(rows(stored_totals_query(conn, period)), rows(grouped_totals_query(conn, period)))
        ):
            result.problems.append(
                f"period {period}: its entries no longer match the totals by consumer and "
                "service stored at its close (one or the other was changed behind the engine's back)"
            )


def _check_tiers(conn: Connection, result: VerifyResult) -> None:
    """Each tiered charge's pieces sum to its quantity, and their amounts, rounded once,
    to its amount."""
    digits = conn.execute(select(Book.minor_digits)).scalar() or 0
    rows = conn.execute(
        select(
            EntryTier.entry_id, EntryTier.quantity_micro, EntryTier.rate_micro, Entry.quantity_micro, Entry.amount_minor
        )
        .join(Entry, Entry.id == EntryTier.entry_id)
        .order_by(EntryTier.entry_id, EntryTier.piece)
        .execution_options(yield_per=20_000)
    )
    for entry_id, group in groupby(rows, key=lambda row: row[0]):
        pieces = list(group)
        quantity, amount = pieces[0][3], pieces[0][4]
        exact = sum((from_micro(q) * from_micro(r) for _, q, r, _, _ in pieces), Decimal(0))
        if sum(q for _, q, _, _, _ in pieces) != quantity or to_minor(exact, digits) != amount:
            result.problems.append(
                f"entry {entry_id}: its tier pieces do not add up to its quantity and amount: entry_tiers was altered"
            )
            if len(result.problems) > 20:
                return
